"""The artifact store: files sub-agents produce, copied out of the job's scratch folder and recorded."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import shutil
import tempfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from swarmkeep.activities.tools import safe_paths
from swarmkeep.store.engine import session_scope
from swarmkeep.store.models import Artifact


class ArtifactStore:
    """Keeps each job's artifacts under `<root>/<job id>/`; a file written again replaces the earlier one."""

    def __init__(self, root: Path, database_url: str):
        self.root = root
        self.database_url = database_url

    async def save(self, job_id: str, subtask_id: str, name: str, source: Path) -> Artifact:
        """Copy `source` (the scratch-folder path of artifact `name`) into the store and record it."""
        name = safe_paths.clean_name(name)
        target = self.root / safe_paths.clean_name(job_id) / name
        size = await asyncio.to_thread(_copy_artifact, _scratch_root(source, name), name, target)
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        for _ in range(3):  # sub-agents of one job share its scratch folder and may record a file at once
            try:
                async with session_scope(self.database_url) as session:
                    row = await session.scalar(select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name))
                    if row is None:
                        row = Artifact(job_id=job_id, name=name, subtask_id=subtask_id, path=str(target))
                        session.add(row)
                    row.subtask_id, row.size, row.content_type = subtask_id, size, content_type
                    return row
            except IntegrityError:
                continue
        raise RuntimeError(f"could not record artifact {name} of job {job_id}")


def _scratch_root(source: Path, name: str) -> Path:
    """The scratch folder `source` lies in: `source` less the components of `name`."""
    parts = name.split("/")
    if list(source.parts[-len(parts) :]) != parts:
        raise ValueError(f"artifact path {source} does not end in its name {name!r}")
    return Path(*source.parts[: -len(parts)])


def _copy_artifact(root: Path, name: str, target: Path) -> int:
    """Copy the regular file `name` under `root` (opened without following links) to `target`; its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with safe_paths.reader(root, name) as source:
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            os.replace(temporary, target)
        except BaseException:
            os.unlink(temporary)
            raise
    return target.stat().st_size

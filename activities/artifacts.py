"""The artifact store: files sub-agents produce, copied out of the job's scratch folder and recorded."""

from __future__ import annotations

import mimetypes
import shutil
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from swarmkeep.store.engine import session_scope
from swarmkeep.store.models import Artifact


class ArtifactStore:
    """Keeps each job's artifacts under `<root>/<job id>/`; a file written again replaces the earlier one."""

    def __init__(self, root: Path, database_url: str):
        self.root = root
        self.database_url = database_url

    async def save(self, job_id: str, subtask_id: str, name: str, source: Path) -> Artifact:
        target = self.root / job_id / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        size = target.stat().st_size
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

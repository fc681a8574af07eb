"""/v1/jobs/{id}/artifacts: the files a job's sub-agents produced."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse
from sqlalchemy import select

from swarmkeep.api.deps import CurrentKey, SessionDep
from swarmkeep.api.routes.jobs import NOT_FOUND, tenant_job
from swarmkeep.store.models import Artifact

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"])


@router.get("/{job_id}/artifacts/{name:path}", response_class=FileResponse, responses=NOT_FOUND)
async def download_artifact(job_id: str, name: str, session: SessionDep, key: CurrentKey) -> FileResponse:
    """Download one artifact by the name the job result lists."""
    await tenant_job(session, key, job_id)
    artifact = await session.scalar(select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name))
    if artifact is None or not Path(artifact.path).is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Job {job_id} has no artifact named {name!r}.")
    return FileResponse(artifact.path, media_type=artifact.content_type, filename=Path(name).name)

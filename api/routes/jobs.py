"""/v1/jobs: submit, read, list and cancel jobs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy import and_, or_, select
from temporalio.client import WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy

from swarmkeep.api.deps import SessionDep, SettingsDep, TemporalDep
from swarmkeep.api.schemas import JobCreate, JobList, JobView, Problem
from swarmkeep.api.views import decode_cursor, encode_cursor, job_summary, job_view
from swarmkeep.messages import JobInput
from swarmkeep.store.models import Job, JobStatus
from swarmkeep.temporal_client import job_limits
from swarmkeep.workflows.swarm import SwarmWorkflow

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

NOT_FOUND = {404: {"model": Problem, "description": "No job with that id."}}


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex[:24]}"


async def _get_job(session: SessionDep, job_id: str) -> Job:
    job = await session.get(Job, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No job with id {job_id!r}.")
    return job


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobView,
    responses={503: {"model": Problem, "description": "Temporal is unreachable; no job was created."}},
)
async def create_job(
    body: JobCreate, response: Response, session: SessionDep, client: TemporalDep, settings: SettingsDep
) -> JobView:
    """Accept a task: write the job row and start its `SwarmWorkflow` under the job's id."""
    job_id = new_job_id()
    limits = job_limits(settings, body.max_parallel)
    job = Job(
        id=job_id,
        status=JobStatus.QUEUED,
        task=body.task,
        options={"metadata": body.metadata, "limits": limits.__dict__},
    )
    session.add(job)
    await session.commit()
    try:
        await client.start_workflow(
            SwarmWorkflow.run,
            JobInput(job_id=job_id, limits=limits),
            id=job_id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=body.task[:200],
        )
    except Exception as error:
        await session.delete(job)
        await session.commit()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"Could not start the job's workflow ({error}); nothing was created. Check that Temporal is "
            f"running at {settings.effective_temporal_address} and retry.",
        ) from error
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return await job_view(session, None, job, settings)


@router.get("", response_model=JobList)
async def list_jobs(
    session: SessionDep,
    settings: SettingsDep,
    status_: Annotated[
        str | None, Query(alias="status", description=f"One of: {', '.join(JobStatus.ALL)}.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query(description="From the previous page's next_cursor.")] = None,
) -> JobList:
    """Jobs, newest first, optionally filtered by status, a page at a time."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    if status_ is not None:
        if status_ not in JobStatus.ALL:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY,
                f"status must be one of {', '.join(JobStatus.ALL)}; got {status_!r}",
            )
        query = query.where(Job.status == status_)
    if cursor:
        try:
            created_at, last_id = decode_cursor(cursor)
        except ValueError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "cursor is not one this API gave out") from error
        query = query.where(
            or_(Job.created_at < created_at, and_(Job.created_at == created_at, Job.id < last_id))
        )
    jobs = list((await session.scalars(query)).all())
    page, more = jobs[:limit], len(jobs) > limit
    return JobList(
        items=[job_summary(job, settings) for job in page],
        next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if more else None,
    )


@router.get("/{job_id}", response_model=JobView, responses=NOT_FOUND)
async def get_job(job_id: str, session: SessionDep, client: TemporalDep, settings: SettingsDep) -> JobView:
    """Status, progress, metrics and, once succeeded, the result with every subtask's conclusion."""
    job = await _get_job(session, job_id)
    return await job_view(session, client, job, settings)


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobView,
    responses={**NOT_FOUND, 409: {"model": Problem, "description": "The job has already finished."}},
)
async def cancel_job(job_id: str, session: SessionDep, client: TemporalDep, settings: SettingsDep) -> JobView:
    """Ask the job to stop: its running sub-agents are canceled and it ends `canceled`."""
    job = await _get_job(session, job_id)
    if job.status in JobStatus.TERMINAL:
        raise HTTPException(status.HTTP_409_CONFLICT, f"Job {job_id} has already finished ({job.status}).")
    handle: WorkflowHandle[SwarmWorkflow, object] = client.get_workflow_handle(job_id)
    await handle.cancel()
    return await job_view(session, client, job, settings)

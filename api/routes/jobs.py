"""/v1/jobs: submit, read, list and cancel jobs, each scoped to the caller's tenant."""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from temporalio.client import WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from swarmkeep.api.deps import CurrentKey, SessionDep, SettingsDep, TemporalDep
from swarmkeep.api.schemas import JobCreate, JobList, JobView, Problem
from swarmkeep.api.views import decode_cursor, encode_cursor, job_summary, job_view
from swarmkeep.messages import CallbackPolicy, JobInput
from swarmkeep.netguard import UnsafeURLError, resolve_safe
from swarmkeep.search_attributes import JOB_STATUS, TENANT
from swarmkeep.settings import Settings
from swarmkeep.store.models import ApiKey, Job, JobStatus
from swarmkeep.temporal_client import job_limits
from swarmkeep.workflows.swarm import SwarmWorkflow

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such job for this key."}}


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex[:24]}"


def idempotent_job_id(tenant: str, idempotency_key: str) -> str:
    """The job (and workflow) id an Idempotency-Key maps to, so concurrent retries start one workflow."""
    return "job_" + hashlib.sha256(f"{tenant}\0{idempotency_key}".encode()).hexdigest()[:24]


def request_hash(body: JobCreate) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


async def tenant_job(session: SessionDep, key: ApiKey, job_id: str) -> Job:
    """The job if it belongs to the key's tenant; 404 otherwise (another tenant's job does not exist for you)."""
    job = await session.get(Job, job_id)
    if job is None or job.tenant != key.tenant:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No job with id {job_id!r}.")
    return job


def job_input(job: Job, settings: Settings, callbacks: bool, progress_callbacks: bool) -> JobInput:
    options = job.options or {}
    limits = job_limits(
        settings,
        options.get("max_parallel"),
        options.get("max_tokens"),
        options.get("max_cost_usd"),
        options.get("deadline_s"),
        bool(options.get("allow_humans") or options.get("human_subtasks")),
    )
    return JobInput(
        job_id=job.id,
        limits=limits,
        callbacks=callbacks,
        progress_callbacks=progress_callbacks and callbacks,
        callback_policy=CallbackPolicy(
            retry_hours=settings.callback_retry_hours,
            initial_interval_s=settings.callback_initial_retry_s,
            max_interval_s=settings.callback_max_retry_s,
        ),
    )


async def start_job_workflow(
    client: TemporalDep, job: Job, settings: Settings, run: JobInput, search_attributes: bool
) -> None:
    """Start the job's workflow; a workflow already started under this id is the same job, not an error."""
    run.search_attributes = search_attributes
    attributes = (
        TypedSearchAttributes(
            [SearchAttributePair(TENANT, job.tenant), SearchAttributePair(JOB_STATUS, JobStatus.QUEUED)]
        )
        if search_attributes
        else None
    )
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(
            SwarmWorkflow.run,
            run,
            id=job.id,
            task_queue=settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=job.task[:200],
            search_attributes=attributes,
        )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobView,
    responses={
        200: {"model": JobView, "description": "A replay of an earlier request with the same Idempotency-Key."},
        409: {"model": Problem, "description": "The Idempotency-Key was used with a different body."},
        413: {"model": Problem, "description": "The body is over the configured size."},
        503: {"model": Problem, "description": "Temporal is unreachable; no job was created."},
    },
)
async def create_job(
    body: JobCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    client: TemporalDep,
    settings: SettingsDep,
    key: CurrentKey,
    idempotency_key: Annotated[
        str | None, Header(max_length=255, description="Retries with the same key and body get the same job.")
    ] = None,
) -> JobView:
    """Accept a task: write the job row and start its `SwarmWorkflow` under the job's id."""
    callback_url = body.callback_url or key.callback_url
    if body.callback_url:
        try:
            await resolve_safe(body.callback_url, settings.callback_allow)
        except UnsafeURLError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from error
    digest = request_hash(body)
    tenant = key.tenant  # read before a rollback below expires the key's row
    job_id = idempotent_job_id(tenant, idempotency_key) if idempotency_key else new_job_id()
    job = Job(
        id=job_id,
        tenant=key.tenant,
        api_key_id=key.id,
        status=JobStatus.QUEUED,
        task=body.task,
        idempotency_key=idempotency_key,
        request_hash=digest,
        callback_url=body.callback_url,
        options={
            "metadata": body.metadata,
            "max_parallel": body.max_parallel,
            "max_tokens": body.max_tokens,
            "max_cost_usd": body.max_cost_usd,
            "deadline_s": body.deadline_s,
            "allow_humans": body.allow_humans,
            "human_subtasks": [h.model_dump() for h in body.human_subtasks],
        },
    )
    run = job_input(job, settings, bool(callback_url), body.progress_callbacks)
    session.add(job)
    try:
        await session.commit()
    except IntegrityError:
        # The same Idempotency-Key, already used (perhaps by a request running right now).
        await session.rollback()
        existing = await session.get(Job, job_id)
        if existing is None or existing.tenant != tenant:
            raise
        if existing.request_hash != digest:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                "This Idempotency-Key was already used with a different request body; use a new key.",
            ) from None
        if existing.status == JobStatus.QUEUED:  # the first request may have died before starting it
            await start_job_workflow(client, existing, settings, run, request.app.state.temporal.search_attributes)
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
        response.headers["Location"] = f"/v1/jobs/{job_id}"
        return await job_view(session, None, existing, settings)
    try:
        await start_job_workflow(client, job, settings, run, request.app.state.temporal.search_attributes)
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
    key: CurrentKey,
    status_: Annotated[str | None, Query(alias="status", description=f"One of: {', '.join(JobStatus.ALL)}.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query(description="From the previous page's next_cursor.")] = None,
) -> JobList:
    """The tenant's jobs, newest first, optionally filtered by status, a page at a time."""
    query = select(Job).where(Job.tenant == key.tenant).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    if status_ is not None:
        if status_ not in JobStatus.ALL:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"status must be one of {', '.join(JobStatus.ALL)}; got {status_!r}",
            )
        query = query.where(Job.status == status_)
    if cursor:
        try:
            created_at, last_id = decode_cursor(cursor)
        except ValueError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "cursor is not one this API gave out") from error
        query = query.where(or_(Job.created_at < created_at, and_(Job.created_at == created_at, Job.id < last_id)))
    jobs = list((await session.scalars(query)).all())
    page, more = jobs[:limit], len(jobs) > limit
    return JobList(
        items=[job_summary(job, settings) for job in page],
        next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if more else None,
    )


@router.get("/{job_id}", response_model=JobView, responses=NOT_FOUND)
async def get_job(
    job_id: str, session: SessionDep, client: TemporalDep, settings: SettingsDep, key: CurrentKey
) -> JobView:
    """Status, progress, metrics and, once succeeded, the result with every subtask's conclusion."""
    job = await tenant_job(session, key, job_id)
    return await job_view(session, client, job, settings)


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobView,
    responses={**NOT_FOUND, 409: {"model": Problem, "description": "The job has already finished."}},
)
async def cancel_job(
    job_id: str, session: SessionDep, client: TemporalDep, settings: SettingsDep, key: CurrentKey
) -> JobView:
    """Ask the job to stop: its running sub-agents are canceled and it ends `canceled`."""
    job = await tenant_job(session, key, job_id)
    if job.status in JobStatus.TERMINAL:
        raise HTTPException(status.HTTP_409_CONFLICT, f"Job {job_id} has already finished ({job.status}).")
    handle: WorkflowHandle[SwarmWorkflow, object] = client.get_workflow_handle(job_id)
    await handle.cancel()
    return await job_view(session, client, job, settings)

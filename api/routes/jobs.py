"""/v1/jobs: submit, read, list and cancel jobs, each scoped to the caller's tenant."""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from temporalio.client import WorkflowHandle
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from swarmkeep.api.deps import CurrentKey, SessionDep, SettingsDep, TemporalDep
from swarmkeep.api.schemas import JobCreate, JobList, JobView, Problem
from swarmkeep.api.views import CURSOR_PATTERN, decode_cursor, encode_cursor, job_summary, job_view
from swarmkeep.messages import CallbackPolicy, JobInput
from swarmkeep.netguard import UnsafeURLError, resolve_safe
from swarmkeep.search_attributes import JOB_STATUS, TENANT
from swarmkeep.settings import Settings
from swarmkeep.store.models import ApiKey, Job, JobStatus
from swarmkeep.temporal_client import job_limits
from swarmkeep.workflows.swarm import SwarmWorkflow

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such job for this key."}}
# How long a caller over its tenant's cap of unfinished jobs is asked to wait before trying again.
RETRY_AFTER_S = 30


JobStatusName = Literal["queued", "planning", "running", "synthesizing", "succeeded", "failed", "canceled"]


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex[:24]}"


def idempotent_job_id(tenant: str, idempotency_key: str) -> str:
    """The job (and workflow) id an Idempotency-Key maps to, so concurrent retries start one workflow."""
    return "job_" + hashlib.sha256(f"{tenant}\0{idempotency_key}".encode()).hexdigest()[:24]


def request_hash(body: JobCreate) -> str:
    return hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


async def tenant_job(session: SessionDep, key: ApiKey, job_id: str) -> Job:
    """The job if it belongs to the key's tenant; 404 otherwise (another tenant's job does not exist for you)."""
    # An id with NUL cannot name a job, and PostgreSQL refuses it in a query.
    job = None if "\x00" in job_id else await session.get(Job, job_id)
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
    """Start the job's workflow under the job's id, safe to repeat: a running workflow of that id is used as it is
    and a closed one is not started again, so a retry after a start that failed (or seemed to) is never a second
    run. The tenant is the fairness key, so one tenant's burst does not starve the others' sub-agents (on servers
    with task-queue fairness enabled; others ignore it)."""
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
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=job.task[:200],
            search_attributes=attributes,
            priority=Priority(fairness_key=job.tenant),
        )


async def check_tenant_cap(session: SessionDep, settings: Settings, tenant: str) -> None:
    """429 with Retry-After when the tenant already has its most unfinished jobs."""
    cap = settings.tenant_max_running_jobs
    if not cap:
        return
    unfinished = await session.scalar(
        select(func.count()).select_from(Job).where(Job.tenant == tenant, Job.status.not_in(JobStatus.TERMINAL))
    )
    if (unfinished or 0) >= cap:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"Tenant {tenant!r} already has {unfinished} unfinished jobs, the most it may have "
            f"(SWARMKEEP_TENANT_MAX_RUNNING_JOBS={cap}); retry when one has finished, or cancel one.",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobView,
    responses={
        200: {"model": JobView, "description": "A replay of an earlier request with the same Idempotency-Key."},
        403: {"model": Problem, "description": "The callback URL leads somewhere callbacks may not go."},
        409: {"model": Problem, "description": "The Idempotency-Key was used with a different body."},
        413: {"model": Problem, "description": "The body is over the configured size."},
        429: {"model": Problem, "description": "The tenant has its most unfinished jobs; see Retry-After."},
        503: {
            "model": Problem,
            "description": "The workflow could not be started. With an Idempotency-Key the job is kept (queued) and "
            "a retry with the same key starts it; without one it is marked failed.",
        },
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
            await resolve_safe(body.callback_url, callback_allow(settings, key), settings.outbound_ports)
        except UnsafeURLError as error:
            raise HTTPException(status.HTTP_403_FORBIDDEN, str(error)) from error
    digest = request_hash(body)
    tenant = key.tenant  # read before a rollback below expires the key's row
    if not (idempotency_key and await session.get(Job, idempotent_job_id(tenant, idempotency_key))):
        await check_tenant_cap(session, settings, tenant)  # a replay is not a new job
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
            await start_or_keep(session, client, existing, settings, run, request)
            if existing.error is not None:
                existing.error = None
                await session.commit()
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
        response.headers["Location"] = f"/v1/jobs/{job_id}"
        return await job_view(session, None, existing, settings)
    await start_or_keep(session, client, job, settings, run, request)
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return await job_view(session, None, job, settings)


def callback_allow(settings: Settings, key: ApiKey) -> list[str]:
    """Where this key's callbacks may go although not public: the operator's list and the key's own."""
    return [*settings.callback_allow, *(key.callback_allow or [])]


async def start_or_keep(
    session: SessionDep, client: TemporalDep, job: Job, settings: Settings, run: JobInput, request: Request
) -> None:
    """Start the job's workflow; when that fails, keep the row (the workflow may have started all the same) with
    the error, and answer 503: queued when an Idempotency-Key lets a retry start it, else failed."""
    try:
        await start_job_workflow(client, job, settings, run, request.app.state.temporal.search_attributes)
    except Exception as error:
        retry = job.idempotency_key is not None
        job.error = f"The job's workflow could not be started ({error}). " + (
            "Retry the request with the same Idempotency-Key to start it." if retry else "Submit it again."
        )
        if not retry:
            # Should the workflow have started after all, its first status update brings the job back.
            job.status = JobStatus.FAILED
        job_id = job.id
        await session.commit()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"Could not start the workflow of job {job_id} ({error}); check that Temporal is running at "
            f"{settings.effective_temporal_address}. "
            + (
                "The job is kept, queued: retry with the same Idempotency-Key and it starts."
                if retry
                else "The job is marked failed; retry the request (send an Idempotency-Key to make retries safe)."
            ),
            headers={"Retry-After": "5"},
        ) from error


@router.get("", response_model=JobList)
async def list_jobs(
    session: SessionDep,
    settings: SettingsDep,
    key: CurrentKey,
    status_: Annotated[JobStatusName | None, Query(alias="status", description="Only jobs in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="From the previous page's next_cursor.")
    ] = None,
) -> JobList:
    """The tenant's jobs, newest first, optionally filtered by status, a page at a time."""
    query = select(Job).where(Job.tenant == key.tenant).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    if status_ is not None:
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

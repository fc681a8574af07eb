"""Building the API's job views from rows and, while a job runs, the workflow's progress query."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import FailureError
from temporalio.service import RPCError

from swarmkeep.api.schemas import ArtifactView, JobResult, JobSummary, JobView, Links, Progress, SubtaskView
from swarmkeep.inference.limiter import WAITING_FOR_MODEL
from swarmkeep.messages import JobProgress
from swarmkeep.settings import Settings
from swarmkeep.store.models import Artifact, Job, JobStatus, Subtask, SubtaskStatus, utcnow

QUERY_TIMEOUT_S = 3.0

# A workflow that closed without writing its terminal status: terminated by an operator, timed out, or failed where
# it could not write (another stack's worker took it); a failure's own message replaces the generic line.
_CLOSED_WITHOUT_RECORD = {
    WorkflowExecutionStatus.TERMINATED: (JobStatus.FAILED, "The workflow was terminated in Temporal."),
    WorkflowExecutionStatus.TIMED_OUT: (JobStatus.FAILED, "The workflow timed out in Temporal."),
    WorkflowExecutionStatus.CANCELED: (JobStatus.CANCELED, "The job was canceled."),
    WorkflowExecutionStatus.FAILED: (JobStatus.FAILED, "The workflow failed in Temporal."),
}


def links_for(job_id: str, settings: Settings) -> Links:
    return Links(
        self=f"/v1/jobs/{job_id}",
        cancel=f"/v1/jobs/{job_id}/cancel",
        wait=f"/v1/jobs/{job_id}/wait",
        events=f"/v1/jobs/{job_id}/events",
        callbacks=f"/v1/jobs/{job_id}/callbacks",
        # The UI shows every tenant's workflows: linked only where the operator says tenants may see it.
        temporal_ui=settings.job_ui_link(job_id) if settings.temporal_ui_links else None,
    )


def subtask_view(row: Subtask) -> SubtaskView:
    return SubtaskView(
        id=row.subtask_id,
        role=row.role,
        instruction=row.instruction,
        depends_on=list(row.depends_on or []),
        stage=row.stage + 1,
        status=row.status,
        attempts=row.attempts,
        steps=row.steps,
        tokens=row.prompt_tokens + row.completion_tokens,
        conclusion=row.conclusion,
        error=row.error,
        lane=row.lane,
        worker=row.worker,
        history=list(row.history or []),
    )


def runs_of(row: Subtask) -> int:
    """How many runs (primary, hedge, reassigned, regenerated) a subtask has had, started or not."""
    events = [h.get("event") for h in (row.history or [])]
    return 1 + sum(1 for e in events if e in ("reassigned", "regenerated", "hedged"))


def progress_from_rows(rows: list[Subtask]) -> Progress:
    statuses = [row.status for row in rows]
    return Progress(
        subtasks_total=len(rows),
        pending=statuses.count(SubtaskStatus.PENDING),
        running=statuses.count(SubtaskStatus.RUNNING),
        done=statuses.count(SubtaskStatus.SUCCEEDED),
        failed=statuses.count(SubtaskStatus.FAILED),
        retries=sum(max(row.attempts - runs_of(row), 0) for row in rows),
        stages_total=max((row.stage + 1 for row in rows), default=0),
    )


def running_metrics(job: Job, rows: list[Subtask]) -> dict[str, float]:
    """Metrics so far for a job that has not finished (the final ones come from the workflow)."""
    started = job.started_at or job.created_at
    if started.tzinfo is None:  # SQLite hands back naive datetimes
        started = started.replace(tzinfo=utcnow().tzinfo)
    return {
        "steps": sum(row.steps for row in rows),
        "tokens": sum(row.prompt_tokens + row.completion_tokens for row in rows),
        "wall_time_s": round((utcnow() - started).total_seconds(), 3),
    }


async def _live_progress(client: Client, job_id: str) -> JobProgress | None:
    try:
        handle = client.get_workflow_handle(job_id)
        return await asyncio.wait_for(handle.query("progress", result_type=JobProgress), QUERY_TIMEOUT_S)
    except (TimeoutError, RPCError, Exception):  # the row's view is good enough without it
        return None


async def _describe(client: Client, job_id: str) -> WorkflowExecutionDescription | None:
    try:
        return await asyncio.wait_for(client.get_workflow_handle(job_id).describe(), QUERY_TIMEOUT_S)
    except Exception:  # the row's view is good enough without it
        return None


async def waiting_for_model(client: Client, description: WorkflowExecutionDescription) -> int:
    """How many of the job's running activities last heartbeated that they wait for a model slot.

    Read from the server's record of pending activities (one describe, no worker involved); the worker sends the
    latest heartbeat at most every 0.8 heartbeat timeouts, so the count trails by up to that much."""
    count = 0
    for pending in description.raw_description.pending_activities:
        if not pending.heartbeat_details.payloads:
            continue
        try:
            details = await client.data_converter.decode(pending.heartbeat_details.payloads)
        except Exception:  # details this version does not read say nothing about waiting
            continue
        if details and isinstance(details[0], dict) and details[0].get("state") == WAITING_FOR_MODEL:
            count += 1
    return count


async def _failure_of(client: Client, job_id: str) -> str | None:
    """Why a failed workflow failed, from its result: e.g. another stack's worker took it (JobNotInStore)."""
    try:
        await asyncio.wait_for(client.get_workflow_handle(job_id).result(follow_runs=False), QUERY_TIMEOUT_S)
    except WorkflowFailureError as failure:
        cause = failure.cause
        message = cause.message if isinstance(cause, FailureError) else str(cause)
        return f"The workflow failed in Temporal: {message}"
    except Exception:  # unreadable: the generic line stands
        return None
    return None


async def reconcile_closed(
    session: AsyncSession, client: Client, job: Job, description: WorkflowExecutionDescription | None = None
) -> None:
    """Mark a job whose workflow closed without recording it (e.g. terminated in the UI) as terminal."""
    if description is None:
        description = await _describe(client, job.id)
    if description is not None and description.status in _CLOSED_WITHOUT_RECORD:
        status, error = _CLOSED_WITHOUT_RECORD[description.status]
        if description.status == WorkflowExecutionStatus.FAILED:
            error = await _failure_of(client, job.id) or error
        await session.refresh(job)
        if job.status not in JobStatus.TERMINAL:
            job.status, job.error, job.finished_at = status, error, utcnow()
            await session.commit()


async def job_view(session: AsyncSession, client: Client | None, job: Job, settings: Settings) -> JobView:
    """The full view of one job."""
    rows = list(
        (await session.scalars(select(Subtask).where(Subtask.job_id == job.id).order_by(Subtask.position))).all()
    )
    progress = progress_from_rows(rows)
    if job.status not in JobStatus.TERMINAL and client is not None:
        # The query and the describe at once: the describe is a read on the server only, the query a worker's.
        live, description = await asyncio.gather(_live_progress(client, job.id), _describe(client, job.id))
        if description is not None:
            progress.waiting_for_model = await waiting_for_model(client, description)
        if live is not None:
            progress.stage = live.stage
            progress.stages_total = live.stages_total or progress.stages_total
        # A closed workflow still answers the query (a worker replays it), so its final status counts too.
        if live is None or live.status in JobStatus.TERMINAL:
            await reconcile_closed(session, client, job, description)
    subtasks = [subtask_view(row) for row in rows]
    finished = job.status in JobStatus.TERMINAL
    result = None
    if job.status == JobStatus.SUCCEEDED:
        artifacts = (
            await session.scalars(select(Artifact).where(Artifact.job_id == job.id).order_by(Artifact.id))
        ).all()
        result = JobResult(
            synthesis=job.synthesis,
            subtasks=subtasks,
            artifacts=[
                ArtifactView(
                    name=a.name,
                    subtask_id=a.subtask_id,
                    size=a.size,
                    content_type=a.content_type,
                    url=f"/v1/jobs/{job.id}/artifacts/{a.name}",
                )
                for a in artifacts
            ],
        )
    return JobView(
        id=job.id,
        status=job.status,
        task=job.task,
        metadata=dict((job.options or {}).get("metadata", {})),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        progress=progress,
        metrics=dict(job.metrics) if finished and job.metrics else running_metrics(job, rows),
        subtasks=subtasks,
        result=result,
        error=job.error,
        partial=job.partial,
        partial_reason=job.partial_reason,
        links=links_for(job.id, settings),
    )


def job_summary(job: Job, settings: Settings) -> JobSummary:
    return JobSummary(
        id=job.id,
        status=job.status,
        task=job.task,
        created_at=job.created_at,
        finished_at=job.finished_at,
        links=links_for(job.id, settings),
    )


# A page cursor: the last job's creation time (microseconds since 1970, UTC) and id. The pattern says exactly which
# strings decode, so the OpenAPI document describes every cursor the API accepts.
CURSOR_PATTERN = r"^[0-9]{1,16}~[A-Za-z0-9_-]{1,64}$"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(created_at: datetime, job_id: str) -> str:
    moment = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
    return f"{(moment - EPOCH) // timedelta(microseconds=1)}~{job_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raise ValueError on a cursor this API did not hand out."""
    micros, _, job_id = cursor.partition("~")
    if not micros.isdigit() or not job_id:
        raise ValueError(f"not a page cursor: {cursor!r}")
    return EPOCH + timedelta(microseconds=int(micros)), job_id

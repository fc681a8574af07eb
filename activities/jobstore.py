"""Job store activities: the workflow's only way to write job and subtask rows."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import case, insert, make_url, select, update
from temporalio import activity
from temporalio.exceptions import ApplicationError

from swarmkeep.messages import JOB_NOT_IN_STORE, JobStatusUpdate, RecordPlanRequest, SubtaskRecord, WaitingForHuman
from swarmkeep.store.engine import session_scope
from swarmkeep.store.models import JOBS, SUBTASKS, Job, JobStatus, Subtask, SubtaskStatus, utcnow


def job_not_in_store(job_id: str, database_url: str) -> ApplicationError:
    """The non-retryable error for a job this worker's job store does not have, saying why and what to do."""
    shown = make_url(database_url).render_as_string(hide_password=True)
    return ApplicationError(
        f"job {job_id} is not in this worker's job store ({shown}): another swarmkeep stack shares this "
        "Temporal server and task queue, and its worker took this job. Stop the other worker, or give each stack "
        "its own task queue (SWARMKEEP_TASK_QUEUE) or Temporal dev server (SWARMKEEP_TEMPORAL_DEV_PORT).",
        type=JOB_NOT_IN_STORE,
        non_retryable=True,
    )


class JobStoreActivities:
    """Writes made on the workflow's behalf, each idempotent so a retried attempt changes nothing twice."""

    def __init__(self, database_url: str):
        self.database_url = database_url

    @activity.defn(name="set_job_status")
    async def set_job_status(self, update_: JobStatusUpdate) -> None:
        """Move a job to a status; on a terminal one, store metrics and close any open subtasks."""
        async with session_scope(self.database_url) as session:
            job = await session.get(Job, update_.job_id)
            if job is None:
                raise job_not_in_store(update_.job_id, self.database_url)
            job.status = update_.status
            if update_.status in JobStatus.TERMINAL:
                job.error = update_.error
                job.metrics = update_.metrics or {}
                job.partial = update_.partial_reason is not None
                job.partial_reason = update_.partial_reason
                job.finished_at = utcnow()
                closing = SubtaskStatus.CANCELED if update_.status == JobStatus.CANCELED else SubtaskStatus.FAILED
                await session.execute(
                    update(Subtask)
                    .where(
                        Subtask.job_id == update_.job_id,
                        Subtask.status.in_([SubtaskStatus.PENDING, SubtaskStatus.RUNNING, SubtaskStatus.WAITING]),
                    )
                    .values(status=closing, finished_at=utcnow(), error=update_.error)
                )

    @activity.defn(name="record_plan")
    async def record_plan(self, request: RecordPlanRequest) -> None:
        """Keep the accepted plan, create one subtask row per planned subtask with its stage, and move the job to
        running. Core statements, the rows in one executemany: this write stands between the plan and the start
        of every sub-agent (300 ORM objects took up to 0.2 s)."""
        async with session_scope(self.database_url) as session:
            found = (await session.execute(select(Job.options).where(Job.id == request.job_id))).first()
            candidates = (found[0] or {}).get("plan_candidates", {}) if found else {}
            plan = candidates.get(str(request.attempt))
            if found is None:
                raise job_not_in_store(request.job_id, self.database_url)
            if not plan:
                raise ApplicationError(f"job {request.job_id} has no stored plan", non_retryable=True)
            stage_of = {sid: index for index, stage in enumerate(request.stages) for sid in stage}
            existing = set(
                (await session.scalars(select(Subtask.subtask_id).where(Subtask.job_id == request.job_id))).all()
            )
            rows = [
                {
                    "job_id": request.job_id,
                    "subtask_id": item["id"],
                    "position": position,
                    "stage": stage_of.get(item["id"], 0),
                    "role": item["role"],
                    "instruction": item["instruction"],
                    "depends_on": list(item.get("depends_on", [])),
                }
                for position, item in enumerate(plan)
                if item["id"] not in existing
            ]
            if rows:
                await session.execute(insert(SUBTASKS), rows)
            await session.execute(
                update(JOBS)
                .where(JOBS.c.id == request.job_id)
                .values(
                    plan=plan,
                    status=case((JOBS.c.status.in_(JobStatus.TERMINAL), JOBS.c.status), else_=JobStatus.RUNNING),
                )
            )

    @activity.defn(name="record_subtask")
    async def record_subtask(self, record: SubtaskRecord) -> int:
        """Write a subtask's final outcome (the winning run, or why it failed); return its attempts so far."""
        async with session_scope(self.database_url) as session:
            subtask = await session.scalar(
                select(Subtask).where(Subtask.job_id == record.job_id, Subtask.subtask_id == record.subtask_id)
            )
            if subtask is None:
                return 0
            subtask.status = record.status
            subtask.lane = record.lane
            subtask.worker = record.worker or subtask.worker
            subtask.deadline = None
            subtask.role = record.role or subtask.role
            subtask.conclusion = record.conclusion
            subtask.error = record.error
            subtask.history = list(record.history)
            if record.status == SubtaskStatus.SUCCEEDED:
                subtask.steps = record.steps
                subtask.prompt_tokens = record.prompt_tokens
                subtask.completion_tokens = record.completion_tokens
            subtask.finished_at = utcnow()
            return subtask.attempts

    @activity.defn(name="wait_for_human")
    async def wait_for_human(self, waiting: WaitingForHuman) -> None:
        """Show a human subtask as waiting for its person (listed by GET /v1/tasks) until its deadline."""
        async with session_scope(self.database_url) as session:
            subtask = await session.scalar(
                select(Subtask).where(Subtask.job_id == waiting.job_id, Subtask.subtask_id == waiting.subtask_id)
            )
            if subtask is not None:
                subtask.status = SubtaskStatus.WAITING
                subtask.started_at = subtask.started_at or utcnow()
                subtask.deadline = utcnow() + timedelta(seconds=waiting.deadline_s)

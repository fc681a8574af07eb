"""`SwarmWorkflow`: plan, validate, run stages of sub-agents, synthesise. Deterministic; no I/O here."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from swarmkeep.messages import (
        CallbackInput,
        DependencyConclusion,
        JobInput,
        JobOutcome,
        JobProgress,
        JobStatusUpdate,
        PlanOutcome,
        PlanRequest,
        RecordPlanRequest,
        SubagentInput,
        SubagentResult,
        SubtaskFailure,
        SynthesisOutcome,
        SynthesisRequest,
    )
    from swarmkeep.roles import ROLES
    from swarmkeep.store.models import JobStatus, SubtaskStatus
    from swarmkeep.workflows.callback import DeliverCallbackWorkflow
    from swarmkeep.workflows.metrics import run_metrics
    from swarmkeep.workflows.planning import PlanCheck, check_plan

# Job store writes are quick; they retry often and without end, since a job must record its outcome.
STORE_TIMEOUT = timedelta(seconds=30)
STORE_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))


def _failure_message(error: BaseException) -> str:
    """The innermost message of an activity failure, which says what really went wrong."""
    while isinstance(error, ActivityError) and error.cause is not None:
        error = error.cause
    return str(error) or type(error).__name__


@workflow.defn
class SwarmWorkflow:
    """One job: the orchestrator plans, sub-agents work stage by stage, the orchestrator synthesises."""

    def __init__(self) -> None:
        self._status = JobStatus.QUEUED
        self._stages: list[list[str]] = []
        self._stage = 0
        self._subtask_status: dict[str, str] = {}
        self._roles: dict[str, str] = {}
        self._depends_on: dict[str, list[str]] = {}
        self._failed_retries = 0
        self._results: dict[str, SubagentResult] = {}
        self._errors: dict[str, str] = {}
        self._orchestrator_steps = 0
        self._prompt_tokens = 0
        self._completion_tokens = 0

    @workflow.query
    def progress(self) -> JobProgress:
        """Where the job stands: status, stage, and subtask counts."""
        counts = list(self._subtask_status.values())
        return JobProgress(
            status=self._status,
            stage=self._stage,
            stages_total=len(self._stages),
            subtasks_total=len(counts),
            pending=counts.count(SubtaskStatus.PENDING),
            running=counts.count(SubtaskStatus.RUNNING),
            done=counts.count(SubtaskStatus.SUCCEEDED),
            failed=counts.count(SubtaskStatus.FAILED),
            retries=self._retries(),
            steps=self._orchestrator_steps + sum(r.steps for r in self._results.values()),
        )

    @workflow.run
    async def run(self, job: JobInput) -> JobOutcome:
        started = workflow.now()
        try:
            check = await self._plan(job)
            if not check.ok:
                raise ApplicationError(
                    f"The orchestrator's plan was unusable twice: {check.summary()}. "
                    "Try a more capable model (SWARMKEEP_LLM_MODEL) or rephrase the task.",
                    type="PlanRejected",
                    non_retryable=True,
                )
            await self._set_status(job, JobStatus.RUNNING)
            await self._run_stages(job)
            await self._set_status(job, JobStatus.SYNTHESIZING)
            synthesis = await self._synthesise(job)
            await self._finish(job, JobStatus.SUCCEEDED, None, started)
            return JobOutcome(job_id=job.job_id, status=JobStatus.SUCCEEDED, preview=synthesis.preview)
        except asyncio.CancelledError:
            # The job was canceled: record it (the activity still runs after cancellation), then end canceled.
            await self._finish(job, JobStatus.CANCELED, "The job was canceled.", started)
            raise
        except Exception as error:  # every job must reach a terminal state, whatever failed
            message = _failure_message(error)
            await self._finish(job, JobStatus.FAILED, message, started)
            if isinstance(error, ApplicationError):
                raise
            raise ApplicationError(message, type="JobFailed", non_retryable=True) from error

    async def _plan(self, job: JobInput) -> PlanCheck:
        """Ask for a plan; re-ask once with the validation error; return the last verdict."""
        await self._set_status(job, JobStatus.PLANNING)
        feedback: str | None = None
        check = PlanCheck(problems=["no plan yet"], stages=[])
        for attempt in (1, 2):
            outcome: PlanOutcome = await workflow.execute_activity(
                "plan_job",
                PlanRequest(
                    job_id=job.job_id,
                    min_subtasks=job.limits.min_subtasks,
                    max_subtasks=job.limits.max_subtasks,
                    attempt=attempt,
                    feedback=feedback,
                ),
                result_type=PlanOutcome,
                start_to_close_timeout=timedelta(seconds=job.limits.llm_timeout_s * 2),
                retry_policy=RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=30)),
                summary="orchestrator: plan",
            )
            self._orchestrator_steps += 1
            self._prompt_tokens += outcome.prompt_tokens
            self._completion_tokens += outcome.completion_tokens
            if outcome.problem:
                check = PlanCheck(problems=[outcome.problem], stages=[])
            else:
                check = check_plan(outcome.subtasks, ROLES, job.limits.min_subtasks, job.limits.max_subtasks)
            if check.ok:
                self._stages = check.stages
                self._roles = {item.id: item.role for item in outcome.subtasks}
                self._depends_on = {item.id: list(item.depends_on) for item in outcome.subtasks}
                self._subtask_status = {item.id: SubtaskStatus.PENDING for item in outcome.subtasks}
                await self._store("record_plan", RecordPlanRequest(job_id=job.job_id, stages=check.stages))
                return check
            feedback = check.summary()
        return check

    async def _run_stages(self, job: JobInput) -> None:
        limit = asyncio.Semaphore(job.limits.max_parallel)
        for index, stage in enumerate(self._stages):
            self._stage = index + 1
            await asyncio.gather(*(self._run_subtask(job, subtask_id, limit) for subtask_id in stage))

    async def _run_subtask(self, job: JobInput, subtask_id: str, limit: asyncio.Semaphore) -> None:
        """Run one sub-agent; a subtask that fails all attempts is recorded failed and the run goes on."""
        async with limit:
            self._subtask_status[subtask_id] = SubtaskStatus.RUNNING
            try:
                result: SubagentResult = await workflow.execute_activity(
                    "run_subagent",
                    SubagentInput(
                        job_id=job.job_id,
                        subtask_id=subtask_id,
                        max_steps=job.limits.max_steps,
                        conclusion_chars=job.limits.conclusion_chars,
                        dependencies=self._dependency_conclusions(subtask_id),
                    ),
                    result_type=SubagentResult,
                    start_to_close_timeout=timedelta(seconds=job.limits.subagent_timeout_s),
                    heartbeat_timeout=timedelta(seconds=job.limits.heartbeat_timeout_s),
                    retry_policy=RetryPolicy(
                        maximum_attempts=job.limits.subagent_attempts,
                        initial_interval=timedelta(seconds=1),
                        maximum_interval=timedelta(seconds=30),
                        non_retryable_error_types=["SubtaskNotFound"],
                    ),
                    summary=f"{self._roles.get(subtask_id, 'sub-agent')}: {subtask_id}",
                )
            except ActivityError as error:
                canceled = is_cancelled_exception(error)
                outcome = SubtaskStatus.CANCELED if canceled else SubtaskStatus.FAILED
                message = "The job was canceled." if canceled else _failure_message(error)
                self._subtask_status[subtask_id] = outcome
                self._errors[subtask_id] = message
                attempts: int = await self._store(
                    "mark_subtask", SubtaskFailure(job.job_id, subtask_id, outcome, message), int
                )
                self._failed_retries += max(attempts - 1, 0)
                if canceled:
                    return
            else:
                self._results[subtask_id] = result
                self._prompt_tokens += result.prompt_tokens
                self._completion_tokens += result.completion_tokens
                self._subtask_status[subtask_id] = SubtaskStatus.SUCCEEDED
        if job.progress_callbacks:
            await self._callback(job, "subtask.finished", subtask_id)

    def _dependency_conclusions(self, subtask_id: str) -> list[DependencyConclusion]:
        # A sub-agent sees its dependencies' conclusions only, never their notebooks.
        return [self._conclusion_of(dep) for dep in self._depends_on.get(subtask_id, [])]

    def _conclusion_of(self, subtask_id: str) -> DependencyConclusion:
        status = self._subtask_status.get(subtask_id, SubtaskStatus.PENDING)
        if subtask_id in self._results:
            text = self._results[subtask_id].conclusion
        else:
            text = f"(this subtask failed: {self._errors.get(subtask_id, 'unknown error')})"
        return DependencyConclusion(
            subtask_id=subtask_id, role=self._roles.get(subtask_id, ""), status=status, conclusion=text
        )

    async def _callback(self, job: JobInput, event_type: str, subtask_id: str | None = None) -> None:
        """Start the delivery of a signed callback as an abandoned child, so the job never waits on a receiver."""
        suffix = subtask_id or event_type
        await workflow.start_child_workflow(
            DeliverCallbackWorkflow.run,
            CallbackInput(
                job_id=job.job_id,
                event_type=event_type,
                webhook_id=f"msg_{job.job_id}_{suffix}",
                subtask_id=subtask_id,
                policy=job.callback_policy,
            ),
            id=f"{job.job_id}-callback-{suffix}",
            parent_close_policy=ParentClosePolicy.ABANDON,
            static_summary=f"callback {event_type} for {job.job_id}",
        )

    async def _store(self, name: str, arg: object, result_type: type | None = None) -> Any:
        """Run a job store activity."""
        return await workflow.execute_activity(
            name, arg, result_type=result_type, start_to_close_timeout=STORE_TIMEOUT, retry_policy=STORE_RETRY
        )

    def _retries(self) -> int:
        return self._failed_retries + sum(r.attempt - 1 for r in self._results.values())

    async def _synthesise(self, job: JobInput) -> SynthesisOutcome:
        conclusions = [self._conclusion_of(sid) for stage in self._stages for sid in stage]
        outcome: SynthesisOutcome = await workflow.execute_activity(
            "synthesize",
            SynthesisRequest(job_id=job.job_id, conclusions=conclusions),
            result_type=SynthesisOutcome,
            start_to_close_timeout=timedelta(seconds=job.limits.llm_timeout_s * 2),
            retry_policy=RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=30)),
            summary="orchestrator: synthesise",
        )
        self._orchestrator_steps += 1
        self._prompt_tokens += outcome.prompt_tokens
        self._completion_tokens += outcome.completion_tokens
        return outcome

    async def _set_status(self, job: JobInput, status: str) -> None:
        self._status = status
        await self._store("set_job_status", JobStatusUpdate(job_id=job.job_id, status=status))

    async def _finish(self, job: JobInput, status: str, error: str | None, started: datetime) -> None:
        self._status = status
        metrics = run_metrics(
            stages=self._stages,
            steps_by_subtask={sid: r.steps for sid, r in self._results.items()},
            succeeded=len(self._results),
            failed=sum(1 for s in self._subtask_status.values() if s == SubtaskStatus.FAILED),
            retries=self._retries(),
            orchestrator_steps=self._orchestrator_steps,
            prompt_tokens=self._prompt_tokens,
            completion_tokens=self._completion_tokens,
            wall_time_s=(workflow.now() - started).total_seconds(),
        )
        await self._store(
            "set_job_status",
            JobStatusUpdate(job_id=job.job_id, status=status, error=error, metrics=metrics.as_dict()),
        )
        if job.callbacks:
            await self._callback(job, f"job.{status}")

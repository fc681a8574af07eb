"""`SwarmWorkflow`: plan, validate, run stages of sub-agents, synthesise. Deterministic; no I/O here."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from swarmkeep.messages import (
        JOB_NOT_IN_STORE,
        CallbackInput,
        DependencyConclusion,
        HumanAnswer,
        JobInput,
        JobOutcome,
        JobProgress,
        JobStatusUpdate,
        PlanOutcome,
        PlanRequest,
        RecordPlanRequest,
        RegenerateOutcome,
        RegenerateRequest,
        SubagentInput,
        SubagentResult,
        SubtaskRecord,
        SynthesisOutcome,
        SynthesisRequest,
        WaitingForHuman,
    )
    from swarmkeep.roles import HUMAN, plan_roles, queue_for
    from swarmkeep.search_attributes import JOB_STATUS, SUBTASKS_DONE, SUBTASKS_TOTAL
    from swarmkeep.store.models import JobStatus, SubtaskStatus
    from swarmkeep.workflows.budget import budget_exceeded, cost_usd
    from swarmkeep.workflows.callback import DeliverCallbackWorkflow
    from swarmkeep.workflows.hedging import HedgePolicy, hedge_decision
    from swarmkeep.workflows.metrics import run_metrics
    from swarmkeep.workflows.planning import PLAN_ATTEMPTS, PlanCheck, check_plan
    from swarmkeep.workflows.recovery import HEDGE, PRIMARY, REASSIGNED, REGENERATED, alternate_role, recovery_ladder

# Job store writes are quick; they retry often and without end, since a job must record its outcome.
STORE_TIMEOUT = timedelta(seconds=30)
STORE_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))
ORCHESTRATOR_RETRY = RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=30))


def _not_in_store(error: BaseException) -> ApplicationError | None:
    """The JobNotInStore error at the root of an activity failure, if that is what it is."""
    while isinstance(error, ActivityError) and error.cause is not None:
        error = error.cause
    return error if isinstance(error, ApplicationError) and error.type == JOB_NOT_IN_STORE else None


def _failure_message(error: BaseException) -> str:
    """The innermost message of an activity failure, which says what really went wrong."""
    while isinstance(error, ActivityError) and error.cause is not None:
        error = error.cause
    return str(error) or type(error).__name__


class _BudgetStop(Exception):
    """Raised inside a subtask's task when a budget stops the job; never leaves the workflow."""


# Not sandboxed: the sandbox re-enters its import hooks for every payload of every command (hundreds per
# activation at full width), a large share of the worker's CPU. The workflow code keeps to workflow.* for time,
# randomness and I/O on its own; tests replay real histories to hold it to that.
@workflow.defn(sandboxed=False)
class SwarmWorkflow:
    """One job: the orchestrator plans, sub-agents work stage by stage, the orchestrator synthesises."""

    def __init__(self) -> None:
        self._status = JobStatus.QUEUED
        self._stages: list[list[str]] = []
        self._stage = 0
        self._subtask_status: dict[str, str] = {}
        self._roles: dict[str, str] = {}
        self._depends_on: dict[str, list[str]] = {}
        self._results: dict[str, SubagentResult] = {}
        self._errors: dict[str, str] = {}
        self._busy_s: dict[str, float] = {}
        self._primary_started: dict[str, datetime] = {}
        self._primary_durations: dict[str, float] = {}
        self._hedge_asked: dict[str, asyncio.Future[None]] = {}  # per primary run; resolved when it gets a backup
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._completions = 0
        self._counts = {"retries": 0, "reassignments": 0, "regenerations": 0, "hedges": 0, "hedges_won": 0}
        self._orchestrator_steps = 0
        self._stage_orchestrator_steps: dict[int, int] = {}
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._context_chars = 0
        self._plan_findings: list[str] = []
        self._plan_merged: list[dict[str, Any]] = []
        self._synthesis_loop_cut = False
        self._stop_reason: str | None = None
        self._finished = False
        self._search_attributes = False
        self._shown: tuple[str, int, int] | None = None
        self._human_answers: dict[str, HumanAnswer] = {}

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
            retries=self._counts["retries"],
            steps=self._orchestrator_steps + sum(r.steps for r in self._results.values()),
        )

    @workflow.update
    async def complete_subtask(self, answer: HumanAnswer) -> str:
        """A person hands in the conclusion of a human subtask that is waiting for them."""
        self._human_answers[answer.subtask_id] = answer
        return "accepted"

    @complete_subtask.validator
    def _check_answer(self, answer: HumanAnswer) -> None:
        if self._roles.get(answer.subtask_id) is None:
            raise ValueError(f"this job has no subtask {answer.subtask_id!r}")
        if self._roles[answer.subtask_id] != HUMAN:
            raise ValueError(
                f"subtask {answer.subtask_id!r} is an agent's ({self._roles[answer.subtask_id]}), not a person's"
            )
        if self._subtask_status.get(answer.subtask_id) != SubtaskStatus.WAITING:
            raise ValueError(
                f"subtask {answer.subtask_id!r} is not waiting for a person (it is "
                f"{self._subtask_status.get(answer.subtask_id)}; an agent may have taken it after its deadline)"
            )
        if not answer.conclusion.strip():
            raise ValueError("the conclusion is empty")

    @workflow.run
    async def run(self, job: JobInput) -> JobOutcome:
        started = workflow.now()
        self._search_attributes = job.search_attributes
        watchers = [asyncio.create_task(self._watch_deadline(job.limits.deadline_s))] if job.limits.deadline_s else []
        try:
            check = await self._plan(job)
            if not check.ok:
                raise ApplicationError(
                    f"The orchestrator's plan was unusable twice: {check.summary()}. "
                    "Try a more capable model (SWARMKEEP_LLM_MODEL) or rephrase the task.",
                    type="PlanRejected",
                    non_retryable=True,
                )
            self._show_status(JobStatus.RUNNING)  # record_plan moved the stored job to running
            await self._run_stages(job)
            self._show_status(JobStatus.SYNTHESIZING)  # the synthesis activity moves the stored job
            synthesis = await self._synthesise(job)
            await self._finish(job, JobStatus.SUCCEEDED, None, started)
            return JobOutcome(job_id=job.job_id, status=JobStatus.SUCCEEDED, preview=synthesis.preview)
        except asyncio.CancelledError:
            # The job was canceled: record it (activities still run after cancellation), then end canceled.
            await self._finish(job, JobStatus.CANCELED, "The job was canceled.", started)
            raise
        except Exception as error:  # every job must reach a terminal state, whatever failed
            message = _failure_message(error)
            await self._finish(job, JobStatus.FAILED, message, started)
            if isinstance(error, ApplicationError):
                raise
            kind = JOB_NOT_IN_STORE if _not_in_store(error) else "JobFailed"
            raise ApplicationError(message, type=kind, non_retryable=True) from error
        finally:
            self._finished = True
            for watcher in watchers:
                watcher.cancel()

    # Planning

    async def _plan(self, job: JobInput) -> PlanCheck:
        """Ask for a plan; re-ask once with the validation error or the plan guards' findings."""
        self._show_status(JobStatus.PLANNING)  # the plan activity moves the stored job
        feedback: str | None = None
        check = PlanCheck(problems=["no plan yet"], stages=[])
        accepted: tuple[int, PlanOutcome, PlanCheck] | None = None
        for attempt in range(1, PLAN_ATTEMPTS + 1):
            outcome: PlanOutcome = await workflow.execute_activity(
                "plan_job",
                PlanRequest(
                    job_id=job.job_id,
                    min_subtasks=job.limits.min_subtasks,
                    max_subtasks=job.limits.max_subtasks,
                    attempt=attempt,
                    feedback=feedback,
                    allow_humans=job.limits.allow_humans,
                ),
                result_type=PlanOutcome,
                start_to_close_timeout=timedelta(seconds=job.limits.llm_timeout_s * 2),
                heartbeat_timeout=timedelta(seconds=job.limits.heartbeat_timeout_s),  # the LLM client beats meanwhile
                retry_policy=ORCHESTRATOR_RETRY,
                summary="orchestrator: plan",
            )
            self._count_orchestrator(outcome.prompt_tokens, outcome.completion_tokens)
            if outcome.problem:
                check = PlanCheck(problems=[outcome.problem], stages=[])
            else:
                roles = plan_roles(job.limits.allow_humans)
                # A last plan whose near-duplicates were merged may be smaller than asked for: it runs anyway.
                low = min(job.limits.min_subtasks, len(outcome.subtasks)) if outcome.merged else job.limits.min_subtasks
                check = check_plan(outcome.subtasks, roles, low, job.limits.max_subtasks)
            if check.ok:
                accepted = (attempt, outcome, check)
                if not outcome.findings or attempt == PLAN_ATTEMPTS:
                    if attempt > 1:  # what the re-plan still got wrong runs with it: show it too
                        self._plan_findings += [f"after re-plan: {f}" for f in outcome.findings]
                    break
                # A valid plan that collapses into a chain or fakes parallelism: ask once for a better one.
                self._plan_findings = list(outcome.findings)
                feedback = "; ".join(outcome.findings)
                continue
            if accepted is not None:  # the re-plan after a guard finding was worse: keep the first plan
                break
            feedback = check.summary()
        if accepted is None:
            return check
        attempt, outcome, check = accepted
        self._plan_merged = list(outcome.merged)
        self._stages = check.stages
        self._roles = {item.id: item.role for item in outcome.subtasks}
        self._depends_on = {item.id: list(item.depends_on) for item in outcome.subtasks}
        self._subtask_status = {item.id: SubtaskStatus.PENDING for item in outcome.subtasks}
        await self._store("record_plan", RecordPlanRequest(job_id=job.job_id, stages=check.stages, attempt=attempt))
        return check

    # Running stages

    async def _run_stages(self, job: JobInput) -> None:
        limit = asyncio.Semaphore(job.limits.max_parallel)
        for index, stage in enumerate(self._stages):
            if self._stop_reason:
                break
            self._stage = index + 1
            self._tasks = {sid: asyncio.create_task(self._run_subtask(job, sid, limit)) for sid in stage}
            watchers = []
            if job.limits.hedging and len(stage) >= 2:
                watchers.append(asyncio.create_task(self._watch_stragglers(job, stage)))
            await asyncio.gather(*self._tasks.values())
            for watcher in watchers:
                watcher.cancel()

    async def _run_subtask(self, job: JobInput, subtask_id: str, limit: asyncio.Semaphore) -> None:
        """Run a subtask up the recovery ladder; one that fails every run is recorded failed, the job goes on.
        A budget stop ends it canceled (recorded); a job cancellation is recorded and passed on."""
        history: list[dict[str, str]] = []
        began: datetime | None = None
        try:
            async with limit:
                began = workflow.now()
                if self._stop_reason:
                    raise _BudgetStop
                self._subtask_status[subtask_id] = SubtaskStatus.RUNNING
                await self._climb_ladder(job, subtask_id, history)
        except (_BudgetStop, asyncio.CancelledError):
            reason = self._stop_reason or "The job was canceled."
            self._errors[subtask_id] = f"stopped: {reason}"
            await self._record(job, subtask_id, SubtaskStatus.CANCELED, history, error=f"stopped: {reason}")
            if not self._stop_reason:
                raise
        finally:
            # Not in the workflow's loop when an evicted run's coroutines are closed: nothing to count then.
            if workflow.in_workflow():
                self._busy_s[subtask_id] = (workflow.now() - began).total_seconds() if began else 0.0
                self._completions += 1
        if job.progress_callbacks and self._subtask_status.get(subtask_id) != SubtaskStatus.CANCELED:
            await self._callback(job, "subtask.finished", subtask_id)

    async def _climb_ladder(self, job: JobInput, subtask_id: str, history: list[dict[str, str]]) -> None:
        """Primary run (retried by Temporal), then another role or model, then a rewritten subtask."""
        role = self._roles.get(subtask_id, "researcher")
        model: str | None = None
        error = "not run"
        if role == HUMAN:
            answer = await self._wait_for_human(job, subtask_id)
            if answer is not None:
                await self._record(job, subtask_id, SubtaskStatus.SUCCEEDED, history, human=answer)
                return
            error = f"no one answered within {job.limits.human_deadline_s:g}s"
            history.append({"event": "deadline", "error": error})
        ladder = recovery_ladder(job.limits.reassign or role == HUMAN, job.limits.regenerate)
        for lane in ladder[1:] if role == HUMAN else ladder:
            if lane == REASSIGNED:
                role, model = alternate_role(role), job.limits.fallback_model or None
                self._counts["reassignments"] += 1
                history.append({"event": "reassigned", "role": role, "model": model or "", "error": error})
            elif lane == REGENERATED:
                role, model = self._roles.get(subtask_id, "researcher"), None
                await self._regenerate(job, subtask_id, error)
                history.append({"event": "regenerated", "error": error})
            try:
                result = await self._run_lane(job, subtask_id, lane, role, model, history)
            except ActivityError as failure:
                if is_cancelled_exception(failure):
                    raise asyncio.CancelledError() from failure
                if _not_in_store(failure):  # another stack's worker took it: no other run would fare better
                    raise
                error = _failure_message(failure)
                history.append({"event": "failed", "lane": lane, "error": error})
                continue
            self._results[subtask_id] = result
            await self._record(job, subtask_id, SubtaskStatus.SUCCEEDED, history, result=result)
            self._count_tokens(result.prompt_tokens, result.completion_tokens, job)
            return
        self._errors[subtask_id] = error
        await self._record(job, subtask_id, SubtaskStatus.FAILED, history, error=error)

    async def _wait_for_human(self, job: JobInput, subtask_id: str) -> HumanAnswer | None:
        """Wait for a person's answer until the deadline; None when it passed."""
        self._subtask_status[subtask_id] = SubtaskStatus.WAITING
        await self._store("wait_for_human", WaitingForHuman(job.job_id, subtask_id, job.limits.human_deadline_s))
        try:
            await workflow.wait_condition(
                lambda: subtask_id in self._human_answers, timeout=job.limits.human_deadline_s
            )
        except TimeoutError:
            self._subtask_status[subtask_id] = SubtaskStatus.RUNNING
            return None
        return self._human_answers[subtask_id]

    async def _run_lane(
        self, job: JobInput, subtask_id: str, lane: str, role: str, model: str | None, history: list[dict[str, str]]
    ) -> SubagentResult:
        """One run of a subtask; the primary run gets a backup if it straggles, and the first to finish wins."""
        primary = asyncio.create_task(self._execute(job, subtask_id, lane, role, model))
        if lane != PRIMARY or not job.limits.hedging:
            return await primary
        self._primary_started[subtask_id] = workflow.now()
        # A future, not a wait_condition: the workflow re-evaluates every pending condition after each step of its
        # loop, and with a stage of 300 sub-agents that was 300 lambdas per step, per activation.
        asked = self._hedge_asked[subtask_id] = asyncio.get_running_loop().create_future()
        try:
            await workflow.wait([primary, asked], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            primary.cancel()
            raise
        if primary.done():
            self._primary_durations[subtask_id] = (workflow.now() - self._primary_started[subtask_id]).total_seconds()
            return primary.result()
        self._counts["hedges"] += 1
        history.append({"event": "hedged"})
        backup = asyncio.create_task(self._execute(job, subtask_id, HEDGE, role, model))
        pending: set[asyncio.Task[SubagentResult]] = {primary, backup}
        failure: BaseException | None = None
        try:
            while pending:
                done, still = await workflow.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                pending = set(still)
                for finished in done:
                    if finished.exception() is None:
                        winner, loser = (HEDGE, PRIMARY) if finished is backup else (PRIMARY, HEDGE)
                        self._counts["hedges_won"] += winner == HEDGE
                        history.append({"event": "hedge_result", "winner": winner, "canceled": loser})
                        return finished.result()
                    failure = failure or finished.exception()
        finally:
            for run in (primary, backup):  # the slower run, or both if this subtask is being stopped
                if not run.done():
                    run.cancel()
                    # Nobody awaits the loser: take its outcome so it is not reported as never retrieved.
                    run.add_done_callback(lambda t: t.cancelled() or t.exception())
        assert failure is not None
        raise failure

    async def _execute(self, job: JobInput, subtask_id: str, lane: str, role: str, model: str | None) -> SubagentResult:
        result: SubagentResult = await workflow.execute_activity(
            "run_subagent",
            SubagentInput(
                job_id=job.job_id,
                subtask_id=subtask_id,
                max_steps=job.limits.max_steps,
                conclusion_chars=job.limits.conclusion_chars,
                dependencies=self._dependency_conclusions(subtask_id),
                lane=lane,
                role=role if role != self._roles.get(subtask_id) else None,
                model=model or job.limits.role_models.get(role),
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
            summary=f"{role}: {subtask_id}" + ("" if lane == PRIMARY else f" ({lane})"),
            task_queue=queue_for(workflow.info().task_queue, role),
            # No worker serves this role (or all are gone): give up waiting, so the subtask is reassigned.
            schedule_to_start_timeout=timedelta(seconds=job.limits.schedule_to_start_s),
        )
        return result

    async def _watch_stragglers(self, job: JobInput, stage: list[str]) -> None:
        """Ask for a backup of any sub-agent that runs far past its stage's finished members."""
        policy = HedgePolicy(factor=job.limits.hedge_factor, min_s=job.limits.hedge_min_s)
        zero = workflow.now()
        while not all(self._tasks[sid].done() for sid in stage):
            now_s = (workflow.now() - zero).total_seconds()
            running = {
                sid: (self._primary_started[sid] - zero).total_seconds()
                for sid in stage
                if sid in self._hedge_asked and sid not in self._primary_durations and not self._hedge_asked[sid].done()
                and not self._tasks[sid].done()
            }  # fmt: skip
            finished = [self._primary_durations[sid] for sid in stage if sid in self._primary_durations]
            decision = hedge_decision(now_s, running, finished, len(stage), policy)
            for sid in decision.hedge:  # each one running and not yet hedged
                self._hedge_asked[sid].set_result(None)
            timeout = max(decision.next_check_s - now_s, 0.5) if decision.next_check_s is not None else None

            def changed(seen: int = self._completions) -> bool:
                return self._completions != seen

            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(changed, timeout=timeout)

    async def _watch_deadline(self, deadline_s: float) -> None:
        try:
            await workflow.wait_condition(lambda: self._finished, timeout=deadline_s)
        except TimeoutError:
            self._stop(f"deadline reached ({deadline_s:g}s)")

    def _stop(self, reason: str) -> None:
        """A budget ran out: stop the running sub-agents; the job synthesises from what is done."""
        if self._stop_reason is None:
            self._stop_reason = reason
            current = asyncio.current_task()
            for task in self._tasks.values():
                if task is not current and not task.done():
                    task.cancel()

    def _count_orchestrator(self, prompt_tokens: int, completion_tokens: int) -> None:
        self._orchestrator_steps += 1
        self._prompt_tokens += prompt_tokens
        self._completion_tokens += completion_tokens

    def _count_tokens(self, prompt_tokens: int, completion_tokens: int, job: JobInput) -> None:
        self._prompt_tokens += prompt_tokens
        self._completion_tokens += completion_tokens
        reason = budget_exceeded(
            self._prompt_tokens + self._completion_tokens,
            self._cost(job),
            job.limits.max_tokens,
            job.limits.max_cost_usd,
        )
        if reason:
            self._stop(reason)

    def _cost(self, job: JobInput) -> float:
        return cost_usd(
            self._prompt_tokens, self._completion_tokens, job.limits.price_in_per_mtok, job.limits.price_out_per_mtok
        )

    async def _regenerate(self, job: JobInput, subtask_id: str, error: str) -> None:
        outcome: RegenerateOutcome = await workflow.execute_activity(
            "regenerate_subtask",
            RegenerateRequest(job_id=job.job_id, subtask_id=subtask_id, error=error),
            result_type=RegenerateOutcome,
            start_to_close_timeout=timedelta(seconds=job.limits.llm_timeout_s * 2),
            heartbeat_timeout=timedelta(seconds=job.limits.heartbeat_timeout_s),  # the LLM client beats meanwhile
            retry_policy=ORCHESTRATOR_RETRY,
            summary=f"orchestrator: regenerate {subtask_id}",
        )
        self._count_orchestrator(outcome.prompt_tokens, outcome.completion_tokens)
        self._stage_orchestrator_steps[self._stage] = self._stage_orchestrator_steps.get(self._stage, 0) + 1
        self._counts["regenerations"] += 1

    async def _record(
        self,
        job: JobInput,
        subtask_id: str,
        status: str,
        history: list[dict[str, str]],
        result: SubagentResult | None = None,
        error: str | None = None,
        human: HumanAnswer | None = None,
    ) -> None:
        self._subtask_status[subtask_id] = status
        if status == SubtaskStatus.SUCCEEDED and result is not None and result.lane == PRIMARY and not history:
            # The primary run recorded its own success; its attempts are all retries of that one run.
            self._counts["retries"] += result.attempt - 1
            self._show()
            return
        record = SubtaskRecord(job_id=job.job_id, subtask_id=subtask_id, status=status, error=error, history=history)
        if human is not None:
            record.lane, record.role, record.conclusion = HUMAN, HUMAN, human.conclusion
            record.worker = f"person: {human.completed_by or 'unnamed'}"
            self._results[subtask_id] = SubagentResult(subtask_id=subtask_id, conclusion=human.conclusion, steps=0)
        if result is not None:
            record.worker = result.worker
            record.lane, record.role, record.conclusion = result.lane, result.role, result.conclusion
            record.steps, record.prompt_tokens = result.steps, result.prompt_tokens
            record.completion_tokens = result.completion_tokens
        self._show()
        attempts: int = await self._store("record_subtask", record, int)
        runs = 1 + sum(1 for h in history if h["event"] in ("reassigned", "regenerated", "hedged"))
        self._counts["retries"] += max(attempts - runs, 0)

    def _dependency_conclusions(self, subtask_id: str) -> list[DependencyConclusion]:
        # A sub-agent sees its dependencies' conclusions only, never their notebooks.
        return [self._conclusion_of(dep) for dep in self._depends_on.get(subtask_id, [])]

    def _conclusion_of(self, subtask_id: str) -> DependencyConclusion:
        status = self._subtask_status.get(subtask_id, SubtaskStatus.PENDING)
        if subtask_id in self._results:
            text = self._results[subtask_id].conclusion
        else:
            text = f"(this subtask did not finish: {self._errors.get(subtask_id, 'not run')})"
        return DependencyConclusion(
            subtask_id=subtask_id, role=self._roles.get(subtask_id, ""), status=status, conclusion=text
        )

    # Synthesis and the end

    async def _synthesise(self, job: JobInput) -> SynthesisOutcome:
        conclusions = [self._conclusion_of(sid) for stage in self._stages for sid in stage]
        outcome: SynthesisOutcome = await workflow.execute_activity(
            "synthesize",
            SynthesisRequest(job_id=job.job_id, conclusions=conclusions),
            result_type=SynthesisOutcome,
            start_to_close_timeout=timedelta(seconds=job.limits.llm_timeout_s * 2),
            heartbeat_timeout=timedelta(seconds=job.limits.heartbeat_timeout_s),  # the LLM client beats meanwhile
            retry_policy=ORCHESTRATOR_RETRY,
            summary="orchestrator: synthesise",
        )
        self._count_orchestrator(outcome.prompt_tokens, outcome.completion_tokens)
        self._context_chars = outcome.context_chars
        self._synthesis_loop_cut = outcome.loop_cut
        return outcome

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
        """Run a job store activity, as a local activity: a short write on the workflow's own worker, which spares
        each one a round trip through the server's task queue (record_plan stood between the plan and the
        sub-agents' start, set_job_status between the synthesis and the job's end)."""
        return await workflow.execute_local_activity(
            name, arg, result_type=result_type, start_to_close_timeout=STORE_TIMEOUT, retry_policy=STORE_RETRY
        )

    def _show(self) -> None:
        """Keep the Temporal UI's columns (status, subtasks total and done) current; each update is a history
        event, so progress is shown in steps of a twentieth of the plan."""
        if not self._search_attributes:
            return
        total = len(self._subtask_status)
        done = sum(1 for s in self._subtask_status.values() if s == SubtaskStatus.SUCCEEDED)
        shown = (self._status, total, done)
        step = max(1, total // 20)
        if self._shown is not None and self._shown[:2] == shown[:2] and done - self._shown[2] < step and done < total:
            return
        self._shown = shown
        workflow.upsert_search_attributes(
            [JOB_STATUS.value_set(self._status), SUBTASKS_TOTAL.value_set(total), SUBTASKS_DONE.value_set(done)]
        )

    def _show_status(self, status: str) -> None:
        self._status = status
        self._show()

    async def _finish(self, job: JobInput, status: str, error: str | None, started: datetime) -> None:
        self._status = status
        self._show()
        wall = (workflow.now() - started).total_seconds()
        metrics = run_metrics(
            stages=self._stages,
            steps_by_subtask={sid: r.steps for sid, r in self._results.items()},
            succeeded=len(self._results),
            failed=sum(1 for s in self._subtask_status.values() if s == SubtaskStatus.FAILED),
            retries=self._counts["retries"],
            orchestrator_steps=self._orchestrator_steps,
            stage_orchestrator_steps=[self._stage_orchestrator_steps.get(i + 1, 0) for i in range(len(self._stages))],
            prompt_tokens=self._prompt_tokens,
            completion_tokens=self._completion_tokens,
            wall_time_s=wall,
        ).as_dict()
        metrics.update(
            reassignments=self._counts["reassignments"],
            regenerations=self._counts["regenerations"],
            hedges=self._counts["hedges"],
            hedges_won=self._counts["hedges_won"],
            cost_usd=round(self._cost(job), 6),
            sequential_time_s=round(sum(self._busy_s.values()), 3),
            speedup=round(sum(self._busy_s.values()) / wall, 3) if wall > 0 else 0.0,
            orchestrator_context_chars=self._context_chars,
            subagent_transcript_chars=sum(r.transcript_chars for r in self._results.values()),
            plan_findings=self._plan_findings,
            plan_merged=self._plan_merged,
            # Answers that fell into a loop (one sentence again and again), cut where it began.
            loops_cut=[sid for sid, r in self._results.items() if r.loop_cut]
            + (["synthesis"] if self._synthesis_loop_cut else []),
        )
        partial = self._stop_reason if status == JobStatus.SUCCEEDED else None
        try:
            await self._store(
                "set_job_status",
                JobStatusUpdate(job_id=job.job_id, status=status, error=error, metrics=metrics, partial_reason=partial),
            )
        except ActivityError as failure:
            missing = _not_in_store(failure)
            if missing is None:
                raise
            # This worker's job store does not have the job, so no outcome can be recorded here: the workflow ends
            # failed with why, and the job's own stack shows that failure (api/views.py reconcile_closed).
            raise ApplicationError(missing.message, type=JOB_NOT_IN_STORE, non_retryable=True) from None
        if job.callbacks:
            await self._callback(job, f"job.{status}")

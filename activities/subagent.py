"""`run_subagent`: a specialist's multi-step loop, each step written to its notebook, heartbeating."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio import activity
from temporalio.exceptions import ApplicationError

from swarmkeep.activities.artifacts import ArtifactStore
from swarmkeep.activities.jobstore import job_not_in_store
from swarmkeep.activities.prompts import (
    CONCLUSION_MARK,
    CONTINUE_PROMPT,
    LAST_STEP_PROMPT,
    extract_conclusion,
    subagent_opening,
)
from swarmkeep.activities.tools import (
    FetchLimits,
    SandboxLimits,
    ToolContext,
    as_tool_message,
    search_provider_for,
    toolset_for,
)
from swarmkeep.inference.client import ActivityHeartbeat, LLMClient, ProgressHook
from swarmkeep.messages import SubagentInput, SubagentResult
from swarmkeep.settings import Settings
from swarmkeep.store.engine import read_scope
from swarmkeep.store.group_commit import Write, group_commit
from swarmkeep.store.group_read import group_read
from swarmkeep.store.models import NOTEBOOK, SUBTASKS, Job, NotebookEntry, SubtaskStatus, utcnow
from swarmkeep.text_loops import cut_loop
from swarmkeep.workflows.recovery import PRIMARY

# Sub-agents read and write the store with Core statements on the tables, built once: the ORM's unit of work,
# its session synchronisation and building each statement anew were most of the worker's CPU at 300 sub-agents.
# Only the job's task: the job row also holds the whole plan, which would be decoded by every sub-agent.
LOAD_SUBTASKS = (
    select(SUBTASKS.c.subtask_id, SUBTASKS.c.id, SUBTASKS.c.role, SUBTASKS.c.instruction, Job.task)
    .join(Job, Job.id == SUBTASKS.c.job_id)
    .where(SUBTASKS.c.job_id == bindparam("job"), SUBTASKS.c.subtask_id.in_(bindparam("subtasks", expanding=True)))
)
START_ATTEMPT = (
    update(SUBTASKS)
    .where(SUBTASKS.c.id == bindparam("row"))
    .values(
        # A late attempt after the outcome was recorded leaves the outcome alone.
        status=case((SUBTASKS.c.lane.is_(None), SubtaskStatus.RUNNING), else_=SUBTASKS.c.status),
        attempts=SUBTASKS.c.attempts + 1,  # every attempt of every run, so retries = attempts - runs
        started_at=func.coalesce(SUBTASKS.c.started_at, bindparam("now", type_=SUBTASKS.c.started_at.type)),
    )
)
# A primary run records its own success (the SET columns come with the parameters); a row another run already
# recorded (after a hedge or recovery) is left as it is.
RECORD_PRIMARY = update(SUBTASKS).where(SUBTASKS.c.id == bindparam("row"), SUBTASKS.c.lane.is_(None))
COUNT_STEP = (
    update(SUBTASKS)
    .where(SUBTASKS.c.id == bindparam("row"), SUBTASKS.c.steps < bindparam("step"))
    .values(steps=bindparam("step"))
)
WRITE_STEP = insert(NOTEBOOK)


SubtaskKey = tuple[str, str]  # job id, subtask id
SubtaskRow = tuple[int, str, str, str]  # row id, role, instruction, the job's task


async def _fetch_subtasks(connection: AsyncConnection, keys: list[SubtaskKey]) -> dict[SubtaskKey, SubtaskRow]:
    """The subtasks that sub-agents starting together asked for: one query per job (group_read.py)."""
    by_job: dict[str, list[str]] = {}
    for job_id, subtask_id in keys:
        by_job.setdefault(job_id, []).append(subtask_id)
    found: dict[SubtaskKey, SubtaskRow] = {}
    for job_id, subtask_ids in by_job.items():
        for subtask_id, row_id, role, instruction, task in await connection.execute(
            LOAD_SUBTASKS, {"job": job_id, "subtasks": subtask_ids}
        ):
            found[(job_id, subtask_id)] = (row_id, role, instruction, task)
    return found


@dataclass
class _Loaded:
    """What an attempt starts from: the subtask's row id, role and instruction, the job's task, the notebook."""

    row_id: int
    role: str
    instruction: str
    task: str
    notebook: list[NotebookEntry]


@dataclass
class _Outcome:
    """A run's result as it is recorded and handed up."""

    conclusion: str
    steps: int
    prompt_tokens: int
    completion_tokens: int


def _step_prompt(step: int, max_steps: int) -> str:
    return LAST_STEP_PROMPT if step == max_steps else CONTINUE_PROMPT


class SubagentActivities:
    """The sub-agent loop; each sub-agent sees its own notebook and its dependencies' conclusions only, and calls
    its role's tools when tools are on."""

    def __init__(self, settings: Settings, llm: LLMClient, artifacts: ArtifactStore | None = None):
        self.settings = settings
        self.database_url = settings.effective_database_url
        self.llm = llm
        self.max_tokens = settings.llm_max_tokens
        self.artifacts = artifacts or ArtifactStore(settings.effective_artifacts_dir, self.database_url)
        self.worker = settings.effective_worker_name

    async def _load(self, request: SubagentInput, attempt: int) -> tuple[_Loaded, asyncio.Task[None]]:
        """The job's task, the subtask and this lane's notebook so far; and the write that marks the subtask
        running. That write goes on while the model works on the first step (the step's own write waits for it),
        so a burst of sub-agents starting together does not wait a group commit before calling the model."""
        loaded = await self._read(request, attempt)
        started = asyncio.create_task(self._write([(START_ATTEMPT, {"row": loaded.row_id, "now": utcnow()})]))
        started.add_done_callback(lambda task: task.cancelled() or task.exception())  # awaited, or the attempt failed
        return loaded, started

    async def _write(self, writes: list[Write]) -> None:
        # Concurrent sub-agents' writes share transactions (group_commit.py).
        await group_commit(self.database_url).write(writes)

    async def _read(self, request: SubagentInput, attempt: int) -> _Loaded:
        # Sub-agents starting together read their subtasks in one query (group_read.py).
        found = await group_read(self.database_url, _fetch_subtasks).get((request.job_id, request.subtask_id))
        if found is None:
            async with read_scope(self.database_url) as session:
                if await session.get(Job, request.job_id) is None:  # another stack's worker took this sub-agent
                    raise job_not_in_store(request.job_id, self.database_url)
            raise ApplicationError(
                f"subtask {request.subtask_id} of job {request.job_id} is not in the job store",
                type="SubtaskNotFound",
                non_retryable=True,
            )
        row_id, role, instruction, task = found
        if attempt == 1:
            # A lane's first attempt starts an empty notebook. (Should an operator reset the workflow, the first
            # step written again hits the notebook's unique step and the retry resumes instead.)
            return _Loaded(row_id, role, instruction, task, [])
        async with read_scope(self.database_url) as session:
            notebook = list(
                (
                    await session.scalars(
                        select(NotebookEntry)
                        .where(
                            NotebookEntry.job_id == request.job_id,
                            NotebookEntry.subtask_id == request.subtask_id,
                            NotebookEntry.lane == request.lane,
                        )
                        .order_by(NotebookEntry.step)
                    )
                ).all()
            )
            return _Loaded(row_id, role, instruction, task, notebook)

    def _tool_context(self, request: SubagentInput) -> ToolContext:
        scratch = self.settings.scratch_dir / request.job_id
        scratch.mkdir(parents=True, exist_ok=True)

        async def keep(name: str, path: Path) -> None:
            await self.artifacts.save(request.job_id, request.subtask_id, name, path)

        return ToolContext(
            job_id=request.job_id,
            scratch_dir=scratch,
            on_artifact=keep,
            fetch=FetchLimits(allow=tuple(self.settings.fetch_allow), ports=tuple(self.settings.outbound_ports)),
            sandbox=SandboxLimits(require_isolation=self.settings.sandbox_isolation),
            search=search_provider_for(self.settings.search_url or None),
        )

    def _record_primary(self, row_id: int, role: str, outcome: _Outcome) -> Write:
        """Record a primary run's success here, sparing the workflow a second activity in the common case."""
        return (
            RECORD_PRIMARY,
            {
                "row": row_id,
                "status": SubtaskStatus.SUCCEEDED,
                "lane": PRIMARY,
                "role": role,
                "conclusion": outcome.conclusion,
                "error": None,
                "steps": outcome.steps,
                "prompt_tokens": outcome.prompt_tokens,
                "completion_tokens": outcome.completion_tokens,
                "worker": self.worker,
                "finished_at": utcnow(),
            },
        )

    @staticmethod
    def _conclusion(request: SubagentInput, last_answer: str) -> str:
        """What goes up to the orchestrator: the text after the mark, else the whole answer ("" if none), cut
        where it falls into a loop."""
        return SubagentActivities._looped_conclusion(request, last_answer)[0]

    @staticmethod
    def _looped_conclusion(request: SubagentInput, last_answer: str) -> tuple[str, bool]:
        """The conclusion, and whether it fell into a loop (the same sentence again and again) and was cut."""
        whole, _ = extract_conclusion(last_answer, len(last_answer) + 1)
        cut, looped = cut_loop(whole)
        conclusion, _ = extract_conclusion(cut, request.conclusion_chars)
        if not conclusion:  # the mark with nothing after it: hand up the whole answer instead
            cut, looped = cut_loop(last_answer.replace(CONCLUSION_MARK, "").strip())
            conclusion = cut[: request.conclusion_chars]
        return conclusion, looped

    @activity.defn(name="run_subagent")
    async def run_subagent(self, request: SubagentInput) -> SubagentResult:
        """Work on one subtask for up to `max_steps` steps, resuming after the lane's last notebook step."""
        info = activity.info()
        beat_every = max((info.heartbeat_timeout.total_seconds() if info.heartbeat_timeout else 30.0) / 3, 0.5)
        # Heartbeat for the whole attempt, database and model-slot waits included: only a dead or frozen worker
        # goes silent. A model that stops mid-answer fails the call on the client's idle timeout instead.
        async with ActivityHeartbeat(beat_every) as heartbeat:
            return await self._work(request, info, heartbeat)

    async def _work(self, request: SubagentInput, info: activity.Info, on_progress: ProgressHook) -> SubagentResult:
        loaded, started = await self._load(request, info.attempt)
        role, notebook = request.role or loaded.role, loaded.notebook
        toolset = toolset_for(role) if self.settings.tools_enabled else None
        context: ToolContext | None = None  # made at the first tool call: most steps call none

        messages: list[dict[str, Any]] = subagent_opening(role, loaded.task, loaded.instruction, request.dependencies)
        prompt_tokens = sum(e.prompt_tokens for e in notebook)
        completion_tokens = sum(e.completion_tokens for e in notebook)
        last_answer, used_tools = "", False
        for entry in notebook:  # a retry resumes from the notebook, not from zero
            if entry.step > 1 and entry.prompt:
                messages.append({"role": "user", "content": entry.prompt})
            messages.extend(entry.messages or [{"role": "assistant", "content": entry.response}])
            last_answer, used_tools = entry.response, bool(entry.messages and len(entry.messages) > 1)
        step = len(notebook)
        finished = bool(notebook) and not used_tools and CONCLUSION_MARK in last_answer
        outcome: _Outcome | None = None
        recorded = False

        while not finished and step < request.max_steps:
            step += 1
            # After tool results the model simply goes on; otherwise it is asked to continue.
            prompt = (
                "" if used_tools else (messages[-1]["content"] if step == 1 else _step_prompt(step, request.max_steps))
            )
            if step > 1 and prompt:
                messages.append({"role": "user", "content": prompt})
            reply = await self.llm.chat(
                messages,
                max_tokens=self.max_tokens,
                model=request.model,
                tools=toolset.specs() if toolset and step < request.max_steps else None,
                writing=True,
                on_progress=on_progress,  # the heartbeat's details say when the step waits for a model slot
            )
            added = [self.llm.assistant_message(reply)]
            for call in (reply.tool_calls or []) if toolset is not None else []:
                context = context or self._tool_context(request)
                result = await toolset.call(call["name"], call["arguments"], context)  # type: ignore[union-attr,arg-type]
                added.append(as_tool_message(call["id"], result))
            messages.extend(added)
            last_answer, used_tools = reply.content, len(added) > 1
            prompt_tokens += reply.prompt_tokens
            completion_tokens += reply.completion_tokens
            finished = not used_tools and CONCLUSION_MARK in reply.content
            if finished or step == request.max_steps:
                outcome = _Outcome(self._conclusion(request, last_answer), step, prompt_tokens, completion_tokens)
            # The step, and on the last one a primary run's outcome, in one transaction.
            writes: list[Write] = [
                (
                    WRITE_STEP,
                    {
                        "job_id": request.job_id,
                        "subtask_id": request.subtask_id,
                        "lane": request.lane,
                        "step": step,
                        "attempt": info.attempt,
                        "prompt": prompt if step > 1 else messages[1]["content"],
                        "response": reply.content,
                        "reasoning": reply.reasoning,
                        "messages": added,
                        "prompt_tokens": reply.prompt_tokens,
                        "completion_tokens": reply.completion_tokens,
                    },
                )
            ]
            if outcome is not None and outcome.conclusion and request.lane == PRIMARY:
                writes.append(self._record_primary(loaded.row_id, role, outcome))
                recorded = True
            else:
                writes.append((COUNT_STEP, {"row": loaded.row_id, "step": step}))
            await started  # the attempt is recorded running before any step of it
            await self._write(writes)

        await started
        if outcome is None:  # resumed after the last step: nothing left to run
            outcome = _Outcome(self._conclusion(request, last_answer), step, prompt_tokens, completion_tokens)
        if not outcome.conclusion:
            raise ApplicationError(
                f"sub-agent {request.subtask_id} produced an empty conclusion", type="EmptyConclusion"
            )
        if request.lane == PRIMARY and not recorded:
            await self._write([self._record_primary(loaded.row_id, role, outcome)])
        return SubagentResult(
            subtask_id=request.subtask_id,
            conclusion=outcome.conclusion,
            steps=outcome.steps,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            attempt=info.attempt,
            lane=request.lane,
            role=role,
            transcript_chars=sum(len(str(m.get("content") or "")) for m in messages),
            worker=self.worker,
            loop_cut=self._looped_conclusion(request, last_answer)[1],
        )

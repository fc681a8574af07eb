"""`run_subagent`: a specialist's multi-step loop, each step written to its notebook, heartbeating."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from swarmkeep.activities.prompts import (
    CONCLUSION_MARK,
    CONTINUE_PROMPT,
    LAST_STEP_PROMPT,
    extract_conclusion,
    subagent_opening,
)
from swarmkeep.inference.client import LLMClient
from swarmkeep.messages import SubagentInput, SubagentResult
from swarmkeep.store.engine import session_scope
from swarmkeep.store.models import Job, NotebookEntry, Subtask, SubtaskStatus, utcnow


@asynccontextmanager
async def heartbeating(interval_s: float) -> AsyncIterator[None]:
    """Heartbeat in the background while a long call runs, so a live agent is never taken for stalled."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


def _step_prompt(step: int, max_steps: int) -> str:
    return LAST_STEP_PROMPT if step == max_steps else CONTINUE_PROMPT


class SubagentActivities:
    """The sub-agent loop; each sub-agent sees its own notebook and its dependencies' conclusions only."""

    def __init__(self, database_url: str, llm: LLMClient, max_tokens: int):
        self.database_url = database_url
        self.llm = llm
        self.max_tokens = max_tokens

    async def _load(self, request: SubagentInput) -> tuple[str, Subtask, list[NotebookEntry]]:
        """The job's task, the subtask row (now marked running) and this lane's notebook so far."""
        async with session_scope(self.database_url) as session:
            subtask = await session.scalar(
                select(Subtask).where(Subtask.job_id == request.job_id, Subtask.subtask_id == request.subtask_id)
            )
            job = await session.get(Job, request.job_id)
            if subtask is None or job is None:
                raise ApplicationError(
                    f"subtask {request.subtask_id} of job {request.job_id} is not in the job store",
                    type="SubtaskNotFound",
                    non_retryable=True,
                )
            subtask.status = SubtaskStatus.RUNNING
            subtask.attempts += 1  # every attempt of every run, so retries = attempts - runs
            subtask.started_at = subtask.started_at or utcnow()
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
            return job.task, subtask, notebook

    @activity.defn(name="run_subagent")
    async def run_subagent(self, request: SubagentInput) -> SubagentResult:
        """Work on one subtask for up to `max_steps` steps, resuming after the lane's last notebook step."""
        info = activity.info()
        beat_every = max((info.heartbeat_timeout.total_seconds() if info.heartbeat_timeout else 30.0) / 3, 0.5)
        task, subtask, notebook = await self._load(request)
        role = request.role or subtask.role

        messages = subagent_opening(role, task, subtask.instruction, request.dependencies)
        prompt_tokens = sum(e.prompt_tokens for e in notebook)
        completion_tokens = sum(e.completion_tokens for e in notebook)
        last_answer = ""
        for entry in notebook:  # a retry resumes from the notebook, not from zero
            if entry.step > 1:
                messages.append({"role": "user", "content": entry.prompt})
            messages.append({"role": "assistant", "content": entry.response})
            last_answer = entry.response
        step = len(notebook)
        finished = bool(notebook) and CONCLUSION_MARK in last_answer

        while not finished and step < request.max_steps:
            step += 1
            prompt = messages[-1]["content"] if step == 1 else _step_prompt(step, request.max_steps)
            if step > 1:
                messages.append({"role": "user", "content": prompt})
            async with heartbeating(beat_every):
                reply = await self.llm.chat(messages, max_tokens=self.max_tokens, model=request.model)
            activity.heartbeat(step)
            messages.append({"role": "assistant", "content": reply.content})
            last_answer = reply.content
            prompt_tokens += reply.prompt_tokens
            completion_tokens += reply.completion_tokens
            async with session_scope(self.database_url) as session:
                session.add(
                    NotebookEntry(
                        job_id=request.job_id,
                        subtask_id=request.subtask_id,
                        lane=request.lane,
                        step=step,
                        attempt=info.attempt,
                        prompt=prompt,
                        response=reply.content,
                        reasoning=reply.reasoning,
                        prompt_tokens=reply.prompt_tokens,
                        completion_tokens=reply.completion_tokens,
                    )
                )
                row = await session.get(Subtask, subtask.id)
                if row is not None:
                    row.steps = max(row.steps, step)
            finished = CONCLUSION_MARK in reply.content

        conclusion, _ = extract_conclusion(last_answer, request.conclusion_chars)
        if not conclusion:  # the mark with nothing after it: hand up the whole answer instead
            conclusion = last_answer.replace(CONCLUSION_MARK, "").strip()[: request.conclusion_chars]
        if not conclusion:
            raise ApplicationError(
                f"sub-agent {request.subtask_id} produced an empty conclusion", type="EmptyConclusion"
            )
        return SubagentResult(
            subtask_id=request.subtask_id,
            conclusion=conclusion,
            steps=step,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            attempt=info.attempt,
            lane=request.lane,
            role=role,
            transcript_chars=sum(len(m["content"]) for m in messages),
        )

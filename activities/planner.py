"""Orchestrator activities: plan a job, and synthesise the answer from the sub-agents' conclusions."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from sqlalchemy import select, update
from temporalio import activity
from temporalio.exceptions import ApplicationError

from swarmkeep.activities.jobstore import job_not_in_store
from swarmkeep.activities.prompts import (
    PROMPT_EXAMPLES,
    clip,
    plan_messages,
    plan_schema,
    regenerate_messages,
    synthesis_messages,
)
from swarmkeep.inference.client import CONTEXT_TOO_LONG, LLMClient
from swarmkeep.messages import (
    DependencyConclusion,
    PlanItem,
    PlanOutcome,
    PlanRequest,
    RegenerateOutcome,
    RegenerateRequest,
    SynthesisOutcome,
    SynthesisRequest,
)
from swarmkeep.roles import HUMAN, plan_roles
from swarmkeep.store.engine import session_scope
from swarmkeep.store.models import Job, JobStatus, Subtask, utcnow
from swarmkeep.text_loops import cut_loop
from swarmkeep.workflows.plan_guards import PlannedSubtask, merge_duplicates, plan_findings
from swarmkeep.workflows.planning import PLAN_ATTEMPTS, find_cycle

PREVIEW_CHARS = 400
MIN_CONCLUSION_CHARS = 100  # conclusions are never cut shorter than this to fit a small model's context


def parse_plan(text: str) -> tuple[list[dict[str, Any]], str | None]:
    """Read a plan from the model's answer; return its subtasks, or the reason it cannot be read."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        return [], f"the answer is not valid JSON ({error.msg} at position {error.pos})"
    if not isinstance(data, dict) or not isinstance(data.get("subtasks"), list):
        return [], "the answer has no 'subtasks' list"
    subtasks: list[dict[str, Any]] = []
    for index, item in enumerate(data["subtasks"]):
        if not isinstance(item, dict):
            return [], f"subtask #{index + 1} is not an object"
        missing = [key for key in ("id", "role", "instruction") if not isinstance(item.get(key), str)]
        if missing:
            return [], f"subtask #{index + 1} lacks {', '.join(missing)}"
        if not str(item["instruction"]).strip():
            return [], f"subtask {item['id']!r} has an empty instruction"
        depends_on = item.get("depends_on", [])
        if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
            return [], f"subtask {item['id']!r} has a depends_on that is not a list of ids"
        subtasks.append(
            {
                "id": str(item["id"]).strip(),
                "role": str(item["role"]).strip(),
                "instruction": str(item["instruction"]).strip(),
                "depends_on": [d.strip() for d in depends_on],
            }
        )
    return tidy_ids(subtasks), None


def merge_plan(
    subtasks: list[dict[str, Any]], planned: list[PlannedSubtask]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The plan's subtasks with each group of near-duplicates merged into its first member (see
    merge_duplicates), and what was merged."""
    result = merge_duplicates(planned)
    if not result.merged:
        return subtasks, []
    by_id = {s["id"]: s for s in subtasks}
    return [{**by_id[p.id], "depends_on": list(p.depends_on)} for p in result.subtasks], result.merged


def shortened(conclusions: list[DependencyConclusion], limit: int) -> list[DependencyConclusion]:
    """The conclusions, each cut to at most ``limit`` characters."""
    return [replace(c, conclusion=clip(c.conclusion, limit)) for c in conclusions]


def mend_dependencies(subtasks: list[dict[str, Any]]) -> list[str]:
    """On the last plan attempt, keep a plan whose dependencies are unusable instead of failing the job: when
    they name unknown ids or form a cycle, each subtask keeps only its dependencies on subtasks listed before it.
    Returns what was dropped (empty when the dependencies were fine)."""
    position = {s["id"]: index for index, s in enumerate(subtasks)}
    items = [PlanItem(id=s["id"], role=s["role"], depends_on=list(s["depends_on"])) for s in subtasks]
    unknown = any(d not in position for s in subtasks for d in s["depends_on"])
    if not unknown and find_cycle(items) is None:
        return []
    dropped: list[str] = []
    for index, item in enumerate(subtasks):
        kept = [d for d in item["depends_on"] if position.get(d, index) < index]
        dropped += [f"{item['id']} -> {d}" for d in item["depends_on"] if d not in kept]
        item["depends_on"] = kept
    return dropped


def tidy_ids(subtasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mend what small models get wrong about labels, not content: a repeated id gets a suffix (references keep
    pointing at its first holder) and a subtask never waits on itself. Everything else is validated."""
    seen: set[str] = set()
    for item in subtasks:
        original, number = item["id"], 2
        while item["id"] in seen:
            item["id"], number = f"{original}_{number}", number + 1
        seen.add(item["id"])
        item["depends_on"] = [d for d in dict.fromkeys(item["depends_on"]) if d != item["id"]]
    return subtasks


class PlannerActivities:
    """The orchestrator's LLM calls; the plan and the synthesis are kept in the job store, not the history."""

    def __init__(self, database_url: str, llm: LLMClient, max_tokens: int):
        self.database_url = database_url
        self.llm = llm
        self.max_tokens = max_tokens

    async def _job(self, job_id: str, status: str | None = None) -> Job:
        """The job's row; with ``status``, the job first moves to it (planning and synthesis show themselves, so
        the workflow spends no activity of its own on the status)."""
        async with session_scope(self.database_url) as session:
            job = await session.get(Job, job_id)
            if job is None:
                raise job_not_in_store(job_id, self.database_url)
            if status is not None and job.status not in JobStatus.TERMINAL:
                job.status = status
                if status == JobStatus.PLANNING and job.started_at is None:
                    job.started_at = utcnow()
            return job

    @activity.defn(name="plan_job")
    async def plan_job(self, request: PlanRequest) -> PlanOutcome:
        """One orchestrator call with a JSON-schema response format; stores the plan, returns its shape."""
        job = await self._job(request.job_id, JobStatus.PLANNING)
        roles = plan_roles(request.allow_humans)
        reply = await self.llm.chat(
            plan_messages(job.task, request.min_subtasks, request.max_subtasks, request.feedback, roles),
            max_tokens=min(max(self.max_tokens, 300 * request.max_subtasks), 32_000),
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": "plan",
                    "schema": plan_schema(request.min_subtasks, request.max_subtasks, roles),
                },
            },
            temperature=0.2 if request.attempt > 1 else 0.0,
        )
        subtasks, problem = parse_plan(reply.content)
        if problem is None and request.attempt >= PLAN_ATTEMPTS and (dropped := mend_dependencies(subtasks)):
            activity.logger.warning(
                "last plan for %s had unusable dependencies; dropped %s", request.job_id, ", ".join(dropped)
            )
        # Subtasks the caller gave to people join whatever the orchestrator planned.
        for human in (job.options or {}).get("human_subtasks", []):
            if problem is None and all(s["id"] != human["id"] for s in subtasks):
                subtasks.append(
                    {"id": human["id"], "role": HUMAN, "instruction": human["instruction"], "depends_on": []}
                )
        findings: list[str] = []
        merged: list[dict[str, Any]] = []
        if problem is None:
            planned = [
                PlannedSubtask(str(s["id"]), str(s["instruction"]), tuple(s["depends_on"]), str(s["role"]))
                for s in subtasks
            ]
            if request.attempt >= PLAN_ATTEMPTS:
                # No attempt is left to ask for different work: near-duplicates run once, as one subtask.
                subtasks, merged = merge_plan(subtasks, planned)
                if merged:
                    activity.logger.warning("last plan for %s had duplicates; merged %s", request.job_id, merged)
                    planned = [p for p in planned if any(p.id == s["id"] for s in subtasks)]
            findings = plan_findings(planned, task=job.task, examples=PROMPT_EXAMPLES)
            # The job's options only, not the whole row: this write stands between the plan and the sub-agents.
            async with session_scope(self.database_url) as session:
                options = dict(await session.scalar(select(Job.options).where(Job.id == request.job_id)) or {})
                options["plan_candidates"] = {**options.get("plan_candidates", {}), str(request.attempt): subtasks}
                await session.execute(update(Job).where(Job.id == request.job_id).values(options=options))
        activity.logger.info("plan attempt %s for %s: %s", request.attempt, request.job_id, problem or "read")
        return PlanOutcome(
            subtasks=[
                PlanItem(id=str(s["id"]), role=str(s["role"]), depends_on=list(s["depends_on"]))  # type: ignore[call-overload]
                for s in subtasks
            ],
            problem=problem,
            findings=findings,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            merged=merged,
        )

    @activity.defn(name="synthesize")
    async def synthesize(self, request: SynthesisRequest) -> SynthesisOutcome:
        """One orchestrator call over the conclusions; the answer goes to the job row."""
        job = await self._job(request.job_id, JobStatus.SYNTHESIZING)
        conclusions = list(request.conclusions)
        while True:
            messages = synthesis_messages(job.task, conclusions)
            try:
                reply = await self.llm.chat(messages, max_tokens=self.max_tokens * 2, writing=True)
                break
            except ApplicationError as error:
                longest = max((len(c.conclusion) for c in conclusions), default=0)
                if error.type != CONTEXT_TOO_LONG or longest <= MIN_CONCLUSION_CHARS:
                    raise
                # The conclusions do not fit the model's context: cut each to half the longest and ask again.
                activity.logger.warning(
                    "synthesis of %s: conclusions cut to %d chars to fit", request.job_id, longest // 2
                )
                conclusions = shortened(conclusions, max(longest // 2, MIN_CONCLUSION_CHARS))
        answer, looped = cut_loop(reply.content)
        if looped:
            activity.logger.warning("synthesis of %s fell into a loop: cut where it began", request.job_id)
        async with session_scope(self.database_url) as session:
            stored = await session.get(Job, request.job_id)
            assert stored is not None
            stored.synthesis = answer
        return SynthesisOutcome(
            preview=answer[:PREVIEW_CHARS],
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            context_chars=sum(len(m["content"]) for m in messages),
            loop_cut=looped,
        )

    @activity.defn(name="regenerate_subtask")
    async def regenerate_subtask(self, request: RegenerateRequest) -> RegenerateOutcome:
        """The orchestrator rewrites a subtask that failed every run so far, from how it failed."""
        async with session_scope(self.database_url) as session:
            job = await session.get(Job, request.job_id)
            subtask = await session.scalar(
                select(Subtask).where(Subtask.job_id == request.job_id, Subtask.subtask_id == request.subtask_id)
            )
            if job is None or subtask is None:
                raise ApplicationError(f"subtask {request.subtask_id} is not in the job store", non_retryable=True)
            task, instruction = job.task, subtask.instruction
        reply = await self.llm.chat(regenerate_messages(task, instruction, request.error), max_tokens=self.max_tokens)
        rewritten = reply.content.strip() or instruction
        async with session_scope(self.database_url) as session:
            row = await session.scalar(
                select(Subtask).where(Subtask.job_id == request.job_id, Subtask.subtask_id == request.subtask_id)
            )
            assert row is not None
            row.instruction = rewritten[:1500]
        return RegenerateOutcome(prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens)

"""Slow is not hung: streamed sub-agent calls against the real Temporal server. A model that keeps producing is
never retried, one that stops mid-answer is retried and resumes from the notebook, and sub-agents waiting for a
model slot keep heartbeating and show as waiting for the model."""

from __future__ import annotations

import asyncio
import math

import pytest
from sqlalchemy import select

from swarmkeep.store.engine import session_scope
from swarmkeep.store.models import NotebookEntry
from tests.support.scripted_llm import Fault, Script, fan_out_plan, stream_chunks
from tests.test_faults import assert_nothing_lost
from tests.test_llm_client import completion_of

IDLE_S = 1.5
CHUNK_DELAY_S = 0.2


async def notebook_of(swarm, job_id: str, subtask_id: str) -> list[tuple[int, int]]:
    """(step, attempt) of each of the subtask's notebook entries."""
    async with session_scope(swarm.settings.effective_database_url) as session:
        rows = await session.execute(
            select(NotebookEntry.step, NotebookEntry.attempt)
            .where(NotebookEntry.job_id == job_id, NotebookEntry.subtask_id == subtask_id)
            .order_by(NotebookEntry.step)
        )
        return [(step, attempt) for step, attempt in rows.all()]


async def test_a_slow_but_steady_model_is_never_retried(swarm_factory) -> None:
    swarm = await swarm_factory(llm_idle_timeout_s=IDLE_S, llm_timeout_s=120.0, subagent_timeout_s=120.0, hedging=False)
    script = Script(plans=[fan_out_plan(2)], steps_to_conclude=2, filler_chars=300)
    script.faults = [Fault("subagent", 200, chunk_delay_s=CHUNK_DELAY_S, times=100)]
    swarm.llm.reset(script)
    # Each chunk comes well inside the idle timeout, and each answer takes longer than it.
    chunks = stream_chunks(completion_of("x" * 300))
    assert len(chunks) * CHUNK_DELAY_S > 2 * IDLE_S and CHUNK_DELAY_S < IDLE_S / 5
    job = await swarm.wait(await swarm.submit(), timeout=120)
    assert job["status"] == "succeeded"
    await assert_nothing_lost(swarm, job, 2, 2)
    assert job["metrics"]["retries"] == 0
    assert len(swarm.llm.calls("subagent")) == 4  # two steps each, none asked twice
    for subtask_id in ("s1", "s2"):
        assert await notebook_of(swarm, job["id"], subtask_id) == [(1, 1), (2, 1)]


@pytest.mark.parametrize(
    "fault",
    [
        Fault("subagent", 200, subtask="s1", step=2, after_chunks=3, stall_s=math.inf),
        Fault("subagent", 200, subtask="s1", step=2, after_chunks=3, drop=True),
    ],
    ids=["stall", "dropped-connection"],
)
async def test_a_stream_broken_off_mid_answer_is_retried_and_resumes_from_the_notebook(
    swarm_factory, fault: Fault
) -> None:
    swarm = await swarm_factory(llm_idle_timeout_s=IDLE_S, hedging=False)
    swarm.llm.reset(Script(plans=[fan_out_plan(2)], steps_to_conclude=2, filler_chars=100, faults=[fault]))
    job = await swarm.wait(await swarm.submit(), timeout=120)
    assert job["status"] == "succeeded"
    await assert_nothing_lost(swarm, job, 2, 2)
    assert job["metrics"]["retries"] == 1 and job["metrics"]["reassignments"] == 0
    # The retry asked for step 2 again, not step 1: it went on from the step its notebook had.
    assert [c["step"] for c in swarm.llm.calls("subagent", "s1")] == [1, 2, 2]
    assert await notebook_of(swarm, job["id"], "s1") == [(1, 1), (2, 2)]


async def test_sub_agents_waiting_for_a_model_slot_keep_heartbeating_and_show_as_waiting(swarm_factory) -> None:
    # One call at a time to the model: three sub-agents of two steps wait their turn, together longer than the
    # heartbeat timeout; none is taken for stalled.
    swarm = await swarm_factory(llm_max_concurrency=1, hedging=False, subagent_timeout_s=120.0)
    swarm.llm.reset(Script(plans=[fan_out_plan(3)], steps_to_conclude=2, filler_chars=60, chunk_delay_s=0.1))
    job_id = await swarm.submit()
    waiting_seen = 0
    for _ in range(600):
        job = await swarm.job(job_id)
        waiting_seen = max(waiting_seen, job["progress"]["waiting_for_model"])
        if job["status"] in ("succeeded", "failed", "canceled"):
            break
        await asyncio.sleep(0.2)
    job = await swarm.wait(job_id)
    assert job["status"] == "succeeded"
    await assert_nothing_lost(swarm, job, 3, 2)
    assert job["metrics"]["retries"] == 0
    assert swarm.llm.max_in_flight == 1  # the endpoint never had two calls at once
    assert waiting_seen >= 1
    assert job["progress"]["waiting_for_model"] == 0

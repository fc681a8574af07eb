"""Scale: a job with 300 sub-agents running at once, and a job of 4,000 steps, inside Temporal's limits."""

from __future__ import annotations

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from tests.support.scripted_llm import Script, fan_out_plan

pytestmark = pytest.mark.scale

HISTORY_LIMIT = 10_240


async def history_events(client: Client, workflow_id: str) -> int:
    """The run's event count; no workflow task of it failed. (A stage finishing all at once buffers its completions
    while a workflow task is in flight; past the server's buffer the task is failed and the history replayed.)"""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    failed = [e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert not failed, f"workflow tasks failed at events {failed}"
    return len(history.events)


async def test_300_sub_agents_in_parallel(swarm_factory) -> None:
    # One process runs the worker, the API and the model double here, so heartbeats get generous time.
    swarm = await swarm_factory(
        max_parallel=300, max_subtasks=300, llm_timeout_s=120.0, subagent_timeout_s=900.0, heartbeat_timeout_s=60.0
    )
    # Each call waits long enough for all 300 to be started, however slowly a loaded machine starts them.
    swarm.llm.reset(Script(plans=[fan_out_plan(300)], steps_to_conclude=1, subagent_delay_s=20.0))
    job = await swarm.wait(await swarm.submit(max_parallel=300), timeout=600)
    assert job["status"] == "succeeded"
    assert job["progress"]["done"] == 300 and len(job["result"]["subtasks"]) == 300
    assert swarm.llm.max_in_flight >= 250  # nearly all 300 sub-agents were waiting on the model at once
    assert job["metrics"]["parallelism"] > 50
    assert await history_events(swarm.client, job["id"]) < HISTORY_LIMIT


async def test_4000_steps_in_one_job(swarm_factory) -> None:
    # A throughput test, not a timeout test: 200 sub-agents of 20 steps share two cores with the worker, the API
    # and the model double, so no attempt is cut short and no backup run adds load.
    swarm = await swarm_factory(
        max_parallel=200,
        max_subtasks=200,
        max_steps=20,
        llm_timeout_s=120.0,
        heartbeat_timeout_s=60.0,
        subagent_timeout_s=900.0,
        hedging=False,
    )
    swarm.llm.reset(Script(plans=[fan_out_plan(200)], steps_to_conclude=20))
    job = await swarm.wait(await swarm.submit(), timeout=900)
    assert job["status"] == "succeeded"
    assert job["metrics"]["steps"] == 200 * 20 + 2  # 4,000 sub-agent steps, plus planning and synthesis
    assert job["metrics"]["critical_steps"] == 20 + 2
    assert await history_events(swarm.client, job["id"]) < HISTORY_LIMIT

"""Fault injection against the real Temporal server: each case ends in the right terminal state, no subtask is
lost or counted twice, and the recovery counts say what happened."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from sqlalchemy import func, select
from temporalio.client import Client

from swarmkeep.services.process import free_port
from swarmkeep.services.temporal_dev import TemporalDevServer
from swarmkeep.store.engine import session_scope
from swarmkeep.store.models import NotebookEntry
from swarmkeep.worker import build_worker
from tests.support.processes import swarmkeep_process
from tests.support.scripted_llm import Fault, Script, fan_out_plan

ORCHESTRATOR_STEPS = 2  # one plan, one synthesis


async def assert_nothing_lost(
    swarm, job: dict, planned: int, steps_each: int, orchestrator_steps: int = ORCHESTRATOR_STEPS
) -> None:
    """Every planned subtask appears once, succeeded with its own conclusion; steps are not double counted."""
    ids = [s["id"] for s in job["subtasks"]]
    assert sorted(ids) == sorted({f"s{i}" for i in range(1, planned + 1)})
    for s in job["subtasks"]:
        assert (s["status"], s["conclusion"]) == ("succeeded", f"result of {s['id']}"), str(s)
    # A subtask the orchestrator had to rewrite adds that orchestrator step; nothing else may add any.
    orchestrator_steps += job["metrics"]["regenerations"]
    assert job["metrics"]["orchestrator_steps"] == orchestrator_steps
    assert job["metrics"]["steps"] == planned * steps_each + orchestrator_steps
    async with session_scope(swarm.settings.effective_database_url) as session:
        rows = await session.execute(
            select(
                NotebookEntry.subtask_id,
                NotebookEntry.lane,
                func.count(),
                func.count(func.distinct(NotebookEntry.step)),
            )
            .where(NotebookEntry.job_id == job["id"])
            .group_by(NotebookEntry.subtask_id, NotebookEntry.lane)
        )
        for subtask_id, lane, entries, distinct_steps in rows.all():
            assert entries == distinct_steps, f"{subtask_id}/{lane} has a step twice"


async def test_server_errors_are_retried(swarm_factory) -> None:
    swarm = await swarm_factory()
    swarm.llm.reset(
        Script(plans=[fan_out_plan(3)], steps_to_conclude=2, faults=[Fault("subagent", 503, subtask="s2", times=2)])
    )
    job = await swarm.wait(await swarm.submit())
    assert job["status"] == "succeeded"
    await assert_nothing_lost(swarm, job, 3, 2)
    assert job["metrics"]["retries"] == 2 and job["metrics"]["reassignments"] == 0


async def test_llm_timeout_is_retried(swarm_factory) -> None:
    swarm = await swarm_factory(llm_timeout_s=1.0)
    swarm.llm.reset(
        Script(plans=[fan_out_plan(2)], steps_to_conclude=1, faults=[Fault("subagent", 200, subtask="s1", delay_s=3)])
    )
    job = await swarm.wait(await swarm.submit())
    assert job["status"] == "succeeded"
    await assert_nothing_lost(swarm, job, 2, 1)
    assert job["metrics"]["retries"] == 1
    assert "timed out" not in str(job["subtasks"])  # the retry succeeded; no error is left on the subtask


async def test_malformed_plan_then_good_plan(swarm_factory) -> None:
    swarm = await swarm_factory()
    swarm.llm.reset(Script(plans=['{"subtasks": [{"id": "s1", "role": "researcher"', fan_out_plan(2)]))
    job = await swarm.wait(await swarm.submit())
    assert job["status"] == "succeeded"
    await assert_nothing_lost(swarm, job, 2, 2, orchestrator_steps=3)  # two plan calls and the synthesis


async def test_malformed_tool_call_is_retried(swarm_factory) -> None:
    swarm = await swarm_factory()
    swarm.llm.reset(
        Script(
            plans=[fan_out_plan(2)],
            steps_to_conclude=1,
            faults=[Fault("subagent", 200, subtask="s1", tool_call_arguments='{"query": "tea')],
        )
    )
    job = await swarm.wait(await swarm.submit())
    assert job["status"] == "succeeded"
    await assert_nothing_lost(swarm, job, 2, 1)
    assert job["metrics"]["retries"] == 1


async def test_stalled_worker_is_caught_by_the_heartbeat_timeout(swarm_factory, tmp_path: Path) -> None:
    """A worker frozen with SIGSTOP stops heartbeating; its sub-agents are retried on a live worker.

    The frozen worker has exactly one slot per sub-agent, so once it holds all three it has no poll open: a poll
    left open by a frozen process would still be handed the retries, and they would stall there too.
    """
    swarm = await swarm_factory(worker=False, heartbeat_timeout_s=3.0, hedging=False)
    swarm.llm.reset(Script(plans=[fan_out_plan(3, roles=("coder",))], steps_to_conclude=2, subagent_delay_s=1.0))
    orchestrator = build_worker(swarm.client, swarm.settings.model_copy(update={"worker_roles": ["writer"]}))
    frozen_settings = swarm.settings.model_copy(
        update={"worker_roles": ["coder"], "worker_orchestrator": False, "worker_subagents": 3, "worker_name": "frozen"}
    )
    frozen = swarmkeep_process("worker", frozen_settings, tmp_path / "frozen.log")
    live_settings = swarm.settings.model_copy(update={"worker_orchestrator": False, "worker_name": "live"})
    live = swarmkeep_process("worker", live_settings, tmp_path / "live.log")
    async with orchestrator:
        frozen.start()
        try:
            job_id = await swarm.submit()
            for _ in range(600):
                job = await swarm.job(job_id)
                if job["subtasks"] and all(s["status"] == "running" for s in job["subtasks"]):
                    break
                await asyncio.sleep(0.1)
            frozen.signal(signal.SIGSTOP)
            live.start()
            job = await swarm.wait(job_id, timeout=120)
        finally:
            frozen.signal(signal.SIGKILL)  # it never wakes up: a late step of its own cannot touch the notebook
            frozen.stop()
            live.stop()
    assert job["status"] == "succeeded"
    await assert_nothing_lost(swarm, job, 3, 2)
    assert {s["worker"] for s in job["subtasks"]} == {"live"}
    assert job["metrics"]["retries"] >= 3 and job["metrics"]["reassignments"] == 0


async def test_temporal_server_restart_mid_run(swarm_factory, scripted_llm, tmp_path: Path) -> None:
    """The dev server is stopped and started again on its database file; the running job finishes."""
    server = TemporalDevServer(tmp_path / "own-temporal.db", port=free_port(), ui=False)
    server.start_and_wait()
    try:
        swarm = await swarm_factory(worker=False, temporal_address=server.address)
        swarm.llm.reset(Script(plans=[fan_out_plan(3)], steps_to_conclude=3, subagent_delay_s=0.7))
        client = await Client.connect(server.address)
        async with build_worker(client, swarm.settings):
            job_id = await swarm.submit()
            for _ in range(300):
                job = await swarm.job(job_id)
                if job["subtasks"] and any(s["steps"] >= 1 for s in job["subtasks"]):
                    break
                await asyncio.sleep(0.1)
            server.stop()
            await asyncio.sleep(2)
            server.start_and_wait()
            job = await swarm.wait(job_id, timeout=180)
        assert job["status"] == "succeeded"
        await assert_nothing_lost(swarm, job, 3, 3)
    finally:
        server.stop()

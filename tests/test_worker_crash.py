"""A worker killed with SIGKILL mid-job: a new worker finishes the job and no subtask is lost or doubled."""

from __future__ import annotations

import asyncio
import signal

from sqlalchemy import func, select

from swarmkeep.store.engine import session_scope
from swarmkeep.store.models import NotebookEntry
from tests.support.processes import swarmkeep_process
from tests.support.scripted_llm import Script, fan_out_plan


async def test_worker_sigkill_mid_job_loses_nothing(swarm_factory, tmp_path) -> None:
    swarm = await swarm_factory(worker=False, heartbeat_timeout_s=3.0)
    swarm.llm.reset(Script(plans=[fan_out_plan(4)], steps_to_conclude=3, subagent_delay_s=1.0))
    first = swarmkeep_process("worker", swarm.settings, tmp_path / "worker1.log")
    first.start()
    second = swarmkeep_process("worker", swarm.settings, tmp_path / "worker2.log")
    try:
        job_id = await swarm.submit()
        # wait until every sub-agent has taken at least one step, so the kill lands mid-run
        for _ in range(300):
            job = await swarm.job(job_id)
            if job["subtasks"] and all(s["steps"] >= 1 for s in job["subtasks"]):
                break
            await asyncio.sleep(0.1)
        assert job["status"] == "running", job
        first.signal(signal.SIGKILL)
        first.process.wait(timeout=10)  # type: ignore[union-attr]
        second.start()
        job = await swarm.wait(job_id, timeout=120)
    finally:
        first.stop()
        second.stop()
    assert job["status"] == "succeeded", job
    assert {s["id"]: s["conclusion"] for s in job["result"]["subtasks"]} == {
        f"s{i}": f"result of s{i}" for i in range(1, 5)
    }
    assert job["progress"]["retries"] >= 1  # the killed attempts were retried ...
    assert job["metrics"]["steps"] == 4 * 3 + 2  # ... resuming from the notebook, so no step was counted twice
    async with session_scope(swarm.settings.effective_database_url) as session:
        rows = await session.execute(
            select(NotebookEntry.subtask_id, func.count())
            .where(NotebookEntry.job_id == job_id)
            .group_by(NotebookEntry.subtask_id)
        )
        assert dict(rows.all()) == {f"s{i}": 3 for i in range(1, 5)}

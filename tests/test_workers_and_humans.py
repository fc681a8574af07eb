"""Claw groups: workers with different capabilities share one job, a capability with no worker is reassigned
after its schedule-to-start timeout; and people as members, answering through the API or missing a deadline."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from swarmkeep.worker import build_worker
from tests.support.replay import assert_replays
from tests.support.scripted_llm import Script, plan_json

PLAN = plan_json(
    [
        {"id": "s1", "role": "researcher", "instruction": "Do part s1.", "depends_on": []},
        {"id": "s2", "role": "coder", "instruction": "Do part s2.", "depends_on": []},
        {"id": "s3", "role": "writer", "instruction": "Do part s3.", "depends_on": ["s1", "s2"]},
        {"id": "s4", "role": "slides", "instruction": "Do part s4.", "depends_on": []},
    ]
)


async def test_two_worker_pools_share_a_job_and_a_missing_capability_is_reassigned(swarm_factory) -> None:
    swarm = await swarm_factory(worker=False, schedule_to_start_s=5.0)
    swarm.llm.reset(Script(plans=[PLAN], steps_to_conclude=1))
    client = await Client.connect(swarm.settings.temporal_address)
    # Pool A orchestrates and runs research and analysis; pool B codes and writes. Nobody makes slides.
    pool_a = swarm.settings.model_copy(update={"worker_roles": ["researcher", "analyst"], "worker_name": "pool-a"})
    pool_b = swarm.settings.model_copy(
        update={"worker_roles": ["coder", "writer"], "worker_name": "pool-b", "worker_orchestrator": False}
    )
    async with build_worker(client, pool_a), build_worker(client, pool_b):
        job = await swarm.wait(await swarm.submit(), timeout=120)
    assert job["status"] == "succeeded"
    ran = {s["id"]: (s["role"], s["worker"]) for s in job["subtasks"]}
    assert ran["s1"] == ("researcher", "pool-a")
    assert ran["s2"] == ("coder", "pool-b")
    assert ran["s3"] == ("writer", "pool-b")
    # slides had no worker: after the schedule-to-start timeout it went to a writer, whom pool B serves
    assert ran["s4"] == ("writer", "pool-b")
    s4 = {s["id"]: s for s in job["subtasks"]}["s4"]
    assert [h["event"] for h in s4["history"]][:2] == ["failed", "reassigned"]
    assert "schedule" in s4["history"][0]["error"].lower() or "timeout" in s4["history"][0]["error"].lower()


async def waiting_tasks(swarm, headers=None) -> list[dict]:
    for _ in range(100):
        items = (await swarm.api.get("/v1/tasks", headers=headers)).json()["items"]
        if items:
            return items
        await asyncio.sleep(0.2)
    return []


async def test_a_person_completes_a_human_subtask(swarm_factory) -> None:
    swarm = await swarm_factory()
    swarm.llm.reset(Script(plans=[plan_json([{"id": "s1", "role": "analyst", "instruction": "Do part s1.",
                                              "depends_on": []}])], steps_to_conclude=1))  # fmt: skip
    job_id = await swarm.submit(human_subtasks=[{"id": "approve", "instruction": "Approve the budget."}])
    (task,) = await waiting_tasks(swarm)
    assert (task["job_id"], task["subtask_id"], task["instruction"]) == (job_id, "approve", "Approve the budget.")
    other = await swarm.new_key("tenant-b")
    elsewhere = {"Authorization": f"Bearer {other.key}"}
    assert (await swarm.api.get("/v1/tasks", headers=elsewhere)).json()["items"] == []
    refused = await swarm.api.post(task["links"]["complete"], json={"conclusion": "x"}, headers=elsewhere)
    assert refused.status_code == 404
    empty = await swarm.api.post(task["links"]["complete"], json={"conclusion": ""})
    assert empty.status_code == 422
    done = await swarm.api.post(task["links"]["complete"], json={"conclusion": "Approved: 12k.", "completed_by": "Ana"})
    assert done.status_code == 200, done.text
    job = await swarm.wait(job_id)
    assert job["status"] == "succeeded"
    approve = {s["id"]: s for s in job["subtasks"]}["approve"]
    assert (approve["conclusion"], approve["lane"], approve["worker"]) == ("Approved: 12k.", "human", "person: Ana")
    assert "Approved: 12k." in str(swarm.llm.calls("synthesis")[0]["body"]["messages"])
    again = await swarm.api.post(task["links"]["complete"], json={"conclusion": "twice"})
    assert again.status_code == 409
    await assert_replays(swarm.client, job_id)  # an update, replayed


async def test_a_missed_deadline_hands_the_subtask_to_an_agent(swarm_factory) -> None:
    swarm = await swarm_factory(human_deadline_s=4.0)
    swarm.llm.reset(Script(plans=[plan_json([{"id": "s1", "role": "analyst", "instruction": "Do part s1.",
                                              "depends_on": []}])], steps_to_conclude=1))  # fmt: skip
    job_id = await swarm.submit(human_subtasks=[{"id": "h1", "instruction": "Do part h1. Check the numbers."}])
    assert await waiting_tasks(swarm)
    job = await swarm.wait(job_id, timeout=60)
    assert job["status"] == "succeeded"
    h1 = {s["id"]: s for s in job["subtasks"]}["h1"]
    assert h1["conclusion"] == "result of h1" and h1["role"] == "researcher"
    assert [h["event"] for h in h1["history"]] == ["deadline", "reassigned"]
    late = await swarm.api.post(f"/v1/jobs/{job_id}/subtasks/h1/complete", json={"conclusion": "too late"})
    assert late.status_code == 409

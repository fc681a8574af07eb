"""SwarmWorkflow end to end against the real Temporal dev server, the API over HTTP, and the scripted model."""

from __future__ import annotations

from tests.support.replay import assert_replays
from tests.support.scripted_llm import Fault, Script, diamond_plan, fan_out_plan


async def test_job_succeeds_with_every_conclusion(swarm_factory) -> None:
    swarm = await swarm_factory()
    swarm.llm.reset(Script(plans=[diamond_plan()], steps_to_conclude=2))
    job_id = await swarm.submit("Compare two databases.")
    job = await swarm.wait(job_id)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["synthesis"].startswith("Final answer")
    conclusions = {s["id"]: s["conclusion"] for s in result["subtasks"]}
    assert conclusions == {"s1": "result of s1", "s2": "result of s2", "s3": "result of s3"}
    assert [s["stage"] for s in result["subtasks"]] == [1, 1, 2]
    metrics = job["metrics"]
    # 3 sub-agents x 2 steps + plan + synthesis; critical: plan + 2 (stage 1) + 2 (stage 2) + synthesis
    assert metrics["steps"] == 8
    assert metrics["critical_steps"] == 6
    assert metrics["tokens"] == 15 * 8
    # s3 saw its dependencies' conclusions, not their notebooks
    s3_opening = swarm.llm.calls("subagent", "s3")[0]["body"]["messages"][1]["content"]
    assert "result of s1" in s3_opening and "result of s2" in s3_opening
    assert "drafting" not in s3_opening
    await assert_replays(swarm.client, job_id)


async def test_unusable_plan_twice_fails_the_job(swarm_factory) -> None:
    swarm = await swarm_factory()
    swarm.llm.reset(Script(plans=["this is not json", fan_out_plan(0)]))
    job_id = await swarm.submit()
    job = await swarm.wait(job_id)
    assert job["status"] == "failed"
    assert "plan was unusable twice" in job["error"]
    assert len(swarm.llm.calls("plan")) == 2
    # the second request carried the first one's validation error
    feedback = swarm.llm.calls("plan")[1]["body"]["messages"][-1]["content"]
    assert "not valid JSON" in feedback


async def test_invalid_plan_is_re_asked_once(swarm_factory) -> None:
    swarm = await swarm_factory()
    cyclic = (
        '{"subtasks": [{"id": "a", "role": "coder", "instruction": "Do part a.", "depends_on": ["b"]},'
        ' {"id": "b", "role": "coder", "instruction": "Do part b.", "depends_on": ["a"]}]}'
    )
    swarm.llm.reset(Script(plans=[cyclic, fan_out_plan(3)]))
    job = await swarm.wait(await swarm.submit())
    assert job["status"] == "succeeded"
    assert "cycle" in swarm.llm.calls("plan")[1]["body"]["messages"][-1]["content"]


async def test_last_plan_with_a_cycle_is_mended_not_fatal(swarm_factory) -> None:
    """A small model that answers a cycle twice still gets its job done: the last plan keeps only the
    dependencies on earlier subtasks."""
    swarm = await swarm_factory()
    cyclic = (
        '{"subtasks": [{"id": "s1", "role": "coder", "instruction": "Do part s1.", "depends_on": ["s2"]},'
        ' {"id": "s2", "role": "coder", "instruction": "Do part s2.", "depends_on": ["s1"]}]}'
    )
    swarm.llm.reset(Script(plans=[cyclic, cyclic], steps_to_conclude=1))
    job = await swarm.wait(await swarm.submit())
    assert job["status"] == "succeeded"
    assert [(s["id"], s["depends_on"], s["stage"]) for s in job["subtasks"]] == [("s1", [], 1), ("s2", ["s1"], 2)]


async def test_recovery_escalates_retry_reassign_regenerate(swarm_factory) -> None:
    swarm = await swarm_factory(subagent_attempts=2)
    # five failures: both primary attempts, both reassigned attempts, the first regenerated attempt
    swarm.llm.reset(
        Script(plans=[diamond_plan()], steps_to_conclude=1, faults=[Fault("subagent", 500, subtask="s1", times=5)])
    )
    job = await swarm.wait(await swarm.submit())
    await assert_replays(swarm.client, job["id"])
    assert job["status"] == "succeeded"
    s1 = {s["id"]: s for s in job["subtasks"]}["s1"]
    assert s1["status"] == "succeeded" and s1["conclusion"] == "result of s1"
    assert [h["event"] for h in s1["history"]] == ["failed", "reassigned", "failed", "regenerated"]
    assert s1["history"][1]["role"] == "analyst"  # the researcher's subtask went to an analyst
    assert s1["lane"] == "regenerated"
    assert s1["attempts"] == 6
    metrics = job["metrics"]
    assert (metrics["retries"], metrics["reassignments"], metrics["regenerations"]) == (3, 1, 1)
    assert len(swarm.llm.calls("regenerate", "s1")) == 1
    # the regenerated instruction replaced the old one
    assert s1["instruction"] == "Do part s1. Keep it short."
    # the rewrite is an orchestrator step inside stage 1: plan + (1 + 1) + 1 + synthesis
    assert metrics["critical_steps"] == 5 and metrics["stage_critical_steps"] == [2, 1]


async def test_subtask_failing_every_run_is_recorded_and_run_goes_on(swarm_factory) -> None:
    swarm = await swarm_factory(subagent_attempts=2)
    swarm.llm.reset(
        Script(plans=[diamond_plan()], steps_to_conclude=1, faults=[Fault("subagent", 500, subtask="s1", times=99)])
    )
    job = await swarm.wait(await swarm.submit())
    assert job["status"] == "succeeded"
    by_id = {s["id"]: s for s in job["subtasks"]}
    assert by_id["s1"]["status"] == "failed"
    assert "500" in by_id["s1"]["error"]
    assert by_id["s1"]["attempts"] == 6
    assert by_id["s3"]["status"] == "succeeded"
    s3_opening = swarm.llm.calls("subagent", "s3")[0]["body"]["messages"][1]["content"]
    assert "status='failed'" in s3_opening
    assert job["metrics"]["subtasks_failed"] == 1
    assert job["metrics"]["completion_rate"] == round(2 / 3, 3)


async def test_rate_limit_is_retried_after_the_servers_delay(swarm_factory) -> None:
    swarm = await swarm_factory()
    swarm.llm.reset(
        Script(
            plans=[fan_out_plan(3)], steps_to_conclude=1, faults=[Fault("subagent", 429, subtask="s2", retry_after=1.5)]
        )
    )
    job = await swarm.wait(await swarm.submit())
    assert job["status"] == "succeeded"
    calls = swarm.llm.calls("subagent", "s2")
    assert len(calls) == 2
    assert calls[1]["at"] - calls[0]["at"] >= 1.4  # waited for Retry-After, not the default backoff
    assert {s["id"]: s["attempts"] for s in job["subtasks"]}["s2"] == 2
    assert job["progress"]["retries"] == 1


async def test_cancel_stops_the_job(swarm_factory) -> None:
    swarm = await swarm_factory()
    swarm.llm.reset(Script(plans=[fan_out_plan(3)], steps_to_conclude=50, subagent_delay_s=0.5))
    job_id = await swarm.submit()
    for _ in range(100):
        job = await swarm.job(job_id)
        if job["status"] == "running":
            break
        import asyncio

        await asyncio.sleep(0.1)
    response = await swarm.api.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202
    job = await swarm.wait(job_id)
    assert job["status"] == "canceled"
    assert all(s["status"] in ("canceled", "succeeded") for s in job["subtasks"]), [
        (s["status"], s["error"]) for s in job["subtasks"]
    ]
    again = await swarm.api.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409


async def test_temporal_ui_can_filter_jobs_by_search_attributes(swarm_factory) -> None:
    swarm = await swarm_factory()
    swarm.llm.reset(Script(plans=[fan_out_plan(3)], steps_to_conclude=1))
    job_id = await swarm.submit()
    await swarm.wait(job_id)
    query = (
        f"WorkflowId = '{job_id}' AND SwarmkeepStatus = 'succeeded' AND SwarmkeepTenant = 'tenant-a' "
        "AND SwarmkeepSubtasksTotal = 3 AND SwarmkeepSubtasksDone = 3"
    )
    for _ in range(50):  # visibility is eventually consistent
        found = [w.id async for w in swarm.client.list_workflows(query)]
        if found:
            break
        import asyncio

        await asyncio.sleep(0.2)
    assert found == [job_id]
    description = await swarm.client.get_workflow_handle(job_id).describe()
    assert (await description.static_summary()) == "Write a short report."


async def test_conclusions_too_long_for_the_models_context_are_cut_to_fit(swarm_factory) -> None:
    """A small local model's context (4096 tokens) cannot hold every long conclusion: the synthesis asks again with
    each cut shorter instead of failing the job."""
    swarm = await swarm_factory()
    swarm.llm.reset(Script(plans=[fan_out_plan(4)], steps_to_conclude=1, conclusion_pad=1000, context_chars=3500))
    job = await swarm.wait(await swarm.submit())
    assert job["status"] == "succeeded", job
    assert all(len(s["conclusion"]) > 1000 for s in job["subtasks"])  # stored whole; only the synthesis saw less
    refused, accepted = (sum(len(m["content"]) for m in c["body"]["messages"]) for c in swarm.llm.calls("synthesis"))
    assert accepted <= 3500 < refused

"""Straggler hedging, budgets, context sharding and plan guards, against the real Temporal dev server."""

from __future__ import annotations

import json

from tests.support.replay import assert_replays
from tests.support.scripted_llm import Fault, Script, fan_out_plan, plan_json


async def test_straggler_gets_a_backup_and_the_first_to_finish_wins(swarm_factory) -> None:
    swarm = await swarm_factory(hedge_min_s=1.0, hedge_factor=2.0, llm_timeout_s=60.0, subagent_timeout_s=120.0)
    swarm.llm.reset(
        Script(
            plans=[fan_out_plan(4)],
            steps_to_conclude=1,
            subagent_delay_s=0.3,
            # s4's first run stalls past the wait below: the job can only end by not waiting for it
            faults=[Fault("subagent", 200, subtask="s4", times=1, delay_s=600)],
        )
    )
    job = await swarm.wait(await swarm.submit(), timeout=60)
    assert job["status"] == "succeeded"
    s4 = {s["id"]: s for s in job["subtasks"]}["s4"]
    assert s4["lane"] == "hedge" and s4["conclusion"] == "result of s4"
    assert {"event": "hedge_result", "winner": "hedge", "canceled": "primary"} in s4["history"]
    assert (job["metrics"]["hedges"], job["metrics"]["hedges_won"]) == (1, 1)
    assert len(swarm.llm.calls("subagent", "s4")) == 2
    await assert_replays(swarm.client, job["id"])  # a hedge race, replayed


async def test_token_budget_ends_the_job_partial(swarm_factory) -> None:
    swarm = await swarm_factory(max_parallel=1)
    swarm.llm.reset(Script(plans=[fan_out_plan(6)], steps_to_conclude=1))
    # 15 tokens per call: the plan and two sub-agents fit in 50, the third reaches it
    job = await swarm.wait(await swarm.submit(max_tokens=50))
    assert job["status"] == "succeeded"
    assert job["partial"] is True and "token budget" in job["partial_reason"]
    statuses = [s["status"] for s in job["subtasks"]]
    assert statuses.count("succeeded") == 3
    assert statuses.count("canceled") == 3  # stopped, not lost: every subtask has a terminal status
    assert job["result"]["synthesis"]
    assert len(swarm.llm.calls("synthesis")) == 1


async def test_deadline_stops_running_sub_agents(swarm_factory) -> None:
    swarm = await swarm_factory(max_parallel=2, llm_timeout_s=60.0)
    swarm.llm.reset(Script(plans=[fan_out_plan(4)], steps_to_conclude=3, subagent_delay_s=1.0))
    job = await swarm.wait(await swarm.submit(deadline_s=2.5), timeout=60)
    assert job["status"] == "succeeded" and job["partial"] is True
    assert "deadline" in job["partial_reason"]
    assert all(s["status"] in ("succeeded", "canceled") for s in job["subtasks"])
    assert any(s["status"] == "canceled" for s in job["subtasks"])


async def test_orchestrator_context_stays_bounded_as_transcripts_grow(swarm_factory) -> None:
    swarm = await swarm_factory(conclusion_chars=200)
    sizes = {}
    for filler in (0, 20_000):
        swarm.llm.reset(Script(plans=[fan_out_plan(4)], steps_to_conclude=3, filler_chars=filler))
        job = await swarm.wait(await swarm.submit())
        assert job["status"] == "succeeded"
        synthesis_request = swarm.llm.calls("synthesis")[0]["body"]["messages"]
        sizes[filler] = (
            job["metrics"]["orchestrator_context_chars"],
            job["metrics"]["subagent_transcript_chars"],
            sum(len(m["content"]) for m in synthesis_request),
        )
    (small_ctx, small_transcripts, small_seen), (big_ctx, big_transcripts, big_seen) = sizes[0], sizes[20_000]
    assert big_transcripts > 50 * small_transcripts  # the sub-agents read and wrote far more ...
    assert big_ctx == small_ctx == small_seen == big_seen  # ... while the orchestrator saw the same
    assert big_ctx < 4 * 200 + 2000  # bounded by conclusions x conclusion_chars, plus the task and framing


async def test_serial_collapse_is_replanned_once_and_recorded(swarm_factory) -> None:
    swarm = await swarm_factory()
    chain = plan_json(
        [
            {
                "id": f"s{i}",
                "role": "researcher",
                "instruction": f"Do part s{i}.",
                "depends_on": [f"s{i - 1}"] if i > 1 else [],
            }
            for i in range(1, 5)
        ]
    )
    swarm.llm.reset(Script(plans=[chain, fan_out_plan(4)], steps_to_conclude=1))
    job = await swarm.wait(await swarm.submit())
    assert job["status"] == "succeeded"
    assert len(swarm.llm.calls("plan")) == 2
    assert "serial collapse" in swarm.llm.calls("plan")[1]["body"]["messages"][-1]["content"]
    assert any("serial collapse" in f for f in job["metrics"]["plan_findings"])
    assert [s["stage"] for s in job["subtasks"]] == [1, 1, 1, 1]  # the parallel re-plan ran


SAME = "Write the introduction paragraph of the report on green tea, in the same words as the others."


async def test_fake_parallelism_is_replanned_and_a_worse_replan_is_not_used(swarm_factory) -> None:
    swarm = await swarm_factory()
    duplicate = plan_json(
        [
            {
                "id": f"s{i}",
                "role": "writer",
                "instruction": "Do part s1. Write the same introduction paragraph.",
                "depends_on": [],
            }
            for i in range(1, 4)
        ]
    )
    swarm.llm.reset(Script(plans=[duplicate, "not json at all"], steps_to_conclude=1))
    job = await swarm.wait(await swarm.submit())
    assert job["status"] == "succeeded"  # the first plan was valid, so it ran
    assert any("fake parallelism" in f for f in job["metrics"]["plan_findings"])
    assert len(job["subtasks"]) == 3


async def test_prometheus_metrics(swarm_factory) -> None:
    swarm = await swarm_factory()
    swarm.llm.reset(Script(plans=[fan_out_plan(2)], steps_to_conclude=1))
    await swarm.wait(await swarm.submit())
    text = (await swarm.api.get("/metrics")).text
    assert 'swarmkeep_jobs{status="succeeded"} 1.0' in text
    assert "swarmkeep_subagent_duration_seconds_count 2.0" in text
    assert "swarmkeep_tokens_total 60.0" in text
    assert json.dumps("swarmkeep_hedges_total")[1:-1] in text

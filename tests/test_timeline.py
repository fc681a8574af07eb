"""The run timeline: the SVG renderer on plain data, the loader on rows, and the route on a real job."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from swarmkeep.api.routes.timeline import StepTime, subtask_runs, timeline_from_rows
from swarmkeep.api.timeline import (
    COLOURS,
    MAX_ROWS,
    Run,
    SubtaskLine,
    TimelineData,
    render_timeline,
)
from swarmkeep.store.models import Job, Subtask
from tests.support.scripted_llm import Fault, Script, diamond_plan

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def bars(root: ET.Element, kind: str = "run") -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}rect") if kind in (e.get("class") or "").split()]


def texts(root: ET.Element) -> str:
    return "\n".join("".join(e.itertext()) for e in root.iter(f"{SVG}text"))


def sample() -> TimelineData:
    lines = [
        SubtaskLine("s1", "researcher", 0, "succeeded", [Run(1, 4, "succeeded", steps=2)], steps=2, attempts=1),
        SubtaskLine(
            "s2",
            "analyst",
            0,
            "succeeded",
            [Run(1, 2.5, "failed", steps=1), Run(2.5, 6, "succeeded", attempt=2, steps=3)],
            steps=3,
            attempts=2,
            critical=True,
        ),
        SubtaskLine(
            "s3",
            "coder",
            0,
            "succeeded",
            [Run(1, 7, "canceled", steps=1), Run(5, 7, "succeeded", lane="hedge", steps=2)],
            steps=2,
            attempts=2,
        ),
        SubtaskLine("s4", "writer", 1, "running", [Run(7.2, 9, "running", steps=1)], steps=1, attempts=1),
        SubtaskLine("s5", "slides", 1, "pending"),
    ]
    return TimelineData(
        job_id="job_abc",
        task="Compare teas",
        status="running",
        span_s=9.0,
        subtasks=lines,
        planning=Run(0, 1, "succeeded"),
        wall_time_s=9.0,
        critical_steps=5,
        parallelism=1.8,
        steps=9,
        live=True,
    )


def test_renders_valid_svg_with_one_bar_per_run() -> None:
    root = parse(render_timeline(sample()))
    runs = bars(root)
    assert len(runs) == 6  # s1, two attempts of s2, s3's primary and hedge, s4; s5 has not started
    assert [b.get("data-attempt") for b in runs if "s2 " in "".join(b.itertext())] == ["1", "2"]
    assert len(bars(root, "orchestrator")) == 1  # planning only: the job has not reached synthesis
    assert "orchestrator · plan" in texts(root) and "Stage 1" in texts(root) and "Stage 2" in texts(root)
    assert root.find(f"{SVG}script") is None and not list(root.iter(f"{SVG}script"))


def test_bar_colour_says_the_outcome_and_backup_runs_are_hatched() -> None:
    runs = bars(parse(render_timeline(sample())))
    fill = {(b.get("data-outcome"), b.get("data-lane")): b.get("fill") for b in runs}
    assert fill[("succeeded", "primary")] == COLOURS["succeeded"]
    assert fill[("failed", "primary")] == COLOURS["failed"]
    assert fill[("canceled", "primary")] == COLOURS["canceled"]  # the losing run of a hedge
    assert fill[("running", "primary")] == COLOURS["running"]
    assert fill[("succeeded", "hedge")] == "url(#hatch-succeeded)"
    assert len({COLOURS[o] for o in ("succeeded", "failed", "canceled", "running")}) == 4


def test_critical_path_is_marked_and_explained() -> None:
    root = parse(render_timeline(sample()))
    critical = [b for b in bars(root) if "critical" in (b.get("class") or "")]
    assert len(critical) == 1  # s2's winning attempt, not its failed one
    assert critical[0].get("data-attempt") == "2" and critical[0].get("stroke-width") == "2.5"
    assert len([p for p in root.iter(f"{SVG}path") if p.get("class") == "critical-marker"]) == 1
    assert "critical: s2 (3 steps)" in texts(root)
    assert "critical path" in texts(root)  # the legend says what the marking means


def test_header_shows_the_job_at_a_glance() -> None:
    words = texts(parse(render_timeline(sample())))
    for expected in ("job_abc", "running", "Compare teas", "critical steps", "parallelism", "wall time", "now"):
        assert expected in words


def test_user_text_is_escaped() -> None:
    evil = '</svg><script>alert("x")</script>&\x00\x1b'
    data = sample()
    data = TimelineData(
        job_id="job_<b>",
        task=evil,
        status=data.status,
        span_s=data.span_s,
        subtasks=[SubtaskLine('"><script>', "writer'", 0, "succeeded", [Run(0, 1, "succeeded", steps=1)], steps=1)],
    )
    svg = render_timeline(data)
    root = parse(svg)  # still one well-formed document
    assert "<script" not in svg and not list(root.iter(f"{SVG}script"))
    assert '</svg><script>alert("x")</script>&' in texts(root)  # shown as text, not markup


def test_many_subtasks_get_compact_rows_and_a_cap() -> None:
    lines = [
        SubtaskLine(f"s{i}", "researcher", i // 100, "succeeded", [Run(i / 100, 1 + i / 100, "succeeded", steps=1)])
        for i in range(MAX_ROWS + 20)
    ]
    root = parse(render_timeline(TimelineData("job_big", "big", "succeeded", 10.0, lines)))
    assert len(bars(root)) == MAX_ROWS
    assert "20 more subtasks not drawn" in texts(root)
    assert int(root.get("height") or 0) < 3500  # one scrollable page, not 300 full-height rows


def _subtask(**values: object) -> Subtask:
    defaults: dict[str, object] = dict(
        job_id="job_x", subtask_id="s1", position=0, stage=0, role="researcher", instruction="Do part s1.",
        depends_on=[], status="succeeded", lane="primary", history=[], attempts=1, steps=2,
        started_at=T0 + timedelta(seconds=1), finished_at=T0 + timedelta(seconds=5),
    )  # fmt: skip
    defaults.update(values)
    return Subtask(**defaults)


def _step(lane: str, attempt: int, step: int, at_s: float, subtask: str = "s1") -> StepTime:
    return StepTime(subtask, lane, attempt, step, T0 + timedelta(seconds=at_s))


def test_loader_splits_retries_into_segments() -> None:
    job = Job(id="job_x", task="t", status="succeeded", metrics={}, started_at=T0, created_at=T0)
    job.finished_at = T0 + timedelta(seconds=6)
    row = _subtask(attempts=2)
    data = timeline_from_rows(job, [row], [_step("primary", 1, 1, 2.0), _step("primary", 2, 2, 4.0)])
    runs = data.subtasks[0].runs
    assert [(r.attempt, r.outcome, r.start_s, r.end_s) for r in runs] == [
        (1, "failed", 1.0, 2.0),
        (2, "succeeded", 2.0, 5.0),
    ]
    assert data.planning is not None and data.planning.end_s == 1.0
    assert data.synthesis is not None and (data.synthesis.start_s, data.synthesis.end_s) == (5.0, 6.0)
    assert data.subtasks[0].critical and data.critical_steps == 2 + 2


def test_loader_marks_the_losing_hedge_canceled() -> None:
    from swarmkeep.api.routes.timeline import _Clock

    history = [{"event": "hedged"}, {"event": "hedge_result", "winner": "hedge", "canceled": "primary"}]
    row = _subtask(lane="hedge", history=history, attempts=2)
    runs = subtask_runs(row, [_step("hedge", 1, 1, 3.0), _step("hedge", 1, 2, 4.0)], _Clock(T0), 6.0)
    by_lane = {r.lane: r for r in runs}
    assert by_lane["primary"].outcome == "canceled" and by_lane["primary"].estimated  # it stalled: no steps
    assert (by_lane["primary"].start_s, by_lane["primary"].end_s) == (1.0, 5.0)
    assert by_lane["hedge"].outcome == "succeeded" and by_lane["hedge"].start_s == 2.0  # a step before its first


def test_loader_of_a_running_job_ends_at_now() -> None:
    job = Job(id="job_x", task="t", status="running", metrics={}, started_at=T0, created_at=T0)
    row = _subtask(status="running", finished_at=None, lane=None)
    data = timeline_from_rows(job, [row], [_step("primary", 1, 1, 2.0)], now=T0 + timedelta(seconds=8))
    assert data.live and data.span_s == 8.0 and data.synthesis is None
    assert [(r.outcome, r.end_s) for r in data.subtasks[0].runs] == [("running", 8.0)]


async def test_timeline_of_a_real_job_over_http(swarm_factory) -> None:
    swarm = await swarm_factory()
    injected: list[str] = []

    def fail_after_first_step(subtask: str, step: int) -> None:
        # s2's first attempt records step 1, then its step 2 fails: the retry resumes as attempt 2.
        if subtask == "s2" and step == 1 and not injected:
            injected.append(subtask)
            script.faults.append(Fault("subagent", 500, subtask="s2", times=1))

    script = swarm.llm.reset(
        Script(plans=[diamond_plan()], steps_to_conclude=2, subagent_delay_s=0.2, on_subagent=fail_after_first_step)
    )
    job_id = await swarm.submit("Compare green and black tea </svg><script>alert(1)</script>")
    job = await swarm.wait(job_id)
    assert job["status"] == "succeeded" and job["metrics"]["retries"] == 1

    response = await swarm.api.get(f"/v1/jobs/{job_id}/timeline.svg")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/svg+xml")
    root = parse(response.text)
    runs = bars(root)
    s2 = [b for b in runs if "".join(b.itertext()).startswith("s2 ")]
    assert [(b.get("data-attempt"), b.get("data-outcome")) for b in s2] == [("1", "failed"), ("2", "succeeded")]
    assert len(runs) == 4 and len(bars(root, "orchestrator")) == 2  # s1, s2 twice, s3; plan and synthesis
    assert len([b for b in runs if "critical" in (b.get("class") or "")]) == 2  # one per stage
    assert "<script" not in response.text

    assert (await swarm.api.get("/v1/jobs/job_nope/timeline.svg")).status_code == 404
    other = await swarm.new_key("tenant-b")
    foreign = await swarm.api.get(f"/v1/jobs/{job_id}/timeline.svg", headers={"Authorization": f"Bearer {other.key}"})
    assert foreign.status_code == 404
    anonymous = await swarm.api.get(f"/v1/jobs/{job_id}/timeline.svg", headers={"Authorization": ""})
    assert anonymous.status_code == 401


def test_a_job_that_has_not_started_or_failed_planning_still_renders() -> None:
    queued = Job(id="job_q", task="t", status="queued", metrics={}, created_at=T0)
    data = timeline_from_rows(queued, [], [], now=T0 + timedelta(seconds=2))
    root = parse(render_timeline(data))
    assert data.planning is None and not bars(root) and not bars(root, "orchestrator")
    failed = Job(id="job_f", task="t", status="failed", metrics={}, created_at=T0, started_at=T0)
    failed.finished_at = T0 + timedelta(seconds=3)
    data = timeline_from_rows(failed, [], [])
    plan = bars(parse(render_timeline(data)), "orchestrator")
    assert [b.get("data-outcome") for b in plan] == ["failed"] and not data.live

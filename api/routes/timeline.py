"""/v1/jobs/{id}/timeline.svg: a job's run as a Gantt chart, built from its subtask and notebook rows."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from fastapi import APIRouter, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from swarmkeep.api.deps import CurrentKey, SessionDep
from swarmkeep.api.routes.jobs import NOT_FOUND, tenant_job
from swarmkeep.api.timeline import (
    CANCELED,
    FAILED,
    RUNNING,
    SUCCEEDED,
    Run,
    SubtaskLine,
    TimelineData,
    render_timeline,
)
from swarmkeep.store.models import Job, JobStatus, NotebookEntry, Subtask, SubtaskStatus, utcnow
from swarmkeep.workflows.metrics import critical_steps

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

SVG_MEDIA_TYPE = "image/svg+xml"
# The recovery ladder: a primary run and its hedge are rung 0; each later rung starts after the one before failed.
LADDER = {"primary": 0, "hedge": 0, "reassigned": 1, "regenerated": 2}
HISTORY_LANES = {"hedged": "hedge", "reassigned": "reassigned", "regenerated": "regenerated"}


class StepTime(NamedTuple):
    """When a sub-agent's step was recorded: the few notebook columns the chart needs."""

    subtask_id: str
    lane: str
    attempt: int
    step: int
    created_at: datetime


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # SQLite hands back naive ones


class _Clock:
    """Seconds from the job's start."""

    def __init__(self, origin: datetime):
        self.origin = _aware(origin)

    def __call__(self, moment: datetime) -> float:
        return (_aware(moment) - self.origin).total_seconds()


def _final_outcome(subtask: Subtask, lane: str, rank: int, top_rank: int) -> str:
    """The outcome of a lane's last attempt, given how the subtask ended."""
    if rank < top_rank:
        return FAILED  # a later rung of the ladder started only because this one failed
    if subtask.status == SubtaskStatus.SUCCEEDED:
        if lane == (subtask.lane or "primary"):
            return SUCCEEDED
        lost = any(h.get("event") == "hedge_result" and h.get("canceled") == lane for h in subtask.history or [])
        return CANCELED if lost else FAILED
    if subtask.status in (SubtaskStatus.RUNNING, SubtaskStatus.PENDING):
        return RUNNING
    return CANCELED if subtask.status == SubtaskStatus.CANCELED else FAILED


def _typical_step_s(steps: dict[tuple[str, int], list[float]], started: float | None) -> float:
    """How long one step of this subtask took: the median gap between recorded steps, else the first step."""
    gaps = [later - earlier for times in steps.values() for earlier, later in zip(times, times[1:], strict=False)]
    if gaps:
        return statistics.median(gaps)
    first_step = min((times[0] for times in steps.values()), default=None)
    return max(first_step - started, 0.0) if started is not None and first_step is not None else 0.0


def subtask_runs(subtask: Subtask, entries: Sequence[StepTime], clock: _Clock, now_s: float) -> list[Run]:
    """One run per (lane, attempt) with notebook steps, spanning its known start to its last step.

    A step's row is written when the step ends, so a run's start is inferred: a subtask's first run starts
    when the subtask did, a retry when its lane's previous attempt recorded its last step, and a backup run
    one typical step before its first. A lane that left no steps (stalled, or failed at once) still gets a bar,
    filling the gap the ladder's other lanes leave (marked estimated).
    """
    if subtask.started_at is None and not entries:
        return []
    started = clock(subtask.started_at) if subtask.started_at is not None else None
    finished = clock(subtask.finished_at) if subtask.finished_at is not None else None
    steps: dict[tuple[str, int], list[float]] = defaultdict(list)
    counts: dict[tuple[str, int], int] = defaultdict(int)
    for entry in entries:
        steps[(entry.lane, entry.attempt)].append(clock(entry.created_at))
        counts[(entry.lane, entry.attempt)] += 1
    for times in steps.values():
        times.sort()
    step_s = _typical_step_s(steps, started)
    lanes = {lane for lane, _ in steps}
    if started is not None:
        lanes.add("primary")  # a started subtask had a primary run, even one that left no steps
    lanes |= {HISTORY_LANES[h["event"]] for h in subtask.history or [] if h.get("event") in HISTORY_LANES}
    if subtask.lane:
        lanes.add(subtask.lane)
    top_rank = max(LADDER.get(lane, 3) for lane in lanes)
    end_of_subtask = finished if finished is not None and subtask.status != SubtaskStatus.RUNNING else now_s
    origin = started if started is not None else 0.0

    by_lane: dict[str, list[Run]] = {}
    for lane in lanes:
        attempts = sorted(attempt for name, attempt in steps if name == lane)
        final = _final_outcome(subtask, lane, LADDER.get(lane, 3), top_rank)
        runs: list[Run] = []
        for index, attempt in enumerate(attempts):
            times = steps[(lane, attempt)]
            if runs:
                start, estimated = runs[-1].end_s, False
            elif lane == "primary" and started is not None:
                start, estimated = started, False
            else:
                start, estimated = max(times[0] - step_s, origin), True
            outcome = final if index == len(attempts) - 1 else FAILED
            end = max(times[-1], end_of_subtask) if outcome in (SUCCEEDED, CANCELED, RUNNING) else times[-1]
            runs.append(Run(start, end, outcome, lane, attempt, counts[(lane, attempt)], estimated))
        if runs:
            by_lane[lane] = runs

    # Lanes that left no steps: the ladder's lanes run one after another, so each fills its share of the gap
    # between its neighbours; a backup run with no steps is drawn as its last typical step.
    ladder = sorted((lane for lane in lanes if lane != "hedge"), key=lambda name: (LADDER.get(name, 3), name))
    for index, lane in enumerate(ladder):
        if lane in by_lane:
            continue
        empty = index
        while empty < len(ladder) and ladder[empty] not in by_lane:
            empty += 1
        low = by_lane[ladder[index - 1]][-1].end_s if index > 0 else origin
        high = by_lane[ladder[empty]][0].start_s if empty < len(ladder) else end_of_subtask
        share = max(high - low, 0.0) / (empty - index)
        for offset, name in enumerate(ladder[index:empty]):
            outcome = _final_outcome(subtask, name, LADDER.get(name, 3), top_rank)
            begin = low + offset * share
            by_lane[name] = [Run(begin, begin + share, outcome, name, 1, 0, estimated=True)]
    if "hedge" in lanes and "hedge" not in by_lane:
        outcome = _final_outcome(subtask, "hedge", 0, top_rank)
        later = [runs[0].start_s for name, runs in by_lane.items() if LADDER.get(name, 3) > 0]
        end = min(later) if outcome == FAILED and later else end_of_subtask
        by_lane["hedge"] = [Run(max(end - step_s, origin), end, outcome, "hedge", 1, 0, estimated=True)]
    return sorted((run for runs in by_lane.values() for run in runs), key=lambda run: (run.start_s, run.lane))


def _mark_critical(lines: list[SubtaskLine]) -> list[SubtaskLine]:
    """Per stage, the sub-agent with the most steps (the one that sets critical steps), as the metrics count it."""
    by_stage: dict[int, list[SubtaskLine]] = defaultdict(list)
    for line in lines:
        by_stage[line.stage].append(line)
    critical: set[str] = set()
    for members in by_stage.values():
        counted = [m for m in members if m.status == SubtaskStatus.SUCCEEDED] or [m for m in members if m.steps]
        if counted:
            best = max(counted, key=lambda m: (m.steps, max((r.end_s for r in m.runs), default=0.0)))
            critical.add(best.subtask_id)
    return [
        SubtaskLine(
            subtask_id=line.subtask_id,
            role=line.role,
            stage=line.stage,
            status=line.status,
            runs=line.runs,
            steps=line.steps,
            attempts=line.attempts,
            critical=line.subtask_id in critical,
        )
        for line in lines
    ]


def timeline_from_rows(
    job: Job, subtasks: Sequence[Subtask], entries: Sequence[StepTime], now: datetime | None = None
) -> TimelineData:
    """The chart's data from a job's rows, already read: no database access here."""
    now = _aware(now or utcnow())
    clock = _Clock(job.started_at or job.created_at)
    finished = job.status in JobStatus.TERMINAL
    end = job.finished_at if finished and job.finished_at is not None else now
    span = max(clock(end), 0.001)
    by_subtask: dict[str, list[StepTime]] = defaultdict(list)
    for entry in entries:
        by_subtask[entry.subtask_id].append(entry)
    lines = _mark_critical(
        [
            SubtaskLine(
                subtask_id=row.subtask_id,
                role=row.role,
                stage=row.stage,
                status=row.status,
                runs=subtask_runs(row, by_subtask.get(row.subtask_id, []), clock, span),
                steps=row.steps,
                attempts=row.attempts,
            )
            for row in sorted(subtasks, key=lambda r: (r.stage, r.position))
        ]
    )
    starts = [r.start_s for line in lines for r in line.runs]
    ends = [r.end_s for line in lines for r in line.runs]
    planning: Run | None = None
    if job.status != JobStatus.QUEUED:
        if starts:
            planning = Run(0.0, min(starts), SUCCEEDED)
        else:
            outcome = RUNNING if job.status == JobStatus.PLANNING else FAILED if finished else SUCCEEDED
            planning = Run(0.0, span, outcome)
    synthesis: Run | None = None
    if job.status in (JobStatus.SYNTHESIZING, JobStatus.SUCCEEDED) and lines:
        synthesis = Run(max(ends, default=0.0), span, RUNNING if job.status == JobStatus.SYNTHESIZING else SUCCEEDED)
    metrics = job.metrics or {}
    stages: dict[int, list[str]] = defaultdict(list)
    for line in lines:
        stages[line.stage].append(line.subtask_id)
    steps_by = {line.subtask_id: line.steps for line in lines if line.status == SubtaskStatus.SUCCEEDED or not finished}
    orchestrator = (planning is not None) + (synthesis is not None)
    critical, _ = critical_steps([stages[s] for s in sorted(stages)], steps_by, orchestrator)
    steps = int(metrics.get("steps", orchestrator + sum(line.steps for line in lines)))
    critical = int(metrics.get("critical_steps", critical))
    return TimelineData(
        job_id=job.id,
        task=job.task,
        status=job.status,
        span_s=span,
        subtasks=lines,
        planning=planning,
        synthesis=synthesis,
        wall_time_s=float(metrics.get("wall_time_s", span)),
        critical_steps=critical,
        parallelism=float(metrics.get("parallelism", round(steps / critical, 3) if critical else 0.0)),
        steps=steps,
        live=not finished,
    )


async def load_timeline(session: AsyncSession, job: Job) -> TimelineData:
    """Read a job's subtasks and notebook step times, and build the chart's data."""
    subtasks = (await session.scalars(select(Subtask).where(Subtask.job_id == job.id))).all()
    # Only the columns the chart needs: notebooks carry whole transcripts.
    rows = await session.execute(
        select(
            NotebookEntry.subtask_id,
            NotebookEntry.lane,
            NotebookEntry.attempt,
            NotebookEntry.step,
            NotebookEntry.created_at,
        ).where(NotebookEntry.job_id == job.id)
    )
    return timeline_from_rows(job, subtasks, [StepTime(*row) for row in rows.all()])


@router.get(
    "/{job_id}/timeline.svg",
    response_class=Response,
    responses={**NOT_FOUND, 200: {"content": {SVG_MEDIA_TYPE: {}}, "description": "The run as an SVG Gantt chart."}},
)
async def job_timeline(job_id: str, session: SessionDep, key: CurrentKey) -> Response:
    """The run as a Gantt chart: a bar per sub-agent run, by stage, coloured by outcome, critical path marked."""
    job = await tenant_job(session, key, job_id)
    svg = render_timeline(await load_timeline(session, job))
    return Response(svg, media_type=SVG_MEDIA_TYPE, headers={"Cache-Control": "no-store"})

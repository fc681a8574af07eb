"""A job's run as a Gantt chart in plain SVG: one bar per run of a sub-agent, grouped by stage. Pure rendering."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

# What a bar's colour says; a run still going is drawn to the axis's end ("now").
SUCCEEDED, FAILED, CANCELED, RUNNING = "succeeded", "failed", "canceled", "running"
COLOURS = {SUCCEEDED: "#2f9e5a", FAILED: "#d64545", CANCELED: "#9aa0a6", RUNNING: "#f0a202"}
ORCHESTRATOR_COLOUR = "#4c6ed4"
CRITICAL_COLOUR = "#1b1f24"
STATUS_COLOURS = {**COLOURS, "queued": "#9aa0a6", "planning": COLOURS[RUNNING], "synthesizing": COLOURS[RUNNING]}
PRIMARY = "primary"
LANE_TAGS = {"hedge": "hedge", "reassigned": "reassigned", "regenerated": "rewritten"}

MAX_ROWS = 300  # a plan has at most 300 subtasks; anything past this is summarised, not drawn
WIDTH = 1200
PAD = 16
LABEL_W = 230
CHART_X0 = PAD + LABEL_W
CHART_X1 = WIDTH - PAD - 28  # room for the last tick's label
FONT = "font-family='-apple-system, Segoe UI, Helvetica, Arial, sans-serif'"

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Run:
    """One bar: an attempt of one run (lane) of a subtask, or an orchestrator call; seconds from the job's start."""

    start_s: float
    end_s: float
    outcome: str
    lane: str = PRIMARY
    attempt: int = 1
    steps: int = 0
    estimated: bool = False  # its start or end is inferred, not recorded


@dataclass(frozen=True)
class SubtaskLine:
    """One row: a subtask with all its runs; `critical` marks the sub-agent that sets its stage's critical steps."""

    subtask_id: str
    role: str
    stage: int  # 0-based, as stored
    status: str
    runs: list[Run] = field(default_factory=list)
    steps: int = 0
    attempts: int = 0
    critical: bool = False


@dataclass(frozen=True)
class TimelineData:
    """Everything the chart shows; times are seconds from the job's start, `span_s` is the axis's length."""

    job_id: str
    task: str
    status: str
    span_s: float
    subtasks: list[SubtaskLine] = field(default_factory=list)
    planning: Run | None = None
    synthesis: Run | None = None
    wall_time_s: float | None = None
    critical_steps: int | None = None
    parallelism: float | None = None
    steps: int | None = None
    live: bool = False  # the job has not finished: the axis ends at "now"


def clean(text: str, limit: int | None = None) -> str:
    """User text made safe for SVG: characters XML forbids removed, shortened, then escaped."""
    text = _NOT_XML.sub("", text).replace("\n", " ")
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return escape(text)


def attr(text: str) -> str:
    """A quoted, escaped attribute value."""
    return quoteattr(_NOT_XML.sub("", text))


def nice_step(span_s: float, max_ticks: int = 10) -> float:
    """A round tick interval (1, 2 or 5 times a power of ten; minutes and hours past a minute)."""
    if span_s > 60:
        for candidate in (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400):
            if span_s / candidate <= max_ticks:
                return float(candidate)
    power = 10 ** math.floor(math.log10(max(span_s / max_ticks, 1e-3)))
    for factor in (1, 2, 5, 10):
        if span_s / (factor * power) <= max_ticks:
            return float(factor * power)
    return float(10 * power)


def seconds_label(seconds: float) -> str:
    """12s, 0.5s, 2:05, 1:02:05."""
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}:{secs:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _tracks(runs: list[Run]) -> list[int]:
    """Greedy interval packing: runs that overlap in time (a primary and its hedge) get separate tracks."""
    ends: list[float] = []
    tracks = []
    for run in runs:
        for index, end in enumerate(ends):
            if run.start_s >= end - 1e-9:
                ends[index] = run.end_s
                tracks.append(index)
                break
        else:
            ends.append(run.end_s)
            tracks.append(len(ends) - 1)
    return tracks


class _Layout:
    """Row sizes that keep 3 rows readable and 300 rows on one scrollable page."""

    def __init__(self, rows: int):
        if rows <= 40:
            self.row_h, self.band_h, self.font, self.inset = 24, 20, 12, 4
        elif rows <= 120:
            self.row_h, self.band_h, self.font, self.inset = 14, 16, 10, 2
        else:
            self.row_h, self.band_h, self.font, self.inset = 7, 15, 0, 1  # too small for per-row labels


def _x(seconds: float, span_s: float) -> float:
    return CHART_X0 + (CHART_X1 - CHART_X0) * min(max(seconds / span_s, 0.0), 1.0)


def _defs() -> str:
    patterns = []
    for outcome, colour in COLOURS.items():
        patterns.append(
            f"<pattern id='hatch-{outcome}' patternUnits='userSpaceOnUse' width='6' height='6' "
            f"patternTransform='rotate(45)'><rect width='6' height='6' fill='{colour}'/>"
            "<rect width='2.4' height='6' fill='#ffffff' fill-opacity='0.75'/></pattern>"
        )
    return "<defs>" + "".join(patterns) + "</defs>"


def _run_title(line: SubtaskLine, run: Run) -> str:
    lane = "" if run.lane == PRIMARY else f" ({run.lane} run)"
    estimate = ", times partly estimated" if run.estimated else ""
    return (
        f"{line.subtask_id} · {line.role}{lane}: attempt {run.attempt}, {run.outcome}, {run.steps} steps, "
        f"{seconds_label(run.start_s)} → {seconds_label(run.end_s)}{estimate}"
    )


class _Canvas:
    """Accumulates SVG elements; every piece of user text goes through `clean` or `attr`."""

    def __init__(self, data: TimelineData):
        self.data = data
        self.span = max(data.span_s, 1e-3)
        self.parts: list[str] = []

    def add(self, element: str) -> None:
        self.parts.append(element)

    def text(self, x: float, y: float, content: str, size: int = 12, **style: str | float) -> None:
        extra = "".join(f" {key.replace('_', '-')}={attr(str(value))}" for key, value in style.items())
        self.add(f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}'{extra}>{content}</text>")

    def bar(
        self, run: Run, y: float, height: float, title: str, *, critical: bool, kind: str = "run", colour: str = ""
    ) -> None:
        """One run: coloured by outcome, hatched when it is a backup run, outlined heavily when critical."""
        x0 = _x(run.start_s, self.span)
        width = max(_x(run.end_s, self.span) - x0, 2.0)
        if colour:
            fill = colour
        elif run.lane != PRIMARY:
            fill = f"url(#hatch-{run.outcome if run.outcome in COLOURS else CANCELED})"
        else:
            fill = COLOURS.get(run.outcome, COLOURS[CANCELED])
        stroke = ""
        if critical:
            stroke = f" stroke='{CRITICAL_COLOUR}' stroke-width='2.5'"
        elif run.lane != PRIMARY:
            stroke = f" stroke='{COLOURS.get(run.outcome, COLOURS[CANCELED])}' stroke-width='1.2'"
        dash = " stroke-dasharray='4 2'" if run.outcome == RUNNING and not critical else ""
        classes = kind + (" critical" if critical else "")
        self.add(
            f"<rect class='{classes}' data-outcome={attr(run.outcome)} data-lane={attr(run.lane)} "
            f"data-attempt='{run.attempt}' x='{x0:.1f}' y='{y:.1f}' width='{width:.1f}' height='{height:.1f}' "
            f"rx='2' fill={attr(fill)}{stroke}{dash}><title>{clean(title)}</title></rect>"
        )
        if critical:  # a marker past the bar's end, visible even in the most compact rows
            x1, middle, size = x0 + width + 4, y + height / 2, min(max(height / 2, 3.0), 6.0)
            self.add(
                f"<path class='critical-marker' d='M{x1:.1f},{middle:.1f} l{size:.1f},{-size:.1f} "
                f"l{size:.1f},{size:.1f} l{-size:.1f},{size:.1f} z' fill='{CRITICAL_COLOUR}'/>"
            )

    def bar_label(self, run: Run, y: float, height: float, labels: list[str], font: int) -> None:
        """The longest of `labels` that fits inside the bar, if any does."""
        x0 = _x(run.start_s, self.span)
        width = _x(run.end_s, self.span) - x0
        if not font or height < 12:
            return
        for label in labels:
            if width >= 6.5 * len(label) * font / 12 + 8:
                colour = "#ffffff"
                if run.lane != PRIMARY:  # dark text on a light patch, readable over the hatching
                    colour, patch_w = "#1b1f24", 6.2 * len(label) * font / 12 + 6
                    self.add(
                        f"<rect x='{x0 + 1:.1f}' y='{y + height / 2 - font / 2 - 1:.1f}' width='{patch_w:.1f}' "
                        f"height='{font + 2}' rx='2' fill='#ffffff' fill-opacity='0.85'/>"
                    )
                self.text(x0 + 4, y + height / 2 + font * 0.35, clean(label), size=font - 1, fill=colour)
                return


def _header(canvas: _Canvas, data: TimelineData) -> float:
    status_colour = STATUS_COLOURS.get(data.status, "#5f6368")
    canvas.text(PAD, 30, f"Job {clean(data.job_id, 80)}", size=20, font_weight="bold", fill="#1b1f24")
    badge_x = PAD + 13.5 * (min(len(data.job_id), 80) + 4) + 8
    canvas.add(
        f"<rect x='{badge_x:.1f}' y='13' width='{9 * len(data.status) + 16}' height='23' rx='11' "
        f"fill={attr(status_colour)}/>"
    )
    canvas.text(badge_x + 8, 29, clean(data.status), size=13, font_weight="bold", fill="#ffffff")
    canvas.text(PAD, 52, clean(data.task, 150), size=12, fill="#5f6368")
    stages = len({line.stage for line in data.subtasks})
    retries = sum(max(line.attempts - len({r.lane for r in line.runs}), 0) for line in data.subtasks)
    backups = sum(1 for line in data.subtasks for run in line.runs if run.lane != PRIMARY and run.attempt == 1)
    facts = [
        ("wall time", seconds_label(data.wall_time_s) if data.wall_time_s is not None else "—"),
        ("critical steps", str(data.critical_steps) if data.critical_steps is not None else "—"),
        ("parallelism", f"{data.parallelism:g}" if data.parallelism is not None else "—"),
        ("total steps", str(data.steps) if data.steps is not None else "—"),
        ("subtasks", f"{len(data.subtasks)} in {stages} stage{'s' * (stages != 1)}"),
        ("retries", str(retries)),
        ("backup runs", str(backups)),
    ]
    x = float(PAD)
    for name, value in facts:
        canvas.text(x, 78, clean(value), size=15, font_weight="bold", fill="#1b1f24")
        canvas.text(x, 93, clean(name), size=10, fill="#5f6368")
        x += max(len(value) * 9 + 24, len(name) * 6 + 24)
    return 104.0


def _legend(canvas: _Canvas, y: float) -> float:
    x = float(PAD)
    items: list[tuple[str, str, str]] = [
        (f"fill='{COLOURS[SUCCEEDED]}'", "", "succeeded"),
        (f"fill='{COLOURS[FAILED]}'", "", "failed attempt"),
        (f"fill='{COLOURS[CANCELED]}'", "", "canceled (e.g. the losing hedge)"),
        (f"fill='{COLOURS[RUNNING]}'", "", "running"),
        (
            "fill='url(#hatch-succeeded)'",
            f" stroke='{COLOURS[SUCCEEDED]}'",
            "backup run (hedge, reassigned, rewritten)",
        ),
        (f"fill='{ORCHESTRATOR_COLOUR}'", "", "orchestrator"),
    ]
    for fill, stroke, name in items:
        canvas.add(f"<rect x='{x:.1f}' y='{y:.1f}' width='22' height='12' rx='2' {fill}{stroke}/>")
        canvas.text(x + 28, y + 10, clean(name), size=11, fill="#3c4043")
        x += 28 + 6.3 * len(name) + 18
    y += 20
    canvas.add(
        f"<rect x='{PAD}' y='{y:.1f}' width='22' height='12' rx='2' fill='{COLOURS[SUCCEEDED]}' "
        f"stroke='{CRITICAL_COLOUR}' stroke-width='2.5'/>"
    )
    canvas.text(PAD + 28, y + 10, "◆", size=12, fill=CRITICAL_COLOUR)
    canvas.text(
        PAD + 42,
        y + 10,
        "critical path: in each stage, the sub-agent with the most steps (it sets the job's critical steps). "
        "Hover a bar for its details.",
        size=11,
        fill="#3c4043",
    )
    return y + 22


def _axis(canvas: _Canvas, top: float, bottom: float, live: bool) -> None:
    step = nice_step(canvas.span)
    for index in range(int(canvas.span / step + 1e-9) + 1):
        tick = index * step
        x = _x(tick, canvas.span)
        canvas.add(f"<line x1='{x:.1f}' y1='{top:.1f}' x2='{x:.1f}' y2='{bottom:.1f}' stroke='#e3e6ea'/>")
        canvas.text(x, top - 5, clean(seconds_label(tick)), size=10, fill="#5f6368", text_anchor="middle")
        if bottom - top > 600:
            canvas.text(x, bottom + 12, clean(seconds_label(tick)), size=10, fill="#5f6368", text_anchor="middle")
    if live:
        x = _x(canvas.span, canvas.span)
        canvas.add(
            f"<line x1='{x:.1f}' y1='{top:.1f}' x2='{x:.1f}' y2='{bottom:.1f}' stroke='{COLOURS[RUNNING]}' "
            "stroke-width='1.5' stroke-dasharray='5 3'/>"
        )
        canvas.text(x, top - 16, "now", size=10, fill="#b07700", text_anchor="middle")


def _orchestrator_row(canvas: _Canvas, run: Run | None, name: str, y: float, layout: _Layout) -> None:
    """Planning or synthesis: an orchestrator bar in its own row above or below the stages."""
    row_h = max(layout.row_h, 20)
    canvas.text(
        PAD + 4,
        y + row_h / 2 + 4,
        clean(f"orchestrator · {name}"),
        size=max(layout.font, 10),
        fill=ORCHESTRATOR_COLOUR,
        font_weight="bold",
    )
    if run is None:
        return
    colour = ORCHESTRATOR_COLOUR if run.outcome == SUCCEEDED else COLOURS.get(run.outcome, ORCHESTRATOR_COLOUR)
    inset = max(layout.inset, 3)
    title = f"orchestrator: {name}, {run.outcome}, {seconds_label(run.start_s)} → {seconds_label(run.end_s)}"
    canvas.bar(run, y + inset, row_h - 2 * inset, title, critical=False, kind="orchestrator", colour=colour)


def _row_label(line: SubtaskLine, layout: _Layout, canvas: _Canvas, y: float) -> None:
    if not layout.font:
        return
    baseline = y + layout.row_h / 2 + layout.font * 0.35
    if line.critical:
        canvas.text(PAD + 2, baseline, "◆", size=layout.font, fill=CRITICAL_COLOUR)
    canvas.text(
        PAD + 18,
        baseline,
        clean(line.subtask_id, 18),
        size=layout.font,
        fill="#1b1f24",
        font_weight="bold" if line.critical else "normal",
    )
    canvas.text(
        PAD + 18 + 8 * min(len(line.subtask_id), 18) + 8,
        baseline,
        clean(line.role, 14),
        size=layout.font - 1,
        fill="#5f6368",
    )
    notes = []
    retries = line.attempts - len({r.lane for r in line.runs})
    if retries > 0:
        notes.append(f"↻{retries}")
    if line.status not in (SUCCEEDED, RUNNING) and line.status in COLOURS:
        notes.append(line.status)
    if notes:
        canvas.text(
            CHART_X0 - 8,
            baseline,
            clean(" ".join(notes)),
            size=layout.font - 1,
            text_anchor="end",
            fill=COLOURS[FAILED] if line.status == FAILED else "#5f6368",
        )


def _subtask_row(canvas: _Canvas, line: SubtaskLine, y: float, layout: _Layout) -> None:
    """Draw one subtask's label and runs: overlapping runs (a primary and its hedge) on separate tracks."""
    _row_label(line, layout, canvas, y)
    if not line.runs:
        if layout.font:
            canvas.text(
                CHART_X0 + 4,
                y + layout.row_h / 2 + layout.font * 0.35,
                clean(line.status),
                size=layout.font - 1,
                fill="#9aa0a6",
                font_style="italic",
            )
        return
    runs = sorted(line.runs, key=lambda r: (r.start_s, r.end_s))
    tracks = _tracks(runs)
    count = max(tracks) + 1
    inset = layout.inset if count == 1 else min(layout.inset, 2)
    track_h = (layout.row_h - 2 * inset) / count
    winner = _critical_run(runs) if line.critical else None
    retried = {lane: sum(1 for r in runs if r.lane == lane) > 1 for lane in {r.lane for r in runs}}
    for run, track in zip(runs, tracks, strict=True):
        top = y + inset + track * track_h
        gap = 1.0 if count > 1 else 0.0
        is_critical = run is winner
        canvas.bar(run, top, track_h - gap, _run_title(line, run), critical=is_critical)
        steps = f"{run.steps} step{'s' * (run.steps != 1)}" if run.steps else "no steps"
        attempt = f"#{run.attempt} " if retried.get(run.lane) or run.attempt > 1 else ""
        tag = LANE_TAGS.get(run.lane, "")
        labels = [f"{tag} {attempt}{steps}", f"{attempt}{steps}", steps, str(run.steps)]
        canvas.bar_label(run, top, track_h - gap, [label.strip() for label in labels], layout.font)


def _critical_run(runs: list[Run]) -> Run:
    """The run whose steps count: the one that succeeded, else the longest."""
    done = [r for r in runs if r.outcome == SUCCEEDED] or [r for r in runs if r.outcome == RUNNING] or runs
    return max(done, key=lambda r: (r.steps, r.end_s))


def render_timeline(data: TimelineData) -> str:
    """The job's run as a self-contained SVG document (no scripts; tooltips are SVG <title>s)."""
    canvas = _Canvas(data)
    lines = sorted(data.subtasks, key=lambda line: line.stage)
    hidden = max(len(lines) - MAX_ROWS, 0)
    lines = lines[:MAX_ROWS]
    layout = _Layout(len(lines))
    y = _header(canvas, data)
    y = _legend(canvas, y + 4)
    axis_top = y + 22
    stages: dict[int, list[SubtaskLine]] = {}
    for line in lines:
        stages.setdefault(line.stage, []).append(line)
    orchestrator_h = max(layout.row_h, 20)
    body = orchestrator_h * 2 + sum(layout.band_h + len(rows) * layout.row_h for rows in stages.values())
    bottom = axis_top + 4 + body + (16 if hidden else 0)
    height = bottom + (30 if body > 600 else 16)
    _axis(canvas, axis_top, bottom, data.live)

    y = axis_top + 4
    _orchestrator_row(canvas, data.planning, "plan", y, layout)
    y += orchestrator_h
    for index, (stage, rows) in enumerate(sorted(stages.items())):
        band = layout.band_h + len(rows) * layout.row_h
        shade = "#f3f5f9" if index % 2 == 0 else "#fafbfc"
        canvas.add(f"<rect x='{PAD}' y='{y:.1f}' width='{WIDTH - 2 * PAD}' height='{band:.1f}' fill='{shade}'/>")
        canvas.add(f"<rect x='{PAD}' y='{y:.1f}' width='3' height='{band:.1f}' fill='#8a94a6'/>")
        critical = [line for line in rows if line.critical]
        summary = f"Stage {stage + 1} · {len(rows)} subtask{'s' * (len(rows) != 1)}"
        if critical:
            summary += f" · critical: {critical[0].subtask_id} ({critical[0].steps} steps)"
        canvas.text(PAD + 8, y + layout.band_h - 4, clean(summary, 80), size=11, font_weight="bold", fill="#3c4043")
        y += layout.band_h
        for line in rows:
            _subtask_row(canvas, line, y, layout)
            y += layout.row_h
    _orchestrator_row(canvas, data.synthesis, "synthesis", y, layout)
    y += orchestrator_h
    if hidden:
        canvas.text(CHART_X0, y + 12, clean(f"… {hidden} more subtasks not drawn"), size=11, fill="#5f6368")
    title = f"Timeline of job {data.job_id}: {data.status}"
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height:.0f}' "
        f"viewBox='0 0 {WIDTH} {height:.0f}' {FONT} role='img'>"
        f"<title>{clean(title)}</title>{_defs()}"
        f"<rect width='{WIDTH}' height='{height:.0f}' fill='#ffffff'/>" + "".join(canvas.parts) + "</svg>\n"
    )

"""Rich views of jobs: live progress bars per sub-agent, and the final summary."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from swarmkeep.cli.api_client import ApiClient

TERMINAL = ("succeeded", "failed", "canceled")
STATUS_STYLE = {
    "pending": "dim",
    "running": "yellow",
    "succeeded": "green",
    "failed": "red",
    "canceled": "magenta",
}


def watch_job(api: ApiClient, job_id: str, console: Console, max_steps: int, poll_s: float = 1.0) -> dict[str, Any]:
    """Poll a job until it ends, showing one progress bar per sub-agent; return its final view."""
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=30),
        TextColumn("{task.completed:.0f}/{task.total:.0f} steps"),
        TextColumn("{task.fields[state]}"),
        console=console,
    )
    ids: dict[str, TaskID] = {}
    header = Table.grid()
    job = api.get_job(job_id)
    with Live(Group(header, bars), console=console, refresh_per_second=4) as live:
        while True:
            progress = job["progress"]
            line = (
                f"[bold]{job['id']}[/] {job['status']} · {progress['done']}/{progress['subtasks_total']} done"
                f" · {progress['running']} running"
                + (f" ({waiting} waiting for the model)" if (waiting := progress.get("waiting_for_model")) else "")
                + f" · {progress['failed']} failed · {progress['retries']} retries"
                f" · {job['metrics'].get('wall_time_s', 0):.0f}s"
            )
            header = Table.grid()
            header.add_row(line)
            for sub in job["subtasks"]:
                state = f"[{STATUS_STYLE.get(sub['status'], '')}]{sub['status']}[/]"
                if sub["id"] not in ids:
                    ids[sub["id"]] = bars.add_task(
                        f"[cyan]{sub['role']:<10}[/] {sub['id']:<8}", total=max_steps, state=state
                    )
                done = sub["status"] in TERMINAL
                bars.update(
                    ids[sub["id"]],
                    completed=max_steps if done and sub["status"] == "succeeded" else min(sub["steps"], max_steps),
                    state=state,
                )
            live.update(Group(header, bars))
            if job["status"] in TERMINAL:
                return job
            time.sleep(poll_s)
            job = api.get_job(job_id)


def metrics_table(metrics: dict[str, Any]) -> Table:
    table = Table(title="Metrics", show_header=False, box=None)
    names = [
        ("critical_steps", "critical steps"),
        ("steps", "total steps"),
        ("parallelism", "parallelism (total / critical)"),
        ("stage_critical_steps", "critical steps per stage"),
        ("completion_rate", "completion rate"),
        ("retries", "retries"),
        ("reassignments", "reassignments"),
        ("regenerations", "regenerations"),
        ("hedges", "hedges (won)"),
        ("tokens", "tokens"),
        ("cost_usd", "cost (USD)"),
        ("wall_time_s", "wall time (s)"),
        ("speedup", "speedup over one after another"),
        ("orchestrator_context_chars", "orchestrator context (chars)"),
    ]
    for key, label in names:
        if key in metrics:
            value = metrics[key]
            if key == "hedges":
                value = f"{value} ({metrics.get('hedges_won', 0)})"
            table.add_row(label, str(value))
    return table


def print_job(job: dict[str, Any], console: Console) -> None:
    """The final summary: synthesis, conclusions, metrics, and where to see it in Temporal."""
    colour = STATUS_STYLE.get(job["status"], "")
    console.print(f"Job [bold]{job['id']}[/]: [{colour}]{job['status']}[/]")
    if job.get("partial"):
        console.print(Panel(f"partial result: {job.get('partial_reason')}", border_style="yellow"))
    if job.get("error"):
        console.print(Panel(job["error"], title="error", border_style="red"))
    subtasks = Table(title="Sub-agents", show_lines=True)
    for column in ("id", "role", "stage", "status", "steps", "conclusion"):
        subtasks.add_column(column, overflow="fold")
    for sub in job["subtasks"]:
        text = sub.get("conclusion") or sub.get("error") or ""
        subtasks.add_row(
            sub["id"], sub["role"], str(sub["stage"]), sub["status"], str(sub["steps"]),
            text[:300] + ("…" if len(text) > 300 else ""),
        )  # fmt: skip
    if job["subtasks"]:
        console.print(subtasks)
    if job.get("result") and job["result"].get("synthesis"):
        console.print(Panel(Markdown(job["result"]["synthesis"]), title="Synthesis", border_style="green"))
    console.print(metrics_table(job.get("metrics", {})))
    if job["links"].get("temporal_ui"):
        console.print(f"Temporal UI: {job['links']['temporal_ui']}")

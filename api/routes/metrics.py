"""Prometheus metrics at /metrics, read from the job store at scrape time (aggregates only, no job data)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from swarmkeep.api.deps import SessionDep
from swarmkeep.store.models import Job, JobStatus, Subtask

router = APIRouter(tags=["metrics"])

DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
SUMMED = {
    "retries": "Sub-agent attempts retried",
    "reassignments": "Subtasks handed to another role or model",
    "regenerations": "Subtasks rewritten by the orchestrator",
    "hedges": "Backup runs started for stragglers",
    "tokens": "LLM tokens used",
    "cost_usd": "LLM cost in USD",
    "steps": "Steps taken (orchestrator and sub-agents)",
    "critical_steps": "Critical steps",
}


class _Snapshot(Collector):
    """A one-scrape collector over figures already read from the database."""

    def __init__(self, families: list[Any]):
        self.families = families

    def collect(self) -> Iterator[Any]:
        yield from self.families


def _histogram(durations: list[float]) -> HistogramMetricFamily:
    buckets, total = [], 0.0
    for bound in DURATION_BUCKETS:
        buckets.append((str(bound), sum(1 for d in durations if d <= bound)))
    buckets.append(("+Inf", len(durations)))
    total = sum(durations)
    family = HistogramMetricFamily(
        "swarmkeep_subagent_duration_seconds", "Wall time of finished sub-agents, all runs of a subtask together"
    )
    family.add_metric([], buckets, total)
    return family


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(session: SessionDep) -> Response:
    """Jobs by status, sub-agent durations, and totals of retries, recoveries, hedges, tokens and cost."""
    by_status = dict((await session.execute(select(Job.status, func.count()).group_by(Job.status))).all())
    jobs = GaugeMetricFamily("swarmkeep_jobs", "Jobs by status", labels=["status"])
    for status in JobStatus.ALL:
        jobs.add_metric([status], by_status.get(status, 0))
    finished = await session.execute(
        select(Subtask.started_at, Subtask.finished_at).where(
            Subtask.started_at.is_not(None), Subtask.finished_at.is_not(None)
        )
    )
    durations = [(end - start).total_seconds() for start, end in finished.all()]
    families: list[Any] = [jobs, _histogram(durations)]
    totals = dict.fromkeys(SUMMED, 0.0)
    partial = 0
    for metrics_json, is_partial in (await session.execute(select(Job.metrics, Job.partial))).all():
        partial += bool(is_partial)
        for name in SUMMED:
            value = (metrics_json or {}).get(name)
            if isinstance(value, int | float):
                totals[name] += value
    for name, help_text in SUMMED.items():
        counter = CounterMetricFamily(f"swarmkeep_{name}", help_text)
        counter.add_metric([], totals[name])
        families.append(counter)
    partial_jobs = CounterMetricFamily("swarmkeep_partial_jobs", "Jobs a budget stopped early")
    partial_jobs.add_metric([], partial)
    families.append(partial_jobs)
    registry = CollectorRegistry()
    registry.register(_Snapshot(families))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

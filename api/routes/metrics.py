"""Prometheus metrics at /metrics, aggregated by the job store's SQL at scrape time (no job data, no row per job
or subtask), behind a bearer token when the operator sets one."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from swarmkeep.api.deps import SessionDep, SettingsDep
from swarmkeep.api.schemas import Problem
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


def _seconds(dialect: str, start: Any, end: Any) -> ColumnElement[Any]:
    """A subtask's wall time in seconds, in the database's own SQL."""
    if dialect == "sqlite":
        # julianday() is a float of days: round to the millisecond so that 3 s is 3.0, not 2.9999999.
        return func.round((func.julianday(end) - func.julianday(start)) * 86_400.0, 3)
    return func.extract("epoch", end - start)


async def _duration_histogram(session: AsyncSession) -> HistogramMetricFamily:
    """Sub-agent wall times counted into buckets by the database: one row back, however many subtasks."""
    seconds = _seconds(session.get_bind().dialect.name, Subtask.started_at, Subtask.finished_at)
    columns = [func.coalesce(func.sum(case((seconds <= bound, 1), else_=0)), 0) for bound in DURATION_BUCKETS]
    row = (
        await session.execute(
            select(*columns, func.count(), func.coalesce(func.sum(seconds), 0.0)).where(
                Subtask.started_at.is_not(None), Subtask.finished_at.is_not(None)
            )
        )
    ).one()
    buckets = [(str(bound), int(row[i])) for i, bound in enumerate(DURATION_BUCKETS)]
    buckets.append(("+Inf", int(row[len(DURATION_BUCKETS)])))
    family = HistogramMetricFamily(
        "swarmkeep_subagent_duration_seconds", "Wall time of finished sub-agents, all runs of a subtask together"
    )
    family.add_metric([], buckets, float(row[-1]))
    return family


def require_metrics_token(
    settings: SettingsDep, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> None:
    """When SWARMKEEP_METRICS_TOKEN is set, /metrics wants it as a bearer token."""
    expected = settings.metrics_token.get_secret_value()
    if not expected:
        return
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(presented.strip().encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "/metrics needs `Authorization: Bearer <token>` with the operator's SWARMKEEP_METRICS_TOKEN.",
            headers={"WWW-Authenticate": "Bearer"},
        )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}},
        401: {"model": Problem, "description": "SWARMKEEP_METRICS_TOKEN is set and was not presented."},
    },
    dependencies=[Depends(require_metrics_token)],
)
async def metrics(session: SessionDep) -> Response:
    """Jobs by status, sub-agent durations, and totals of retries, recoveries, hedges, tokens and cost."""
    by_status = dict((await session.execute(select(Job.status, func.count()).group_by(Job.status))).all())
    jobs = GaugeMetricFamily("swarmkeep_jobs", "Jobs by status", labels=["status"])
    for status_ in JobStatus.ALL:
        jobs.add_metric([status_], by_status.get(status_, 0))
    families: list[Any] = [jobs, await _duration_histogram(session)]
    sums = [func.coalesce(func.sum(Job.metrics[name].as_float()), 0.0) for name in SUMMED]
    partial = func.coalesce(func.sum(case((Job.partial.is_(True), 1), else_=0)), 0)
    totals = (await session.execute(select(*sums, partial))).one()
    for (name, help_text), total in zip(SUMMED.items(), totals, strict=False):
        counter = CounterMetricFamily(f"swarmkeep_{name}", help_text)
        counter.add_metric([], float(total))
        families.append(counter)
    partial_jobs = CounterMetricFamily("swarmkeep_partial_jobs", "Jobs a budget stopped early")
    partial_jobs.add_metric([], int(totals[-1]))
    families.append(partial_jobs)
    registry = CollectorRegistry()
    registry.register(_Snapshot(families))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

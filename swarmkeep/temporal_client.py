"""Connecting to Temporal, and the limits a new job is submitted with."""

from __future__ import annotations

from temporalio.client import Client

from swarmkeep.messages import JobLimits
from swarmkeep.settings import Settings


async def connect(settings: Settings) -> Client:
    """A client for the configured Temporal frontend and namespace."""
    return await Client.connect(settings.effective_temporal_address, namespace=settings.temporal_namespace)


def job_limits(settings: Settings, max_parallel: int | None = None) -> JobLimits:
    """The limits a job runs under, taken from settings (and the caller's own, lower, parallel limit)."""
    return JobLimits(
        max_parallel=min(max_parallel or settings.max_parallel, settings.max_parallel),
        min_subtasks=settings.min_subtasks,
        max_subtasks=settings.max_subtasks,
        max_steps=settings.max_steps,
        conclusion_chars=settings.conclusion_chars,
        subagent_attempts=settings.subagent_attempts,
        subagent_timeout_s=settings.subagent_timeout_s,
        heartbeat_timeout_s=settings.heartbeat_timeout_s,
        llm_timeout_s=settings.llm_timeout_s,
    )

"""Connecting to Temporal, and the limits a new job is submitted with."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client

from swarmkeep.messages import JobLimits
from swarmkeep.settings import Settings


async def connect(settings: Settings) -> Client:
    """A client for the configured Temporal frontend and namespace."""
    return await Client.connect(settings.effective_temporal_address, namespace=settings.temporal_namespace)


def job_limits(
    settings: Settings,
    max_parallel: int | None = None,
    max_tokens: int | None = None,
    max_cost_usd: float | None = None,
    deadline_s: float | None = None,
    allow_humans: bool = False,
) -> JobLimits:
    """The limits a job runs under: the settings', narrowed by what the caller asked for."""
    price_in, price_out = settings.llm_prices.get(settings.effective_llm_model, (0.0, 0.0))
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
        reassign=settings.reassign,
        regenerate=settings.regenerate,
        fallback_model=settings.fallback_model,
        hedging=settings.hedging,
        hedge_factor=settings.hedge_factor,
        hedge_min_s=settings.hedge_min_s,
        max_tokens=_lowest(max_tokens, settings.job_max_tokens),
        max_cost_usd=_lowest(max_cost_usd, settings.job_max_cost_usd),
        deadline_s=_lowest(deadline_s, settings.job_deadline_s),
        price_in_per_mtok=price_in,
        price_out_per_mtok=price_out,
        role_models=dict(settings.role_models),
        schedule_to_start_s=settings.schedule_to_start_s,
        allow_humans=allow_humans,
        human_deadline_s=settings.human_deadline_s,
    )


def _lowest(*values: float | None) -> Any:
    present = [v for v in values if v is not None]
    return min(present) if present else None

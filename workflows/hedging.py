"""Straggler hedging: when a sub-agent runs far past its stage's finished members, start a backup. Pure code."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class HedgePolicy:
    """Hedge a sub-agent once it has run `factor` times the stage's median duration (and at least `min_s`),
    after at least `min_finished` of the stage (a share of it) have finished, so the median means something."""

    factor: float = 3.0
    min_s: float = 30.0
    min_finished_share: float = 0.5


@dataclass(frozen=True)
class HedgeDecision:
    """Which running subtasks to back up now, and when to look again (seconds from the stage's clock zero)."""

    hedge: list[str]
    next_check_s: float | None


def hedge_threshold(finished_durations: Sequence[float], stage_size: int, policy: HedgePolicy) -> float | None:
    """How long a sub-agent of this stage may run before it counts as a straggler; None while too few finished."""
    needed = max(1, int(stage_size * policy.min_finished_share + 0.999))
    if stage_size < 2 or len(finished_durations) < needed:
        return None
    return max(policy.min_s, policy.factor * statistics.median(finished_durations))


def hedge_decision(
    now_s: float,
    running_since: Mapping[str, float],
    finished_durations: Sequence[float],
    stage_size: int,
    policy: HedgePolicy,
) -> HedgeDecision:
    """Stragglers to hedge now, and the earliest time another running sub-agent would become one."""
    threshold = hedge_threshold(finished_durations, stage_size, policy)
    if threshold is None:
        return HedgeDecision(hedge=[], next_check_s=None)
    hedge = sorted(sid for sid, started in running_since.items() if now_s - started >= threshold)
    upcoming = [started + threshold for sid, started in running_since.items() if sid not in hedge]
    return HedgeDecision(hedge=hedge, next_check_s=min(upcoming) if upcoming else None)

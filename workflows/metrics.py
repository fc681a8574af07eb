"""Run metrics from sub-agent results: total steps, critical steps, parallelism. Pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RunMetrics:
    """What a finished job reports about how it ran."""

    steps: int = 0
    critical_steps: int = 0
    orchestrator_steps: int = 0
    stage_critical_steps: list[int] = field(default_factory=list)
    parallelism: float = 0.0
    subtasks_total: int = 0
    subtasks_succeeded: int = 0
    subtasks_failed: int = 0
    completion_rate: float = 0.0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens: int = 0
    wall_time_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def critical_steps(
    stages: Sequence[Sequence[str]],
    steps_by_subtask: Mapping[str, int],
    orchestrator_steps: int,
    stage_orchestrator_steps: Sequence[int] = (),
) -> tuple[int, list[int]]:
    """Sum over stages of (orchestrator steps in the stage + the most steps any sub-agent of it took).

    Planning and synthesis are orchestrator steps outside every stage; they count once. Orchestrator steps
    inside a stage (rewriting a failed subtask) are part of `orchestrator_steps` and also listed per stage.
    """
    in_stages = list(stage_orchestrator_steps) + [0] * (len(stages) - len(stage_orchestrator_steps))
    per_stage = [
        in_stages[i] + max((steps_by_subtask.get(s, 0) for s in stage), default=0) for i, stage in enumerate(stages)
    ]
    return orchestrator_steps - sum(in_stages) + sum(per_stage), per_stage


def run_metrics(
    *,
    stages: Sequence[Sequence[str]],
    steps_by_subtask: Mapping[str, int],
    succeeded: int,
    failed: int,
    retries: int,
    orchestrator_steps: int,
    stage_orchestrator_steps: Sequence[int] = (),
    prompt_tokens: int,
    completion_tokens: int,
    wall_time_s: float,
) -> RunMetrics:
    """Assemble a job's metrics; parallelism is total steps over critical steps."""
    total_subtasks = sum(len(stage) for stage in stages)
    steps = orchestrator_steps + sum(steps_by_subtask.values())
    critical, per_stage = critical_steps(stages, steps_by_subtask, orchestrator_steps, stage_orchestrator_steps)
    return RunMetrics(
        steps=steps,
        critical_steps=critical,
        orchestrator_steps=orchestrator_steps,
        stage_critical_steps=per_stage,
        parallelism=round(steps / critical, 3) if critical else 0.0,
        subtasks_total=total_subtasks,
        subtasks_succeeded=succeeded,
        subtasks_failed=failed,
        completion_rate=round(succeeded / total_subtasks, 3) if total_subtasks else 0.0,
        retries=retries,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        tokens=prompt_tokens + completion_tokens,
        wall_time_s=round(wall_time_s, 3),
    )

"""Plan checks, stages and critical steps: pure functions, no Temporal."""

from __future__ import annotations

import pytest

from swarmkeep.messages import PlanItem
from swarmkeep.roles import ROLES
from swarmkeep.workflows.metrics import critical_steps, run_metrics
from swarmkeep.workflows.planning import check_plan, find_cycle, stages_of


def item(id_: str, *deps: str, role: str = "researcher") -> PlanItem:
    return PlanItem(id=id_, role=role, depends_on=list(deps))


def test_valid_plan_has_stages_in_dependency_order() -> None:
    plan = [item("a"), item("b"), item("c", "a", "b"), item("d", "c"), item("e", "a")]
    check = check_plan(plan, ROLES, 1, 10)
    assert check.ok, check.problems
    assert check.stages == [["a", "b"], ["c", "e"], ["d"]]


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        ([item("a"), item("a")], "used more than once"),
        ([item("a", role="wizard")], "unknown role 'wizard'"),
        ([item("a", "zz")], "depends on 'zz', which is not in the plan"),
        ([item("a", "a")], "depends on itself"),
        ([item("a", "b"), item("b", "c"), item("c", "a")], "cycle"),
        ([], "has 0 subtasks"),
        ([item(f"s{i}") for i in range(11)], "has 11 subtasks"),
    ],
)
def test_invalid_plans_say_what_is_wrong(plan: list[PlanItem], expected: str) -> None:
    check = check_plan(plan, ROLES, 1, 10)
    assert not check.ok
    assert expected in check.summary()


def test_find_cycle_names_the_loop() -> None:
    assert find_cycle([item("a", "b"), item("b", "a")]) in (["a", "b", "a"], ["b", "a", "b"])
    assert find_cycle([item("a"), item("b", "a")]) is None


def test_stages_of_a_chain_are_one_per_subtask() -> None:
    assert stages_of([item("a"), item("b", "a"), item("c", "b")]) == [["a"], ["b"], ["c"]]


def test_critical_steps_sum_the_slowest_per_stage_plus_orchestrator() -> None:
    stages = [["a", "b", "c"], ["d"]]
    total, per_stage = critical_steps(stages, {"a": 2, "b": 5, "c": 1, "d": 3}, orchestrator_steps=2)
    assert per_stage == [5, 3]
    assert total == 2 + 5 + 3


def test_run_metrics_parallelism_and_completion() -> None:
    metrics = run_metrics(
        stages=[["a", "b", "c", "d"]],
        steps_by_subtask={"a": 3, "b": 3, "c": 3},
        succeeded=3,
        failed=1,
        retries=2,
        orchestrator_steps=2,
        prompt_tokens=100,
        completion_tokens=50,
        wall_time_s=12.3456,
    )
    assert metrics.steps == 11
    assert metrics.critical_steps == 5
    assert metrics.parallelism == pytest.approx(2.2)
    assert metrics.completion_rate == 0.75
    assert metrics.tokens == 150
    assert metrics.wall_time_s == 12.346

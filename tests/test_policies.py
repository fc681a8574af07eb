"""Hedging, budget and plan-guard policies: pure functions, no Temporal."""

from __future__ import annotations

import itertools
import random

import pytest

from swarmkeep.workflows.budget import budget_exceeded, cost_usd
from swarmkeep.workflows.hedging import HedgePolicy, hedge_decision, hedge_threshold
from swarmkeep.workflows.plan_guards import PlannedSubtask, near_duplicates, plan_findings, similarity
from swarmkeep.workflows.recovery import alternate_role, recovery_ladder

POLICY = HedgePolicy(factor=3.0, min_s=10.0, min_finished_share=0.5)


def test_no_hedging_until_enough_of_the_stage_finished() -> None:
    assert hedge_threshold([5.0], stage_size=4, policy=POLICY) is None
    assert hedge_threshold([5.0, 6.0], stage_size=4, policy=POLICY) == 16.5
    assert hedge_threshold([1.0, 1.0], stage_size=4, policy=POLICY) == 10.0  # never below min_s
    assert hedge_threshold([], stage_size=1, policy=POLICY) is None


def test_hedge_decision_picks_stragglers_and_the_next_check() -> None:
    decision = hedge_decision(
        now_s=20.0, running_since={"a": 0.0, "b": 10.0}, finished_durations=[4.0, 6.0], stage_size=4, policy=POLICY
    )
    assert decision.hedge == ["a"]  # 20 s past a 15 s threshold
    assert decision.next_check_s == 25.0  # b crosses at 10 + 15
    idle = hedge_decision(5.0, {"a": 0.0}, [1.0], stage_size=4, policy=POLICY)
    assert idle.hedge == [] and idle.next_check_s is None


def test_budgets() -> None:
    assert cost_usd(1_000_000, 500_000, 0.6, 2.5) == pytest.approx(1.85)
    assert budget_exceeded(100, 0.0, 100, None) == "token budget reached (100 of 100 tokens)"
    assert "cost budget" in budget_exceeded(10, 2.0, None, 1.5)
    assert budget_exceeded(99, 1.0, 100, 1.5) is None
    assert budget_exceeded(10**9, 10**6, None, None) is None


def test_recovery_ladder_and_roles() -> None:
    assert recovery_ladder(True, True) == ["primary", "reassigned", "regenerated"]
    assert recovery_ladder(False, True) == ["primary", "regenerated"]
    assert alternate_role("researcher") == "analyst" and alternate_role("unknown") == "researcher"


def sub(id_: str, text: str, *deps: str) -> PlannedSubtask:
    return PlannedSubtask(id_, text, deps)


def test_plan_guards() -> None:
    parallel = [sub("a", "Research the market size of tea"), sub("b", "Compare brewing methods for green tea"),
                sub("c", "Write a summary of the findings", "a", "b")]  # fmt: skip
    assert plan_findings(parallel) == []
    chain = [sub("a", "Research the tea market"), sub("b", "Analyse the market data", "a"),
             sub("c", "Write the final report text", "b"), sub("d", "Make slides from the report", "c")]  # fmt: skip
    assert any("serial collapse" in f and "4 of 4" in f for f in plan_findings(chain))
    lopsided = [sub("a", "x " * 500), sub("b", "Check the spelling now"), sub("c", "Count the words please")]
    assert any("holds nearly all the work" in f for f in plan_findings(lopsided))
    dupes = [sub("a", "Write an intro about green tea"), sub("b", "Write an intro about green tea"),
             sub("c", "Analyse tea prices over ten years")]  # fmt: skip
    assert any("'a' and 'b' do the same work" in f for f in plan_findings(dupes))
    trivial = [sub("a", "Go"), sub("b", "Research tea prices in Japan"), sub("c", "Research tea prices in India")]
    assert any("trivial" in f for f in plan_findings(trivial))
    cyclic = [sub("a", "Research one thing", "b"), sub("b", "Research another thing", "a"), sub("c", "x y z", "c")]
    assert plan_findings(cyclic) == []  # validation rejects it; the guards do not crash on it
    assert similarity("a b c", "a b c") == 1.0


def test_self_dependency_does_not_recurse() -> None:
    assert (
        plan_findings([sub("a", "one two three", "a"), sub("b", "four five six"), sub("c", "seven eight nine")]) == []
    )


def test_near_duplicates_finds_exactly_the_alike_pairs() -> None:
    # The prefix filter must find every pair a comparison of all pairs finds, and no other.
    rng = random.Random(3)
    for _ in range(300):
        vocabulary = [f"w{i}" for i in range(rng.randint(1, 8))]
        texts = [" ".join(rng.choices(vocabulary, k=rng.randint(0, 7))) for _ in range(rng.randint(2, 25))]
        shingles = [{*zip(t.split(), t.split()[1:], strict=False)} or {(w, "") for w in t.split()} for t in texts]
        for threshold in (0.3, 0.5, 0.85, 1.0):
            every_pair = [
                (i, j)
                for i, j in itertools.combinations(range(len(texts)), 2)
                if (len(shingles[i] & shingles[j]) / len(shingles[i] | shingles[j]) if shingles[i] | shingles[j] else 1)
                >= threshold
            ]
            assert near_duplicates(shingles, threshold) == every_pair, (texts, threshold)


def test_plan_guards_at_full_width() -> None:
    # 300 distinct subtasks pass; two copies among them are found.
    words = [f"topic{i}" for i in range(900)]
    plan = [
        sub(f"s{i}", f"Research {words[3 * i]} and {words[3 * i + 1]} against {words[3 * i + 2]}") for i in range(300)
    ]
    assert plan_findings(plan) == []
    plan[299] = sub("s299", plan[7].instruction)
    assert [f for f in plan_findings(plan) if "same work" in f] == [
        "fake parallelism: subtasks 's7' and 's299' do the same work; merge them or make them different"
    ]

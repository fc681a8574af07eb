"""Plan checks and stage ordering: pure functions the workflow calls, unit-tested without Temporal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from swarmkeep.messages import PlanItem

PLAN_ATTEMPTS = 2  # the first plan, and one re-ask with what was wrong


@dataclass
class PlanCheck:
    """The verdict on a plan: the problems found (none means valid) and, if valid, its stages."""

    problems: list[str]
    stages: list[list[str]]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return "; ".join(self.problems)


def find_cycle(items: Sequence[PlanItem]) -> list[str] | None:
    """A dependency cycle among the items (ids in order), or None when the graph is acyclic."""
    deps = {item.id: [d for d in item.depends_on if d != item.id] for item in items}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in deps.get(node, []):
            if dep not in deps:
                continue
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for item in items:
        if item.id not in state and (cycle := visit(item.id)):
            return cycle
    return None


def stages_of(items: Sequence[PlanItem]) -> list[list[str]]:
    """Group an acyclic plan into stages: each subtask sits one stage after its latest dependency."""
    by_id = {item.id: item for item in items}
    level: dict[str, int] = {}

    def depth(node: str) -> int:
        if node not in level:
            parents = [d for d in by_id[node].depends_on if d in by_id and d != node]
            level[node] = 1 + max((depth(p) for p in parents), default=-1)
        return level[node]

    stages: list[list[str]] = []
    for item in items:
        index = depth(item.id)
        while len(stages) <= index:
            stages.append([])
        stages[index].append(item.id)
    return stages


def check_plan(items: Sequence[PlanItem], roles: Sequence[str], min_subtasks: int, max_subtasks: int) -> PlanCheck:
    """Check a plan's size, ids, roles and dependencies; return the problems found and the stages."""
    problems: list[str] = []
    if not min_subtasks <= len(items) <= max_subtasks:
        problems.append(f"the plan has {len(items)} subtasks; it must have between {min_subtasks} and {max_subtasks}")
    ids = [item.id for item in items]
    seen: set[str] = set()
    for subtask_id in ids:
        if not subtask_id.strip():
            problems.append("a subtask has an empty id")
        elif subtask_id in seen:
            problems.append(f"subtask id {subtask_id!r} is used more than once")
        seen.add(subtask_id)
    for item in items:
        if item.role not in roles:
            problems.append(f"subtask {item.id!r} has unknown role {item.role!r} (known: {', '.join(roles)})")
        for dep in item.depends_on:
            if dep == item.id:
                problems.append(f"subtask {item.id!r} depends on itself")
            elif dep not in seen:
                problems.append(f"subtask {item.id!r} depends on {dep!r}, which is not in the plan")
    if not problems and (cycle := find_cycle(items)):
        problems.append("the dependencies form a cycle: " + " -> ".join(cycle))
    return PlanCheck(problems=problems, stages=stages_of(items) if not problems else [])

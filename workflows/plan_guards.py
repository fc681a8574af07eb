"""Plan guards: catch serial collapse, fake parallelism and plans that are not the task's own before a plan
runs, and merge the near-duplicates of a last plan. Pure code."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from swarmkeep.messages import PlanItem
from swarmkeep.roles import HUMAN
from swarmkeep.workflows.planning import find_cycle, stages_of

WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that say nothing of what a task is about: function words, and the work every plan speaks of.
STOP_WORDS = _words(
    """
    a about above after again all also an and any are as at be been before being below between both but by can
    could did do does doing done each else every few for from further had has have having here how i if in into
    is it its itself just may me might more most must my no nor not now of off on once one only or other our out
    over own per same shall she should so some such than that the their them then there these they this those
    through to too under until up upon us very via was we were what when where which while who whom why will
    with within without would you your
    """
)
WORK_WORDS = _words(
    """
    analyse analysis analyze answer assess brief build collect compare comparison compile create describe design
    detail details document draft explain fact facts find finding findings gather give information item items
    key list make note notes option options outline overview part parts plan point points prepare present
    produce provide report research result results review step steps study subject subtask summarise summarize
    summary task thing things topic work write
    """
)
SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "es", "ed", "s", "e")


@dataclass(frozen=True)
class GuardPolicy:
    chain_share: float = 0.8  # the longest dependency chain holds this share of the subtasks or more
    work_share: float = 0.7  # one instruction holds this share of all instruction text or more
    duplicate_similarity: float = 0.85  # two instructions this alike (Jaccard over word pairs) are the same work
    min_words: int = 3  # an instruction shorter than this is trivial
    min_subtasks: int = 3  # smaller plans are not judged

    example_similarity: float = 0.6  # an instruction this alike to a prompt's example is a copy of it
    subject_shown: int = 5  # how many of the task's subject words a finding names


@dataclass(frozen=True)
class PlannedSubtask:
    id: str
    instruction: str
    depends_on: tuple[str, ...]
    role: str = ""  # a person's subtask (role "human") is the caller's, never judged or merged


@dataclass(frozen=True)
class MergedPlan:
    """A plan after merging near-duplicates: the subtasks left, and each survivor with the ids merged into it."""

    subtasks: list[PlannedSubtask]
    merged: list[dict[str, Any]]  # [{"kept": "s1", "merged": ["s4", "s5"]}]


def _stem(word: str) -> str:
    for suffix in SUFFIXES:
        if len(word) - len(suffix) >= 3 and word.endswith(suffix):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def subject_words(text: str) -> list[str]:
    """The words of `text` that say what it is about (no stop or work words, no bare numbers), in order."""
    words = [w for w in WORD.findall(text.lower()) if len(w) > 1 and not w.isdigit()]
    return list(dict.fromkeys(w for w in words if w not in STOP_WORDS and w not in WORK_WORDS))


def _same_word(a: str, b: str) -> bool:
    a, b = _stem(a), _stem(b)
    short, long = sorted((a, b), key=len)
    return a == b or (len(short) >= 4 and long.startswith(short))


def mentions_subject(instruction: str, subject: Sequence[str]) -> bool:
    """Whether an instruction names one of the task's subject words (stems and prefixes match)."""
    return any(_same_word(word, s) for word in subject_words(instruction) for s in subject)


def content_findings(
    subtasks: Sequence[PlannedSubtask], task: str, examples: Sequence[str], policy: GuardPolicy = GuardPolicy()
) -> list[str]:
    """Subtasks that copy a prompt's example, or do not name the task's subject, in words the orchestrator can
    act on. A person's subtasks are the caller's own and are not judged."""
    judged = [s for s in subtasks if s.role != HUMAN]
    findings: list[str] = []
    example_shingles = [(e, _shingles(e)) for e in examples]
    copied: list[str] = []
    for item in judged:
        own = _shingles(item.instruction)
        match = next((e for e, sh in example_shingles if _jaccard(own, sh) >= policy.example_similarity), None)
        if match is not None:
            copied.append(item.id)
            findings.append(
                f"subtask {item.id!r} copies the prompt's example ({match!r}); write the work this task needs"
            )
    subject = subject_words(task)
    if subject:
        shown = ", ".join(subject[: policy.subject_shown]) + (", ..." if len(subject) > policy.subject_shown else "")
        for item in judged:
            if item.id not in copied and not mentions_subject(item.instruction, subject):
                findings.append(
                    f"subtask {item.id!r} does not mention the task's subject ({shown}): name it in every instruction"
                )
    return findings


def duplicate_groups(subtasks: Sequence[PlannedSubtask], policy: GuardPolicy = GuardPolicy()) -> list[list[int]]:
    """Groups (positions, in plan order, two or more) of near-duplicate agent subtasks, alike directly or
    through a chain of alike pairs; a person's subtasks never join one."""
    judged = [i for i, s in enumerate(subtasks) if s.role != HUMAN]
    shingles = [_shingles(subtasks[i].instruction) for i in judged]
    root = list(range(len(subtasks)))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for a, b in near_duplicates(shingles, policy.duplicate_similarity):
        left, right = find(judged[a]), find(judged[b])
        root[max(left, right)] = min(left, right)
    groups: dict[int, list[int]] = {}
    for i in range(len(subtasks)):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def merge_duplicates(subtasks: Sequence[PlannedSubtask], policy: GuardPolicy = GuardPolicy()) -> MergedPlan:
    """Merge each group of near-duplicate subtasks into its first member: it takes the group's dependencies, and
    whatever depended on a merged subtask depends on it instead. If that closes a cycle, each subtask keeps only
    its dependencies on subtasks listed before it."""
    groups = duplicate_groups(subtasks, policy)
    survivor = {subtasks[i].id: subtasks[g[0]].id for g in groups for i in g}
    gone = {subtasks[i].id for g in groups for i in g[1:]}
    inherited: dict[str, list[str]] = {}
    for item in subtasks:
        inherited.setdefault(survivor.get(item.id, item.id), []).extend(item.depends_on)
    kept: list[PlannedSubtask] = []
    for item in subtasks:
        if item.id in gone:
            continue
        deps = [survivor.get(d, d) for d in inherited[item.id]]
        kept.append(replace(item, depends_on=tuple(d for d in dict.fromkeys(deps) if d != item.id)))
    items = [PlanItem(id=s.id, role=s.role, depends_on=list(s.depends_on)) for s in kept]
    if groups and find_cycle(items) is not None:
        position = {s.id: i for i, s in enumerate(kept)}
        kept = [
            replace(s, depends_on=tuple(d for d in s.depends_on if position.get(d, i) < i)) for i, s in enumerate(kept)
        ]
    merged: list[dict[str, Any]] = [
        {"kept": subtasks[g[0]].id, "merged": [subtasks[i].id for i in g[1:]]} for g in groups
    ]
    return MergedPlan(subtasks=kept, merged=merged)


def _shingles(text: str) -> set[tuple[str, str]]:
    words = WORD.findall(text.lower())
    return set(zip(words, words[1:], strict=False)) or {(w, "") for w in words}


def _jaccard(left: set[tuple[str, str]], right: set[tuple[str, str]]) -> float:
    union = left | right
    return len(left & right) / len(union) if union else 1.0


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of two instructions' word pairs."""
    return _jaccard(_shingles(a), _shingles(b))


def near_duplicates(shingles: Sequence[set[tuple[str, str]]], threshold: float) -> list[tuple[int, int]]:
    """The pairs (i < j) whose Jaccard similarity is at least `threshold` (above 0), in order.

    Comparing every pair took 0.15 s for 300 instructions of 40 words. A prefix filter finds the candidates
    instead: order each set's word pairs rarest first; two sets that alike must share one of the first
    |set| - ceil(threshold * |set|) + 1 of each. Each candidate is then checked exactly."""
    frequency = Counter(token for tokens in shingles for token in tokens)
    holders: dict[tuple[str, str], list[int]] = {}
    empty: list[int] = []  # no words at all: alike to each other (similarity 1), to nothing else
    pairs: list[tuple[int, int]] = []
    for j, tokens in enumerate(shingles):
        if not tokens:
            pairs += [(i, j) for i in empty]
            empty.append(j)
            continue
        ordered = sorted(tokens, key=lambda token: (frequency[token], token))
        candidates: set[int] = set()
        for token in ordered[: len(ordered) - math.ceil(threshold * len(ordered)) + 1]:
            candidates.update(holders.get(token, ()))
            holders.setdefault(token, []).append(j)
        pairs += [(i, j) for i in candidates if _jaccard(shingles[i], tokens) >= threshold]
    return sorted(pairs)


def plan_findings(
    subtasks: Sequence[PlannedSubtask],
    policy: GuardPolicy = GuardPolicy(),
    task: str = "",
    examples: Sequence[str] = (),
) -> list[str]:
    """What is wrong with a plan, in words the orchestrator can act on; empty when fine. With `task` and the
    prompts' `examples`, also subtasks that copy an example or do not name the task's subject."""
    n = len(subtasks)
    items = [PlanItem(id=s.id, role="", depends_on=[d for d in s.depends_on if d != s.id]) for s in subtasks]
    if find_cycle(items) is not None:
        return []  # not a plan yet: validation rejects it first
    findings = content_findings(subtasks, task, examples, policy)
    if n < policy.min_subtasks:
        return findings
    stages = stages_of(items)
    if len(stages) >= policy.chain_share * n:
        findings.append(
            f"serial collapse: {len(stages)} of {n} subtasks form one dependency chain; make independent "
            "subtasks that can run in parallel"
        )
    lengths = [len(s.instruction) for s in subtasks]
    biggest = max(range(n), key=lambda i: lengths[i])
    if lengths[biggest] >= policy.work_share * sum(lengths):
        findings.append(
            f"serial collapse: subtask {subtasks[biggest].id!r} holds nearly all the work; split it into "
            "parallel subtasks"
        )
    trivial = [s.id for s in subtasks if len(WORD.findall(s.instruction)) < policy.min_words]
    if trivial:
        findings.append(f"fake parallelism: subtasks {', '.join(trivial)} are trivial; give each real work")
    shingles = [_shingles(s.instruction) for s in subtasks]
    for i, j in near_duplicates(shingles, policy.duplicate_similarity):
        findings.append(
            f"fake parallelism: subtasks {subtasks[i].id!r} and {subtasks[j].id!r} do the same work; "
            "merge them or make them different"
        )
    return findings

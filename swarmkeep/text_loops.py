"""Cut a model's answer where it falls into a loop: the same sentence or line again and again, or a few
characters repeated without end ("1.1.1.1..."). Small models do this at low temperature until the token limit.
Pure code."""

from __future__ import annotations

import re
from dataclasses import dataclass

# The unit a loop repeats: a sentence (ending where a capital letter follows its mark) within a line.
LINE = re.compile(r"[^\n]+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
ENUMERATOR = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022])\s+")  # "2. " or "- ": list items differ only by it
NOISE = re.compile(r"[\W_]+")
# A stretch of 2 to 20 characters repeated 8 times or more in a row ("1.1.1."; a rule of "-----" is not one).
STUTTER = re.compile(r"(.{2,20}?)\1{7,}", re.DOTALL)


@dataclass(frozen=True)
class LoopPolicy:
    min_repeats: int = 3  # a block seen this many times in a row is a loop (a last copy cut short counts)
    max_period: int = 4  # a loop repeats a block of at most this many sentences or lines
    min_chars: int = 12  # shorter blocks ("Yes.", "---") may repeat on purpose
    echo_chars: int = 40  # a sentence this long said again word for word, anywhere later, is a loop too


def _norm(unit: str) -> str:
    return NOISE.sub(" ", ENUMERATOR.sub("", unit).lower()).strip()


def _units(text: str) -> list[tuple[int, str]]:
    """Each sentence's start in `text`, with its words in lower case (list enumerators and punctuation gone)."""
    units: list[tuple[int, str]] = []
    for line in LINE.finditer(text):
        enumerator = ENUMERATOR.match(line.group())
        skip = enumerator.end() if enumerator else 0
        start = line.start() + skip
        for index, piece in enumerate(SENTENCE_END.split(line.group()[skip:])):
            offset = text.index(piece, start)
            if norm := _norm(piece):  # a line's first sentence starts with the line, enumerator and all
                units.append((line.start() if index == 0 else offset, norm))
            start = offset + len(piece)
    return units


def _first_echo(units: list[tuple[int, str]], policy: LoopPolicy) -> int | None:
    """Where a long sentence comes back word for word (a small model's loop with other sentences between)."""
    seen: set[str] = set()
    for start, norm in units:
        if len(norm) >= policy.echo_chars:
            if norm in seen:
                return start
            seen.add(norm)
    return None


def _first_run(units: list[tuple[int, str]], policy: LoopPolicy) -> int | None:
    """Where a block of sentences or lines starts its second copy in a run of `min_repeats` or more."""
    for j in range(1, len(units)):
        for period in range(1, min(policy.max_period, j) + 1):
            block = [norm for _, norm in units[j - period : j]]
            if sum(map(len, block)) < policy.min_chars:
                continue
            repeats, k = 1, j
            while k + period <= len(units) and [norm for _, norm in units[k : k + period]] == block:
                repeats, k = repeats + 1, k + period
            rest = [norm for _, norm in units[k:]]
            if (
                rest
                and len(rest) <= period
                and block[: len(rest) - 1] == rest[:-1]
                and block[len(rest) - 1].startswith(rest[-1])
            ):
                repeats += 1  # the last copy, cut short by the token limit
            if repeats >= policy.min_repeats:
                return units[j][0]
    return None


def cut_loop(text: str, policy: LoopPolicy = LoopPolicy()) -> tuple[str, bool]:
    """`text` up to where it starts repeating itself (the first occurrence kept), and whether it was cut."""
    units = _units(text)
    cuts = [cut for cut in (_first_echo(units, policy), _first_run(units, policy)) if cut is not None]
    if cuts:
        return text[: min(cuts)].rstrip(), True
    for stutter in STUTTER.finditer(text):
        if len(set(stutter.group(1))) > 1:
            return (text[: stutter.start()] + stutter.group(1)).rstrip(), True
    return text, False

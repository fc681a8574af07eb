"""Failure recovery, in escalating order: retry (Temporal's retry policy, resuming from the notebook), reassign
to another role or model, regenerate the subtask, then record it failed. Pure code."""

from __future__ import annotations

# Who takes over a subtask whose own specialist failed every attempt.
ALTERNATE_ROLE = {
    "researcher": "analyst",
    "analyst": "researcher",
    "coder": "analyst",
    "writer": "researcher",
    "slides": "writer",
    "human": "researcher",  # a person's subtask whose deadline passed
}

PRIMARY, HEDGE, REASSIGNED, REGENERATED = "primary", "hedge", "reassigned", "regenerated"


def alternate_role(role: str) -> str:
    return ALTERNATE_ROLE.get(role, "researcher")


def recovery_ladder(reassign: bool, regenerate: bool) -> list[str]:
    """The runs a subtask gets, in order, each with its own attempts and notebook lane."""
    return [PRIMARY] + ([REASSIGNED] if reassign else []) + ([REGENERATED] if regenerate else [])

"""The specialist roles a plan may give its subtasks."""

from __future__ import annotations

ROLE_DESCRIPTIONS: dict[str, str] = {
    "researcher": "gathers facts, sources and background on a question",
    "coder": "writes, explains or reviews code",
    "writer": "drafts prose: documents, summaries, emails",
    "analyst": "works with numbers and tables, compares options, estimates",
    "slides": "outlines a slide deck: titles and bullet points",
}

ROLES: tuple[str, ...] = tuple(ROLE_DESCRIPTIONS)

HUMAN = "human"
HUMAN_DESCRIPTION = "a person: judgement, approval, or facts only a person has; they answer through the API"


def plan_roles(allow_humans: bool) -> tuple[str, ...]:
    """The roles a plan may use: the agents', and a person's when the job allows it."""
    return (*ROLES, HUMAN) if allow_humans else ROLES


def queue_for(base: str, role: str) -> str:
    """The task queue where the sub-agents of one role run, so workers can serve only some roles."""
    return f"{base}.{role}"

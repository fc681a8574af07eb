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

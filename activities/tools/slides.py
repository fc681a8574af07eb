"""write_pptx: a slide deck (title slide, then title-and-bullets slides) from a JSON outline."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, BinaryIO

from swarmkeep.activities.tools.base import Tool, ToolContext, ToolError, ToolResult
from swarmkeep.activities.tools.documents import write_scratch
from swarmkeep.activities.tools.sandbox import scratch_lock

TITLE_LAYOUT = 0
BULLETS_LAYOUT = 1


def build_deck(outline: dict[str, Any], path: Path | BinaryIO) -> int:
    """Write a .pptx from `{"title", "subtitle"?, "slides": [{"title", "bullets", "notes"?}]}`; returns slide count."""
    from pptx import Presentation

    deck = Presentation()
    cover = deck.slides.add_slide(deck.slide_layouts[TITLE_LAYOUT])
    cover.shapes.title.text = outline["title"]
    cover.placeholders[1].text = outline.get("subtitle", "")
    for spec in outline["slides"]:
        slide = deck.slides.add_slide(deck.slide_layouts[BULLETS_LAYOUT])
        slide.shapes.title.text = spec["title"]
        body = slide.placeholders[1].text_frame
        bullets = spec.get("bullets", [])
        body.text = bullets[0] if bullets else ""
        for bullet in bullets[1:]:
            body.add_paragraph().text = bullet
        if spec.get("notes"):
            slide.notes_slide.notes_text_frame.text = spec["notes"]
    deck.save(path if not isinstance(path, Path) else str(path))
    return len(deck.slides)


async def write_pptx(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    """Write the deck to the scratch folder."""
    filename = arguments["filename"]
    if not filename.lower().endswith(".pptx"):
        raise ToolError(f"filename {filename!r} must end in .pptx")
    name = context.name(filename)
    async with scratch_lock(context.scratch_dir):
        count = await asyncio.to_thread(
            write_scratch, context.scratch_dir, name, lambda out: build_deck(arguments, out)
        )
    return ToolResult(content=f"Wrote {name} ({count} slides, the title slide included).", artifacts=[name])


WRITE_PPTX = Tool(
    name="write_pptx",
    description=(
        "Save a PowerPoint deck (.pptx): a title slide, then one slide per entry of `slides` with its title and "
        "bullet points (and optional speaker notes). It becomes a job artifact."
    ),
    parameters={
        "type": "object",
        "properties": {
            "filename": {"type": "string", "description": "relative name ending .pptx"},
            "title": {"type": "string", "minLength": 1},
            "subtitle": {"type": "string"},
            "slides": {
                "type": "array",
                "minItems": 1,
                "maxItems": 60,
                "items": {
                    "type": "object",
                    "properties": {
                        "title": {"type": "string", "minLength": 1},
                        "bullets": {"type": "array", "items": {"type": "string"}, "maxItems": 12},
                        "notes": {"type": "string"},
                    },
                    "required": ["title", "bullets"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["filename", "title", "slides"],
        "additionalProperties": False,
    },
    handler=write_pptx,
    timeout_s=30,
)

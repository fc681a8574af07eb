"""write_markdown and write_docx: a writer's text becomes a real file in the job's scratch folder."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from swarmkeep.activities.tools import safe_paths
from swarmkeep.activities.tools.base import Tool, ToolContext, ToolError, ToolResult
from swarmkeep.activities.tools.sandbox import scratch_lock

_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")
_INLINE = re.compile(r"(\*\*[^*]+\*\*|\*[^*]+\*|`[^`]+`)")


def _target(context: ToolContext, filename: str, suffix: str) -> str:
    if not filename.lower().endswith(suffix):
        raise ToolError(f"filename {filename!r} must end in {suffix}")
    return context.name(filename)


def write_scratch(root: Path, name: str, write: Callable[[BinaryIO], Any]) -> Any:
    """Create or replace `name` under `root` without following links and hand the open file to `write`."""
    try:
        with safe_paths.writer(root, name) as handle:
            return write(handle)
    except safe_paths.UnsafePathError as error:
        raise ToolError(str(error)) from None


async def write_markdown(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    """Write the Markdown text as given to a .md file."""
    name = _target(context, arguments["filename"], ".md")
    title = arguments.get("title")
    text = (f"# {title}\n\n" if title else "") + arguments["content"].rstrip() + "\n"
    async with scratch_lock(context.scratch_dir):
        await asyncio.to_thread(write_scratch, context.scratch_dir, name, lambda out: out.write(text.encode()))
    return ToolResult(content=f"Wrote {name} ({len(text)} characters).", artifacts=[name])


def _add_runs(paragraph: Any, text: str) -> None:
    """Add text to a python-docx paragraph, turning **bold**, *italic* and `code` into formatted runs."""
    for piece in _INLINE.split(text):
        if not piece:
            continue
        if piece.startswith("**") and piece.endswith("**") and len(piece) > 4:
            paragraph.add_run(piece[2:-2]).bold = True
        elif piece.startswith("`") and piece.endswith("`") and len(piece) > 2:
            paragraph.add_run(piece[1:-1]).font.name = "Courier New"
        elif piece.startswith("*") and piece.endswith("*") and len(piece) > 2:
            paragraph.add_run(piece[1:-1]).italic = True
        else:
            paragraph.add_run(piece)


def markdown_to_docx(markdown: str, path: Path | BinaryIO, title: str | None = None) -> int:
    """Write a .docx from simple Markdown (headings, bullets, numbered lists, paragraphs); returns blocks written."""
    from docx import Document

    document = Document()
    blocks = 0
    if title:
        document.add_heading(title, level=0)
        blocks += 1
    paragraph_lines: list[str] = []

    def flush() -> None:
        nonlocal blocks
        if paragraph_lines:
            _add_runs(document.add_paragraph(), " ".join(line.strip() for line in paragraph_lines))
            paragraph_lines.clear()
            blocks += 1

    for line in markdown.splitlines():
        heading, bullet, numbered = _HEADING.match(line), _BULLET.match(line), _NUMBERED.match(line)
        if not line.strip():
            flush()
        elif heading:
            flush()
            document.add_heading(heading.group(2).strip(), level=min(len(heading.group(1)), 4))
            blocks += 1
        elif bullet or numbered:
            flush()
            match = bullet or numbered
            assert match is not None
            _add_runs(document.add_paragraph(style="List Bullet" if bullet else "List Number"), match.group(1))
            blocks += 1
        else:
            paragraph_lines.append(line)
    flush()
    document.save(path if not isinstance(path, Path) else str(path))
    return blocks


async def write_docx(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    """Write a Word document from Markdown-style text."""
    name = _target(context, arguments["filename"], ".docx")
    content, title = arguments["content"], arguments.get("title")
    async with scratch_lock(context.scratch_dir):
        blocks = await asyncio.to_thread(
            write_scratch, context.scratch_dir, name, lambda out: markdown_to_docx(content, out, title)
        )
    return ToolResult(content=f"Wrote {name} ({blocks} headings, paragraphs and list items).", artifacts=[name])


def _document_schema(suffix: str, content: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "filename": {"type": "string", "description": f"relative name ending .{suffix}"},
            "title": {"type": "string", "description": "optional document title"},
            "content": {"type": "string", "minLength": 1, "description": content},
        },
        "required": ["filename", "content"],
        "additionalProperties": False,
    }


WRITE_MARKDOWN = Tool(
    name="write_markdown",
    description="Save Markdown text as a .md file in this job's scratch folder (it becomes a job artifact).",
    parameters=_document_schema("md", "the Markdown text"),
    handler=write_markdown,
    timeout_s=20,
)

WRITE_DOCX = Tool(
    name="write_docx",
    description=(
        "Save a Word (.docx) document built from Markdown-style text: '# ' headings, '- ' bullets, '1. ' numbered "
        "items, blank lines between paragraphs, **bold**, *italic*. It becomes a job artifact."
    ),
    parameters=_document_schema("docx", "Markdown-style text of the document"),
    handler=write_docx,
    timeout_s=30,
)

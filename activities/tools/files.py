"""list_files and read_file: every role may look at what the job's scratch folder holds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from swarmkeep.activities.tools import safe_paths
from swarmkeep.activities.tools.base import Tool, ToolContext, ToolError, ToolResult
from swarmkeep.activities.tools.sandbox import scratch_lock

MAX_READ_BYTES = 64 << 20


def scratch_files(root: Path) -> dict[str, tuple[int, int]]:
    """Every regular file under `root` (links skipped) as relative name -> (size, modification time in ns)."""
    return safe_paths.regular_files(root)


def read_scratch_bytes(root: Path, name: str, cap: int = MAX_READ_BYTES) -> bytes:
    """Up to `cap` bytes of the regular file `name` under `root`, opened without following any link."""
    try:
        with safe_paths.reader(root, name) as handle:
            return handle.read(cap)
    except (FileNotFoundError, safe_paths.UnsafePathError):
        raise ToolError(f"{name!r} is not a file in the scratch folder; list_files shows what is") from None


async def list_files(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    """The files in the job's scratch folder, with their sizes."""
    async with scratch_lock(context.scratch_dir):
        files = await asyncio.to_thread(scratch_files, context.scratch_dir)
    if not files:
        return ToolResult(content="The job's scratch folder is empty.")
    lines = [f"{name}\t{size} bytes" for name, (size, _) in files.items()]
    return ToolResult(content=f"{len(files)} file(s):\n" + "\n".join(lines))


async def read_file(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    """A text file from the scratch folder, from `offset`, at most `max_chars` characters."""
    name = context.name(arguments["filename"])
    async with scratch_lock(context.scratch_dir):
        raw = await asyncio.to_thread(read_scratch_bytes, context.scratch_dir, name)
    if b"\x00" in raw[:4096]:
        raise ToolError(f"{arguments['filename']!r} is a binary file; use read_table for .xlsx, or run_python")
    text = raw.decode("utf-8", errors="replace")
    offset, limit = arguments.get("offset", 0), arguments.get("max_chars", 8000)
    part = text[offset : offset + limit]
    rest = len(text) - offset - len(part)
    more = f"\n[{rest} more characters; call again with offset={offset + len(part)}]" if rest > 0 else ""
    return ToolResult(content=part + more)


LIST_FILES = Tool(
    name="list_files",
    description="List the files in this job's scratch folder (files you or other tools wrote), with sizes.",
    parameters={"type": "object", "properties": {}, "additionalProperties": False},
    handler=list_files,
    timeout_s=60,  # it may wait for a program running in the same scratch folder (its wall clock: 30 s)
)

READ_FILE = Tool(
    name="read_file",
    description="Read a text file from this job's scratch folder. Long files come in parts: pass offset to go on.",
    parameters={
        "type": "object",
        "properties": {
            "filename": {"type": "string", "description": "relative name, as list_files shows it"},
            "offset": {"type": "integer", "minimum": 0, "description": "first character to return"},
            "max_chars": {"type": "integer", "minimum": 1, "maximum": 16000},
        },
        "required": ["filename"],
        "additionalProperties": False,
    },
    handler=read_file,
    timeout_s=60,  # it may wait for a program running in the same scratch folder (its wall clock: 30 s)
)

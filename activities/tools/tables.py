"""write_table and read_table: CSV and Excel (.xlsx) files in the job's scratch folder, through pandas."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from swarmkeep.activities.tools import safe_paths
from swarmkeep.activities.tools.base import Tool, ToolContext, ToolError, ToolResult
from swarmkeep.activities.tools.documents import write_scratch
from swarmkeep.activities.tools.sandbox import SandboxLimits, SandboxUnavailableError, run_sandboxed, scratch_lock

SUFFIXES = (".csv", ".xlsx")
READ_OUTPUT_BYTES = 256_000
READER_SOURCE = Path(__file__).with_name("table_reader.py").read_text()


def _table_name(context: ToolContext, filename: str) -> str:
    if not filename.lower().endswith(SUFFIXES):
        raise ToolError(f"filename {filename!r} must end in .csv or .xlsx")
    return context.name(filename)


def save_table(out: BinaryIO | Path, columns: list[str], rows: list[list[Any]], sheet: str, xlsx: bool) -> None:
    """Write rows under the given column names as CSV or .xlsx."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=columns)
    if xlsx:
        frame.to_excel(out, sheet_name=sheet, index=False, engine="openpyxl")
    else:
        frame.to_csv(out, index=False)


async def write_table(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    """Write a table; every row must have one value per column."""
    name = _table_name(context, arguments["filename"])
    columns, rows, sheet = arguments["columns"], arguments["rows"], arguments.get("sheet", "Sheet1")
    bad = [i for i, row in enumerate(rows) if len(row) != len(columns)]
    if bad:
        raise ToolError(f"row {bad[0]} has {len(rows[bad[0]])} values but there are {len(columns)} columns")
    xlsx = name.lower().endswith(".xlsx")
    async with scratch_lock(context.scratch_dir):
        await asyncio.to_thread(
            write_scratch, context.scratch_dir, name, lambda out: save_table(out, columns, rows, sheet, xlsx)
        )
    return ToolResult(content=f"Wrote {name} ({len(rows)} rows x {len(columns)} columns).", artifacts=[name])


def reader_limits(limits: SandboxLimits) -> SandboxLimits:
    """The sandbox limits of one table read: the coder's, with a shorter clock and a bounded answer."""
    return replace(limits, wall_seconds=min(limits.wall_seconds, 25.0), max_output_bytes=READ_OUTPUT_BYTES)


async def read_table(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    """Read a table's shape, column types and first rows; the parsing runs in the sandbox (the file is untrusted)."""
    name = _table_name(context, arguments["filename"])
    async with scratch_lock(context.scratch_dir):
        kind = await asyncio.to_thread(_kind, context.scratch_dir, name)
    if kind != "file":
        raise ToolError(f"{arguments['filename']!r} is not in the scratch folder; list_files shows what is")
    call = {"filename": name, "sheet": arguments.get("sheet"), "max_rows": arguments.get("max_rows", 50)}
    code = READER_SOURCE + f"\nmain(json.loads({json.dumps(call)!r}))\n"
    limits = reader_limits(context.sandbox)
    try:
        outcome = await run_sandboxed(code, context.scratch_dir, limits)
    except SandboxUnavailableError as error:
        raise ToolError(str(error)) from None
    answer = _answer(outcome.stdout) if outcome.ok and not outcome.output_truncated else None
    if answer is None:
        why = outcome.verdict or (outcome.stderr.strip().splitlines() or ["no answer"])[-1]
        if outcome.output_truncated:
            why = f"its description passed {READ_OUTPUT_BYTES} bytes; ask for fewer rows"
        raise ToolError(f"could not read {name}: {why}")
    if "error" in answer:
        raise ToolError(str(answer["error"]))
    return ToolResult(content=str(answer.get("text", "")))


def _kind(root: Path, name: str) -> str:
    try:
        os.close(safe_paths.open_regular(root, name))
    except (OSError, safe_paths.UnsafePathError):
        return "missing"
    return "file"


def _answer(stdout: str) -> dict[str, Any] | None:
    lines = stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None
    return answer if isinstance(answer, dict) else None


_CELL = {"type": ["string", "number", "integer", "boolean", "null"]}

WRITE_TABLE = Tool(
    name="write_table",
    description="Save a table as .csv or .xlsx (Excel) in this job's scratch folder; it becomes a job artifact.",
    parameters={
        "type": "object",
        "properties": {
            "filename": {"type": "string", "description": "relative name ending .csv or .xlsx"},
            "columns": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "rows": {"type": "array", "items": {"type": "array", "items": _CELL}},
            "sheet": {"type": "string", "minLength": 1, "maxLength": 31, "description": "sheet name (.xlsx only)"},
        },
        "required": ["filename", "columns", "rows"],
        "additionalProperties": False,
    },
    handler=write_table,
    timeout_s=30,
)

READ_TABLE = Tool(
    name="read_table",
    description="Read a .csv or .xlsx file from this job's scratch folder: its shape, column types and first rows.",
    parameters={
        "type": "object",
        "properties": {
            "filename": {"type": "string"},
            "sheet": {"type": "string", "description": "sheet name (.xlsx only; default the first)"},
            "max_rows": {"type": "integer", "minimum": 1, "maximum": 500},
        },
        "required": ["filename"],
        "additionalProperties": False,
    },
    handler=read_table,
    timeout_s=90,  # it may wait for a program in the same scratch folder, then parses in its own sandbox
)

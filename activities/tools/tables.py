"""write_table and read_table: CSV and Excel (.xlsx) files in the job's scratch folder, through pandas."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from swarmkeep.activities.tools.base import Tool, ToolContext, ToolError, ToolResult

SUFFIXES = (".csv", ".xlsx")


def _table_path(context: ToolContext, filename: str) -> Path:
    if not filename.lower().endswith(SUFFIXES):
        raise ToolError(f"filename {filename!r} must end in .csv or .xlsx")
    return context.path(filename)


def save_table(path: Path, columns: list[str], rows: list[list[Any]], sheet: str) -> None:
    """Write rows under the given column names as CSV or .xlsx (by the file's suffix)."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".xlsx":
        frame.to_excel(path, sheet_name=sheet, index=False, engine="openpyxl")
    else:
        frame.to_csv(path, index=False)


async def write_table(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    """Write a table; every row must have one value per column."""
    path = _table_path(context, arguments["filename"])
    columns, rows = arguments["columns"], arguments["rows"]
    bad = [i for i, row in enumerate(rows) if len(row) != len(columns)]
    if bad:
        raise ToolError(f"row {bad[0]} has {len(rows[bad[0]])} values but there are {len(columns)} columns")
    await asyncio.to_thread(save_table, path, columns, rows, arguments.get("sheet", "Sheet1"))
    name = context.relative(path)
    return ToolResult(content=f"Wrote {name} ({len(rows)} rows x {len(columns)} columns).", artifacts=[name])


def describe_table(path: Path, sheet: str | None, max_rows: int) -> str:
    """Shape, column types and the first rows of a CSV or .xlsx file, as text."""
    import pandas as pd

    if path.suffix.lower() == ".xlsx":
        sheets = pd.ExcelFile(path, engine="openpyxl").sheet_names
        if sheet is not None and sheet not in sheets:
            raise ToolError(f"{path.name} has no sheet {sheet!r}; its sheets are {sheets}")
        frame = pd.read_excel(path, sheet_name=sheet or sheets[0], engine="openpyxl")
        where = f" (sheet {sheet or sheets[0]!r} of {sheets})"
    else:
        frame = pd.read_csv(path)
        where = ""
    types = ", ".join(f"{column}: {dtype}" for column, dtype in frame.dtypes.items())
    head = frame.head(max_rows).to_csv(index=False)
    more = ""
    if len(frame) > max_rows:
        more = f"\n[{len(frame) - max_rows} more rows; use run_python with pandas for the rest]"
    return f"{len(frame)} rows x {len(frame.columns)} columns{where}\ncolumns: {types}\n\n{head}{more}"


async def read_table(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    """Read a table's shape, column types and first rows."""
    path = _table_path(context, arguments["filename"])
    if not path.is_file():
        raise ToolError(f"{arguments['filename']!r} is not in the scratch folder; list_files shows what is")
    text = await asyncio.to_thread(describe_table, path, arguments.get("sheet"), arguments.get("max_rows", 50))
    return ToolResult(content=text)


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
    timeout_s=30,
)

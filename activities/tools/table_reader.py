"""The program read_table runs inside the sandbox: parse an untrusted CSV or .xlsx with pandas, print JSON.

Its source is sent to the sandbox as the program, followed by a call of `main` with the arguments, so a zip bomb
or a huge CSV costs the sandbox its limits, never the worker its memory.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main(arguments: dict[str, Any]) -> None:
    """Print `{"text": ...}` (shape, column types, first rows) or `{"error": ...}` as one JSON line."""
    import pandas as pd

    path, sheet, max_rows = arguments["filename"], arguments.get("sheet"), arguments["max_rows"]
    name = path.rsplit("/", 1)[-1]
    if path.lower().endswith(".xlsx"):
        sheets = pd.ExcelFile(path, engine="openpyxl").sheet_names
        if sheet is not None and sheet not in sheets:
            print(json.dumps({"error": f"{name} has no sheet {sheet!r}; its sheets are {sheets}"}))
            return
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
    text = f"{len(frame)} rows x {len(frame.columns)} columns{where}\ncolumns: {types}\n\n{head}{more}"
    sys.stdout.write(json.dumps({"text": text}) + "\n")

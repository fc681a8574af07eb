"""Writer, slides and analyst tools make real files; the tests reopen them with their own libraries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
from docx import Document
from pptx import Presentation

from swarmkeep.activities.tools import ToolContext, ToolResult, toolset_for


async def _call(role: str, name: str, arguments: dict[str, Any], scratch: Path) -> ToolResult:
    return await toolset_for(role).call(name, arguments, ToolContext(job_id="job-1", scratch_dir=scratch))


async def test_write_markdown(tmp_path: Path) -> None:
    result = await _call(
        "writer",
        "write_markdown",
        {"filename": "notes/summary.md", "title": "Summary", "content": "Tides are *regular*.\n\n- one\n- two"},
        tmp_path,
    )
    assert not result.is_error and result.artifacts == ["notes/summary.md"]
    assert (tmp_path / "notes/summary.md").read_text() == "# Summary\n\nTides are *regular*.\n\n- one\n- two\n"


async def test_write_docx_from_markdown(tmp_path: Path) -> None:
    content = (
        "# Findings\n\nThe tide rises **twice** a day\nin Brest.\n\n"
        "## Details\n- spring tides\n- neap tides\n1. measure\n2. compare\n"
    )
    result = await _call(
        "writer", "write_docx", {"filename": "report.docx", "title": "Tides", "content": content}, tmp_path
    )
    assert not result.is_error and result.artifacts == ["report.docx"], result.content
    document = Document(str(tmp_path / "report.docx"))
    found = [(p.style.name if p.style else "", p.text) for p in document.paragraphs]
    assert found == [
        ("Title", "Tides"),
        ("Heading 1", "Findings"),
        ("Normal", "The tide rises twice a day in Brest."),
        ("Heading 2", "Details"),
        ("List Bullet", "spring tides"),
        ("List Bullet", "neap tides"),
        ("List Number", "measure"),
        ("List Number", "compare"),
    ]
    bold = [run.text for run in document.paragraphs[2].runs if run.bold]
    assert bold == ["twice"]


async def test_write_docx_needs_the_right_suffix(tmp_path: Path) -> None:
    result = await _call("writer", "write_docx", {"filename": "report.txt", "content": "x"}, tmp_path)
    assert result.is_error and "must end in .docx" in result.content


async def test_write_pptx(tmp_path: Path) -> None:
    outline = {
        "filename": "deck.pptx",
        "title": "Tides",
        "subtitle": "A short guide",
        "slides": [
            {"title": "Why", "bullets": ["the moon", "the sun"], "notes": "mention spring tides"},
            {"title": "When", "bullets": ["twice a day"]},
        ],
    }
    result = await _call("slides", "write_pptx", outline, tmp_path)
    assert not result.is_error and result.artifacts == ["deck.pptx"], result.content
    deck = Presentation(str(tmp_path / "deck.pptx"))
    slides = list(deck.slides)
    assert len(slides) == 3
    assert slides[0].shapes.title.text == "Tides" and slides[0].placeholders[1].text == "A short guide"
    assert slides[1].shapes.title.text == "Why"
    assert [p.text for p in slides[1].placeholders[1].text_frame.paragraphs] == ["the moon", "the sun"]
    assert slides[1].notes_slide.notes_text_frame.text == "mention spring tides"
    assert [p.text for p in slides[2].placeholders[1].text_frame.paragraphs] == ["twice a day"]


async def test_write_pptx_rejects_a_malformed_outline(tmp_path: Path) -> None:
    result = await _call(
        "slides", "write_pptx", {"filename": "d.pptx", "title": "T", "slides": [{"bullets": []}]}, tmp_path
    )
    assert result.is_error and "'title' is a required property" in result.content


async def test_write_and_read_tables_as_csv_and_xlsx(tmp_path: Path) -> None:
    columns = ["port", "tide_m", "spring"]
    rows = [["Brest", 7.1, True], ["Saint-Malo", 12.5, True], ["Nice", 0.3, False]]
    for filename in ["tides.csv", "tides.xlsx"]:
        arguments = {"filename": filename, "columns": columns, "rows": rows, "sheet": "Ports"}
        result = await _call("analyst", "write_table", arguments, tmp_path)
        assert not result.is_error and result.artifacts == [filename], result.content

    assert pd.read_csv(tmp_path / "tides.csv").values.tolist() == rows
    sheet = openpyxl.load_workbook(tmp_path / "tides.xlsx")["Ports"]
    assert [list(r) for r in sheet.iter_rows(values_only=True)] == [columns, *rows]

    read = await _call("analyst", "read_table", {"filename": "tides.xlsx", "max_rows": 2}, tmp_path)
    assert not read.is_error, read.content
    assert "3 rows x 3 columns (sheet 'Ports' of ['Ports'])" in read.content
    assert "tide_m: float64" in read.content and "Saint-Malo,12.5,True" in read.content
    assert "Nice" not in read.content and "[1 more rows" in read.content
    missing_sheet = await _call("analyst", "read_table", {"filename": "tides.xlsx", "sheet": "X"}, tmp_path)
    assert missing_sheet.is_error and "no sheet 'X'" in missing_sheet.content


async def test_write_table_checks_row_width(tmp_path: Path) -> None:
    arguments = {"filename": "t.csv", "columns": ["a", "b"], "rows": [[1, 2], [3]]}
    result = await _call("analyst", "write_table", arguments, tmp_path)
    assert result.is_error and "row 1 has 1 values but there are 2 columns" in result.content


async def test_list_and_read_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello " * 10)
    (tmp_path / "b.bin").write_bytes(b"\x00\x01")
    listing = await _call("writer", "list_files", {}, tmp_path)
    assert "a.txt\t60 bytes" in listing.content and "b.bin\t2 bytes" in listing.content
    part = await _call("writer", "read_file", {"filename": "a.txt", "max_chars": 12}, tmp_path)
    assert part.content == "hello hello \n[48 more characters; call again with offset=12]"
    binary = await _call("writer", "read_file", {"filename": "b.bin"}, tmp_path)
    assert binary.is_error and "binary" in binary.content
    empty = await _call("writer", "list_files", {}, tmp_path / "none")
    assert "empty" in empty.content


async def test_analyst_reads_its_table_with_pandas_in_the_sandbox(tmp_path: Path) -> None:
    arguments = {"filename": "sales.csv", "columns": ["month", "units"], "rows": [["jan", 3], ["feb", 4]]}
    await _call("analyst", "write_table", arguments, tmp_path)
    code = "import pandas as pd\nprint('total', pd.read_csv('sales.csv').units.sum())\n"
    result = await _call("analyst", "run_python", {"code": code}, tmp_path)
    assert not result.is_error and "total 7" in result.content, result.content

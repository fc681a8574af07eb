"""A job whose plan uses several toolsets produces real artifacts and a result computed in the sandbox; the
sandbox refuses the network and stops a memory hog and an endless loop, and the job goes on."""

from __future__ import annotations

import io
import json

import openpyxl
from docx import Document
from pptx import Presentation

from tests.support.scripted_llm import Script, plan_json

PLAN = plan_json(
    [
        {"id": "code", "role": "coder", "instruction": "Do part code. Compute the answer.", "depends_on": []},
        {"id": "doc", "role": "writer", "instruction": "Do part doc. Write the report.", "depends_on": []},
        {"id": "deck", "role": "slides", "instruction": "Do part deck. Make the deck.", "depends_on": []},
        {"id": "sheet", "role": "analyst", "instruction": "Do part sheet. Tabulate it.", "depends_on": []},
    ]
)
TOOL_PLAN = {
    "code": [
        ("run_python", {"code": "import socket\nsocket.create_connection(('93.184.215.14', 80), timeout=3)"}),
        ("run_python", {"code": "x = bytearray(4 * 1024**3)"}),
        ("run_python", {"code": "while True:\n    pass"}),
        ("run_python", {"code": "print(sum(i * i for i in range(10)))"}),
    ],
    "doc": [("write_docx", {"filename": "report.docx", "title": "Report", "content": "# Findings\n\nTea is good."})],
    "deck": [
        (
            "write_pptx",
            {"filename": "deck.pptx", "title": "Tea", "slides": [{"title": "Why tea", "bullets": ["Taste", "Health"]}]},
        )
    ],
    "sheet": [
        ("write_table", {"filename": "prices.xlsx", "columns": ["tea", "price"], "rows": [["green", 4], ["black", 3]]})
    ],
}


async def test_toolsets_produce_artifacts_and_the_sandbox_holds(swarm_factory) -> None:
    swarm = await swarm_factory(tools=True, max_steps=6, subagent_timeout_s=300.0, heartbeat_timeout_s=30.0)
    swarm.llm.reset(Script(plans=[PLAN], steps_to_conclude=1, tool_plan=TOOL_PLAN))
    job = await swarm.wait(await swarm.submit("Write about tea."), timeout=240)
    assert job["status"] == "succeeded", job
    assert all(s["status"] == "succeeded" for s in job["subtasks"])

    # What each run_python call told the coder, read from its notebook through the tool messages it received.
    code_calls = [c for c in swarm.llm.calls("subagent", "code")]
    tool_outputs = [m["content"] for m in code_calls[-1]["body"]["messages"] if m["role"] == "tool"]
    assert len(tool_outputs) == 4
    network, memory, endless, computed = tool_outputs
    assert 'status="ok" trusted="false"' in computed and "285" in computed  # computed in the sandbox
    assert 'status="error"' in network and "Network is unreachable" in network
    assert 'status="error"' in memory and "out of memory" in memory
    assert 'status="error"' in endless and "CPU-time limit" in endless

    artifacts = {a["name"]: a for a in job["result"]["artifacts"]}
    assert {"report.docx", "deck.pptx", "prices.xlsx"} <= set(artifacts)
    files = {}
    for name in ("report.docx", "deck.pptx", "prices.xlsx"):
        response = await swarm.api.get(artifacts[name]["url"])
        assert response.status_code == 200
        files[name] = io.BytesIO(response.content)
    assert "Tea is good." in "\n".join(p.text for p in Document(files["report.docx"]).paragraphs)
    deck_text = [shape.text_frame.text for s in Presentation(files["deck.pptx"]).slides for shape in s.shapes
                 if shape.has_text_frame]  # fmt: skip
    assert any("Why tea" in t for t in deck_text)
    sheet = openpyxl.load_workbook(files["prices.xlsx"]).active
    assert [[c.value for c in row] for row in sheet.iter_rows()] == [["tea", "price"], ["green", 4], ["black", 3]]
    missing = await swarm.api.get(f"/v1/jobs/{job['id']}/artifacts/nope.txt")
    assert missing.status_code == 404
    assert json.dumps(job).count("functions.run_python:") == 0  # tool call ids stay in the notebook

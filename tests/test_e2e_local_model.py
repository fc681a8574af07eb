"""End to end as a user runs it: `swarmkeep run` starts Temporal, the job store, the real local vLLM model,
a worker and the API, runs a swarm job, prints the result, and stops what it started."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from swarmkeep.services.process import free_port

pytestmark = pytest.mark.local_model

MODEL_DIR = Path(os.environ.get("SWARMKEEP_MODEL_DIR", Path.home() / ".cache" / "swarmkeep" / "models"))


def test_swarmkeep_run_on_the_local_model(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SWARMKEEP_")} | {
        "SWARMKEEP_DATA_DIR": str(tmp_path / "data"),
        "SWARMKEEP_MODEL_DIR": str(MODEL_DIR),
        "SWARMKEEP_TEMPORAL_DEV_PORT": str(free_port()),
        "SWARMKEEP_TEMPORAL_UI_PORT": str(free_port()),
        "SWARMKEEP_API_PORT": str(free_port()),
        "SWARMKEEP_LOCAL_MODEL_PORT": str(free_port()),
        "SWARMKEEP_MAX_STEPS": "2",
        "SWARMKEEP_LLM_MAX_TOKENS": "120",
        "COLUMNS": "160",
    }
    task = "Prepare a short guide to brewing green tea: facts about green tea, a brewing method, and a summary."
    run = subprocess.run(
        [sys.executable, "-m", "swarmkeep", "run", task],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-5000:]
    assert "succeeded" in output
    assert "critical steps" in output
    assert "Temporal UI: http://127.0.0.1:" in output

    db = sqlite3.connect(tmp_path / "data" / "swarmkeep.db")
    ((job_id, status, synthesis),) = db.execute("select id, status, synthesis from jobs").fetchall()
    assert status == "succeeded" and synthesis
    subtasks = db.execute("select status, conclusion, steps from subtasks where job_id = ?", (job_id,)).fetchall()
    assert len(subtasks) >= 3
    assert all(s == "succeeded" and conclusion and steps >= 1 for s, conclusion, steps in subtasks)
    notebook_rows = db.execute("select count(*) from notebook_entries where job_id = ?", (job_id,)).fetchone()[0]
    assert notebook_rows == sum(steps for _, _, steps in subtasks)
    assert f"/workflows/{job_id}" in output

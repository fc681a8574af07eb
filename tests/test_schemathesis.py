"""schemathesis over the running API (real Temporal, scripted model, a worker): every check, stateful phase included.

This is the short CI run; the full one (at least 1,000 cases) is the same command with `-n 100`, see
tests/support/fuzz_stack.py for a stack to point it at.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.schemathesis

SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")


@pytest.mark.skipif(SCHEMATHESIS is None, reason="schemathesis is not installed (it is a dev dependency)")
async def test_schemathesis_finds_no_failure(swarm_factory, tmp_path: Path) -> None:
    # Human subtasks go to an agent quickly, so every job ends and no long poll waits out its whole timeout.
    swarm = await swarm_factory(human_deadline_s=5.0)
    assert SCHEMATHESIS is not None
    process = await asyncio.create_subprocess_exec(
        SCHEMATHESIS, "run", str(swarm.api.base_url).rstrip("/") + "/openapi.json",
        "-H", f"Authorization: Bearer {swarm.key.key}",
        "--checks", "all",
        "--max-examples", "20",
        # One worker: hypothesis describes lambdas with ast.parse, which Python 3.11 does not allow in threads.
        "--workers", "1",
        "--request-timeout", "320",
        "--generation-deterministic",
        "--continue-on-failure",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,  # its cache and reports stay out of the repository
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-6000:]
    assert "Stateful" in text and " passed" in text

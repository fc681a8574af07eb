"""run_python: the model's code runs in the sandbox, in the job's scratch folder; files it writes are artifacts."""

from __future__ import annotations

import asyncio
from typing import Any

from swarmkeep.activities.tools.base import Tool, ToolContext, ToolResult
from swarmkeep.activities.tools.files import scratch_files
from swarmkeep.activities.tools.sandbox import SandboxUnavailableError, run_sandboxed


async def run_python(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    """Run the code; report exit code, output, why it was stopped if it was, and the files it wrote."""
    limits = context.sandbox
    context.scratch_dir.mkdir(parents=True, exist_ok=True)
    before = await asyncio.to_thread(scratch_files, context.scratch_dir)
    try:
        outcome = await run_sandboxed(arguments["code"], context.scratch_dir, limits)
    except SandboxUnavailableError as error:
        return ToolResult(content=f"Error: {error}", is_error=True)
    after = await asyncio.to_thread(scratch_files, context.scratch_dir)
    artifacts = [name for name, stamp in after.items() if before.get(name) != stamp]
    parts = [f"exit code: {outcome.exit_code}"]
    if outcome.verdict:
        parts.append(outcome.verdict)
    if outcome.stdout:
        parts.append("--- stdout ---\n" + outcome.stdout.rstrip())
    if outcome.stderr:
        parts.append("--- stderr ---\n" + outcome.stderr.rstrip())
    if outcome.output_truncated:
        parts.append(f"(output cut at {limits.max_output_bytes} bytes per stream; print less)")
    if not (outcome.stdout or outcome.stderr):
        parts.append("(no output: print() what you want to see)")
    return ToolResult(content="\n".join(parts), artifacts=artifacts, is_error=not outcome.ok)


RUN_PYTHON = Tool(
    name="run_python",
    description=(
        "Run a Python 3.11 program in a sandbox and get its printed output. No network. The current folder is this "
        "job's scratch folder: read and write files there (files you write become job artifacts). pandas, numpy "
        "and openpyxl are available. Limits: memory, CPU time, wall time (about 30 s), processes, output size."
    ),
    parameters={
        "type": "object",
        "properties": {"code": {"type": "string", "minLength": 1, "description": "the whole program; print results"}},
        "required": ["code"],
        "additionalProperties": False,
    },
    handler=run_python,
    timeout_s=300,
    max_output_chars=70_000,
)

"""A worker-like process for the hostile-input suite: it loads the sandbox modules by path (stdlib only, so any
Python 3.11 will do, as any user) and runs one scenario given as JSON, printing its outcome as one JSON line.

    python -I hostile_worker.py '{"scenario": "run", "code": "...", "workdir": "...", "limits": {...}}'

Scenarios: `run` (one sandboxed program), `sleeper` (start a sleeping program and wait to be killed), `race` (swap
a folder for a link while reading through safe_paths).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import os
import sys
import threading
import time
import types
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[2] / "activities" / "tools"


def _load(name: str) -> types.ModuleType:
    for package in ("swarmkeep", "swarmkeep.activities", "swarmkeep.activities.tools"):
        sys.modules.setdefault(package, types.ModuleType(package))
    spec = importlib.util.spec_from_file_location(f"swarmkeep.activities.tools.{name}", TOOLS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    setattr(sys.modules["swarmkeep.activities.tools"], name, module)
    spec.loader.exec_module(module)
    return module


async def _run(spec: dict) -> dict:
    sandbox = _load("sandbox_guard") and _load("sandbox")
    sandbox.PROC_MOUNT = spec.get("proc_mount", "fresh")
    limits = sandbox.SandboxLimits(**spec.get("limits", {}))
    try:
        outcome = await sandbox.run_sandboxed(spec["code"], Path(spec["workdir"]), limits)
    except sandbox.SandboxUnavailableError as error:
        return {"unavailable": str(error)}
    return dataclasses.asdict(outcome) | {"ok": outcome.ok}


def _race(spec: dict) -> dict:
    safe_paths = _load("safe_paths")
    root, outside = Path(spec["workdir"]), Path(spec["outside"])
    (root / "d").mkdir(exist_ok=True)
    (root / "d" / "f").write_text("inside")
    stop = threading.Event()

    def swap() -> None:  # what a hostile program in the scratch folder would do, as fast as it can
        while not stop.is_set():
            try:
                os.rename(root / "d", root / "parked")
                os.symlink(outside, root / "d")
                os.unlink(root / "d")
                os.rename(root / "parked", root / "d")
            except OSError:
                continue

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    reads = {"inside": 0, "refused": 0, "leaked": 0}
    end = time.monotonic() + spec.get("seconds", 3.0)
    while time.monotonic() < end:
        for name in ("d/f",):
            try:
                with safe_paths.reader(root, name) as handle:
                    text = handle.read().decode()
            except (OSError, ValueError):
                reads["refused"] += 1
                continue
            reads["leaked" if text != "inside" else "inside"] += 1
    stop.set()
    thread.join()
    return reads


def main() -> None:
    """Run the scenario in argv[1]; print its outcome as JSON."""
    spec = json.loads(sys.argv[1])
    if spec["scenario"] == "race":
        print(json.dumps(_race(spec)), flush=True)
    elif spec["scenario"] == "sleeper":
        print(json.dumps({"pid": os.getpid()}), flush=True)
        asyncio.run(_run(spec))
    else:
        print(json.dumps(asyncio.run(_run(spec))), flush=True)


if __name__ == "__main__":
    main()

"""Run swarmkeep's own commands as child processes configured by a test's settings."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from pydantic import SecretStr

from swarmkeep.services.process import ManagedProcess
from swarmkeep.settings import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The SWARMKEEP_* variables that reproduce `settings` in a child process."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list | dict):
            value = json.dumps(value)  # pydantic-settings reads complex values as JSON
        env[f"SWARMKEEP_{name.upper()}"] = str(value)
    return env


def swarmkeep_process(command: str, settings: Settings, log_file: Path) -> ManagedProcess:
    return ManagedProcess(
        f"swarmkeep {command}",
        [sys.executable, "-m", "swarmkeep", command],
        log_file,
        env=settings_env(settings),
    )


def _stat(pid: int) -> list[str] | None:
    """The /proc stat fields after the command name (state, ppid, ...), or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


# A process named by pid and start time (stat field 22), so a reused pid is never taken for it.
Proc = tuple[int, str]


def descendants(pid: int) -> list[Proc]:
    """The live processes below `pid` (children, theirs, ...), read from /proc's ppid links."""
    children: dict[int, list[Proc]] = {}
    for entry in os.listdir("/proc"):
        fields = _stat(int(entry)) if entry.isdigit() else None
        if fields is not None and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append((int(entry), fields[19]))
    found: list[Proc] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child[0])
    return found


def alive(proc: Proc) -> bool:
    """True while the process exists and is not a zombie."""
    fields = _stat(proc[0])
    return fields is not None and fields[0] != "Z" and fields[19] == proc[1]


def command_of(proc: Proc) -> str:
    try:
        with open(f"/proc/{proc[0]}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def wait_gone(procs: list[Proc], timeout: float) -> list[Proc]:
    """Wait up to `timeout` s for every process to exit; return those still alive."""
    deadline = time.monotonic() + timeout
    left = [proc for proc in procs if alive(proc)]
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [proc for proc in left if alive(proc)]
    return left


def kill_procs(procs: list[Proc]) -> None:
    """SIGKILL each process still alive (a test's own leftovers)."""
    for proc in procs:
        if alive(proc):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc[0], signal.SIGKILL)

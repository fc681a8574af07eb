"""Run a command as a process group that goes away whole: `python -m swarmkeep.services.group_guard --parent PID --
ARGV...`.

The guard leads the group its starter gave it (start_new_session) and runs the command inside it. When it gets
SIGTERM, SIGINT or SIGHUP, when its starter dies (it polls its parent; the starter also sets PR_SET_PDEATHSIG), or
when the command exits, it stops every process left in the group: SIGTERM, then SIGKILL after a grace period. So a
server's own children (vLLM's engine-core processes) go with it, whoever stopped it and however.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
DEFAULT_GRACE_S = 10.0

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A preexec_fn that makes the child receive `sig` when its starter dies; None where that cannot be had.

    Linux sends the signal when the forking *thread* ends, so it is set only when forking from the main thread
    (the guard's parent polling covers the rest). If the starter died before the prctl, the child exits at once.
    """
    if _libc is None or threading.current_thread() is not threading.main_thread():
        return None
    prctl = _libc.prctl  # looked up before the fork: the child only makes the call

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(128 + int(sig))

    return preexec


def guarded(argv: list[str], grace_s: float = DEFAULT_GRACE_S, outlive_parent: bool = False) -> list[str]:
    """`argv` run under the guard, which this process (its parent) starts; with `outlive_parent`, the guard
    watches only for stop signals and its command's exit (services left running on purpose)."""
    return [
        sys.executable, "-m", "swarmkeep.services.group_guard",
        "--parent", "0" if outlive_parent else str(os.getpid()), "--grace", str(grace_s), "--", *argv,
    ]  # fmt: skip


def _process_table() -> list[tuple[int, int, int]]:
    """(pid, ppid, pgrp) of every live (not zombie) process, read from /proc."""
    table: list[tuple[int, int, int]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                # Fields after the command's closing parenthesis: state, ppid, pgrp, ...
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            table.append((int(entry), int(fields[1]), int(fields[2])))
    return table


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group `pgid`."""
    return [pid for pid, _ppid, pgrp in _process_table() if pgrp == pgid]


def _ours(me: int) -> list[int]:
    """The other live processes of this group, and this process's descendants that left it (setsid)."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, ppid, _pgrp in table:
        children.setdefault(ppid, []).append(pid)
    group = {pid for pid, _ppid, pgrp in table if pgrp == me}
    seen, stack = {me}, [me]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return sorted((group | seen) - {me})


def _reap() -> None:
    """Collect exited children (the guard is a subreaper, so the group's orphans become its children)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def stop_group(grace_s: float) -> None:
    """SIGTERM every other process of this group (the guard leads it) and every descendant, then SIGKILL what is
    left after `grace_s`."""
    me = os.getpid()
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        others = _ours(me)
        for pid in others:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while others and time.monotonic() < deadline:
            time.sleep(0.1)
            _reap()
            others = _ours(me)
        if not others:
            return


def main(args: list[str] | None = None) -> int:
    """Run the command; stop its whole group on a stop signal, the parent's death, or the command's exit."""
    parser = argparse.ArgumentParser(prog="swarmkeep.services.group_guard")
    parser.add_argument("--parent", type=int, required=True, help="the starter's pid; 0: outlive it")
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE_S)
    parser.add_argument("argv", nargs="+")
    options = parser.parse_args(args)
    if os.getpgrp() != os.getpid():  # started without a group of its own: lead a new one
        os.setpgid(0, 0)
    asked: list[int] = []
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: asked.append(signum))
    watch = options.parent != 0
    if _libc is not None:
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        if watch:
            _libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if watch and os.getppid() != options.parent:
        return 128 + signal.SIGTERM  # the starter is already gone
    command = subprocess.Popen(options.argv, preexec_fn=die_with_parent(os.getpid()))  # noqa: PLW1509
    while command.poll() is None and not asked and (not watch or os.getppid() == options.parent):
        time.sleep(0.2)
    stop_group(options.grace)
    code = command.wait()
    _reap()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())

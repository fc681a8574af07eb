"""The sandbox's own supervisor: runs inside bubblewrap, checks the sandbox, sets its limits and keeps its clock.

Run as `python -I -S /.swarmkeep/launcher.py CONFIG_JSON` by bwrap, as the second process of the sandbox's PID
namespace. Standard library only. It refuses to start the program unless /proc is the namespace's own (a /proc
shared with the host would show the worker's environment); it sets rlimits, forks the program (`python -I -`, code
on stdin), then every 100 ms checks the wall clock and the memory of every process in the namespace together, and on
either limit kills them all. When it exits, bwrap's init exits and the kernel kills whatever is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sys
import time
from typing import Any

SETUP_FAILED = 125
WALL_CLOCK = 124
MEMORY_TOTAL = 123
PROCESS_TOTAL = 122


def check_fresh_proc() -> None:
    """Raise unless /proc belongs to this PID namespace (then /proc/self is our own pid, and pid 1 is bwrap's)."""
    try:
        own = os.readlink("/proc/self")
    except OSError as error:
        raise OSError(f"no /proc in the sandbox ({error})") from None
    if own != str(os.getpid()):
        raise OSError("/proc is not the sandbox's own (a fresh /proc could not be had); refusing to run")


def _usage() -> tuple[int, int]:
    """Processes in this namespace, and their proportional memory together in bytes."""
    total, count = 0, 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            count += 1
            try:
                with open(f"/proc/{entry}/smaps_rollup") as handle:
                    for line in handle:
                        if line.startswith("Pss:"):
                            total += int(line.split()[1]) * 1024
                            break
            except (OSError, ValueError):
                continue
    return count, total


def _set_limits(config: dict[str, Any]) -> None:
    memory, cpu = config["memory_bytes"], config["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (config["max_file_bytes"], config["max_file_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (config["max_open_files"], config["max_open_files"]))
    # Counted per uid in this sandbox's own user namespace: bwrap's init and this launcher take two.
    resource.setrlimit(resource.RLIMIT_NPROC, (config["max_processes"] + 2, config["max_processes"] + 2))


def _kill_all() -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(-1, signal.SIGKILL)  # every process of the namespace but this one (and init, which ignores it)


def _supervise(program: int, config: dict[str, Any]) -> int:
    deadline = time.monotonic() + config["wall_seconds"]
    while True:
        try:
            done, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return SETUP_FAILED
        if done == program:
            _kill_all()  # background processes the program left go with it
            return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if done:
            continue  # an orphan reparented to us; reaped
        if time.monotonic() > deadline:
            _kill_all()
            print(f"sandbox: stopped at the wall-clock limit of {config['wall_seconds']:g} s", file=sys.stderr)
            return WALL_CLOCK
        count, memory = _usage()
        if count > config["max_processes"] + 2:  # RLIMIT_NPROC does not bind a uid that is root outside
            _kill_all()
            print("sandbox: stopped at the process limit", file=sys.stderr)
            return PROCESS_TOTAL
        if memory > config["memory_bytes"]:
            _kill_all()
            print("sandbox: stopped at the memory limit of all its processes together", file=sys.stderr)
            return MEMORY_TOTAL
        time.sleep(0.1)


def main() -> int:
    """Check the sandbox, then run the program in it; exit with its status (128 + signal if it was killed)."""
    config = json.loads(sys.argv[1])
    try:
        check_fresh_proc()
    except OSError as error:
        print(f"sandbox setup failed: {error}", file=sys.stderr)
        return SETUP_FAILED
    # Reap orphans like an init would (PR_SET_CHILD_SUBREAPER), so waitpid sees the whole tree.
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
    program = os.fork()
    if program == 0:
        try:
            _set_limits(config)
            os.execve(config["argv"][0], config["argv"], dict(os.environ))
        except (OSError, ValueError) as error:
            print(f"sandbox setup failed: {error}", file=sys.stderr)
        os._exit(SETUP_FAILED)
    return _supervise(program, config)


if __name__ == "__main__":
    sys.exit(main())

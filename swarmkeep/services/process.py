"""A child process started by swarmkeep: its own process group, a log file, a readiness wait, a clean stop.

Every child runs under the group guard (group_guard.py): stopped by any signal, or left by a starter that was
killed outright, it takes its whole process group with it.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from swarmkeep.services.group_guard import die_with_parent, guarded


class ServiceStartError(RuntimeError):
    """A service did not come up; the message quotes the end of its log."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when `url` answers 200 (refused, reset, an error status or a half-started server all say no)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, http.client.HTTPException):
        return False


def cmdline(pid: int) -> list[str]:
    """A process's argv from /proc, or [] when it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [part.decode(errors="replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def listening_pid(port: int) -> int | None:
    """The process listening on TCP `port` (any local address), found through /proc; None when unknown."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                # local_address is HEXIP:HEXPORT; state 0A is LISTEN.
                if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in os.listdir("/proc") if wanted else ():
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{entry}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/fd/{fd}") in wanted:
                        return int(entry)
    return None


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ManagedProcess:
    """Start a command in its own process group, under the group guard, logging to a file; stop only that group."""

    # True for a service meant to outlive its starter (`swarmkeep run --keep-running`): signals still stop its whole
    # group, its starter's death does not.
    outlive_parent = False

    def __init__(self, name: str, argv: Sequence[str], log_file: Path, env: dict[str, str] | None = None):
        self.name = name
        self.argv = list(argv)
        self.log_file = log_file
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")  # noqa: SIM115 - the child keeps it open
        try:
            self.process = subprocess.Popen(
                guarded(self.argv, outlive_parent=self.outlive_parent),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})},
                start_new_session=True,
                # One prctl, no Python state, so safe after fork.
                preexec_fn=None if self.outlive_parent else die_with_parent(os.getpid()),  # noqa: PLW1509
            )
        finally:
            log.close()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `ready` until true; fail early, quoting the log, if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if not self.running():
                raise ServiceStartError(
                    f"{self.name} exited (code {self.process.returncode if self.process else '?'}) before "
                    f"{what}. Last lines of {self.log_file}:\n{log_tail(self.log_file)}"
                )
            time.sleep(0.25)
        raise ServiceStartError(
            f"{self.name} was not {what} after {timeout:.0f}s. Last lines of {self.log_file}:\n"
            f"{log_tail(self.log_file)}"
        )

    def signal(self, sig: int) -> None:
        if self.running() and self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the group, then SIGKILL what is left after `timeout` seconds."""
        if self.process is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=10)

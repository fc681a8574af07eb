"""The local stack behind `swarmkeep up` and `swarmkeep run`: Temporal, migrations, model, worker, API."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from swarmkeep.services.process import ManagedProcess, ServiceStartError, cmdline, http_ok, listening_pid, port_open
from swarmkeep.services.temporal_dev import TemporalDevServer, recorded_server
from swarmkeep.settings import Settings
from swarmkeep.store.engine import run_once, session_scope
from swarmkeep.store.keys import ensure_dev_key
from swarmkeep.store.migrate import upgrade

Say = Callable[[str], None]


class LocalStack:
    """Start what is not already running, in dependency order; stop only what this stack started."""

    def __init__(self, settings: Settings, say: Say = print, outlive: bool = False):
        """With `outlive`, what the stack starts keeps running after this process ends (`run --keep-running`);
        otherwise it stops with this process, however that ends."""
        self.settings = settings
        self.say = say
        self.outlive = outlive
        self.logs = settings.data_dir / "logs"
        self.started: list[ManagedProcess] = []
        self.model_server: object | None = None
        self.dev_key: str | None = None

    def _swarmkeep(self, name: str, *args: str) -> ManagedProcess:
        process = ManagedProcess(
            f"swarmkeep {name}", [sys.executable, "-m", "swarmkeep", name, *args], self.logs / f"{name}.log"
        )
        process.outlive_parent = self.outlive
        return process

    def start_temporal(self) -> None:
        s = self.settings
        if not s.uses_dev_server:
            self.say(f"Temporal: using {s.effective_temporal_address}")
            return
        db_file = s.data_dir / "temporal.db"
        if port_open("127.0.0.1", s.temporal_dev_port):
            self._reuse_temporal(db_file)
            return
        server = TemporalDevServer(
            db_file,
            port=s.temporal_dev_port,
            ui_port=s.temporal_ui_port,
            namespace=s.temporal_namespace,
            log_file=self.logs / "temporal.log",
        )
        server.outlive_parent = self.outlive
        self.say(f"Temporal: starting the dev server ({s.data_dir / 'temporal.db'}) ...")
        self.started.append(server)  # before the wait, so a stop during it still stops the server
        server.start_and_wait(record=True)
        self.say(f"Temporal: ready at {server.address}, web UI {s.effective_temporal_ui_url}")

    def _reuse_temporal(self, db_file: Path) -> None:
        """Reuse the dev server on the port only if this data directory's record says it is ours: a worker of
        another data directory polling it would take this stack's jobs without having them in its job store."""
        port = self.settings.temporal_dev_port
        pid = recorded_server(db_file, port)
        if pid is not None:
            self.say(f"Temporal: dev server already running at 127.0.0.1:{port} for {db_file} (pid {pid})")
            return
        holder = listening_pid(port)
        who = (
            f"process {holder} ({shlex.join(cmdline(holder)) or 'command line unreadable'})"
            if holder
            else ("a process this user cannot inspect")
        )
        raise ServiceStartError(
            f"Port {port} is already taken by {who}, which is not the Temporal dev server of this data directory "
            f"({db_file}). Sharing it would let another swarmkeep stack's worker take this stack's jobs. Stop that "
            f"server, or give this stack its own ports with SWARMKEEP_TEMPORAL_DEV_PORT and "
            f"SWARMKEEP_TEMPORAL_UI_PORT, or set SWARMKEEP_TEMPORAL_ADDRESS to use that server deliberately (with "
            f"its own SWARMKEEP_TASK_QUEUE if another stack uses it too)."
        )

    def migrate(self) -> None:
        run_once(upgrade(self.settings.effective_database_url))
        self.say(f"Job store: migrated ({self.settings.shown_database_url})")
        self.dev_key = run_once(self._dev_key())

    async def _dev_key(self) -> str:
        async with session_scope(self.settings.effective_database_url) as session:
            return await ensure_dev_key(session, self.settings.data_dir)

    def start_model(self) -> None:
        s = self.settings
        if not s.uses_local_model:
            self.say(f"Model: {s.effective_llm_model} at {s.effective_llm_base_url}")
            return
        if http_ok(f"http://127.0.0.1:{s.local_model_port}/health"):
            self.say(f"Model: local model already serving at {s.effective_llm_base_url}")
            return
        from swarmkeep.inference.profiles import profile_server

        server = profile_server(s, say=self.say)
        self.say(f"Model: starting vLLM with profile {s.model_profile!r} ...")
        self.say("  $ " + " ".join(server.command()))
        server.outlive_parent = self.outlive
        self.model_server = server
        server.start()
        server.wait_healthy()
        self.say(f"Model: ready at {server.base_url}")

    def start_worker(self) -> None:
        worker = self._swarmkeep("worker")
        self.started.append(worker)
        worker.start()
        self.say(f"Worker: polling task queue {self.settings.task_queue!r} (log {worker.log_file})")

    def start_api(self) -> None:
        s = self.settings
        health = f"{s.effective_api_url}/healthz"
        if http_ok(health):
            self.say(f"API: already serving at {s.effective_api_url}")
            return
        api = self._swarmkeep("api")
        self.started.append(api)
        api.start()
        api.wait_until(lambda: http_ok(health), 60, "answering /healthz")
        self.say(f"API: {s.effective_api_url} (OpenAPI at {s.effective_api_url}/docs)")
        if self.dev_key:
            self.say(f"Development API key (tenant 'local'): {self.dev_key}")

    def start_all(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.start_temporal()
        self.migrate()
        self.start_model()
        self.start_worker()
        self.start_api()

    def stop(self) -> None:
        """Stop what this stack started, newest first; one that will not stop does not keep the rest running."""
        stoppers = [process.stop for process in reversed(self.started)]
        if self.model_server is not None:
            stoppers.append(self.model_server.stop)  # type: ignore[attr-defined]
        self.started.clear()
        self.model_server = None
        for stop in stoppers:
            try:
                stop()
            except Exception as error:  # reported, and the others still stopped
                self.say(f"Could not stop cleanly: {error}")

    @property
    def log_dir(self) -> Path:
        return self.logs

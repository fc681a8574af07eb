"""The local stack behind `swarmkeep up` and `swarmkeep run`: Temporal, migrations, model, worker, API."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from swarmkeep.services.process import ManagedProcess, http_ok, port_open
from swarmkeep.services.temporal_dev import TemporalDevServer
from swarmkeep.settings import Settings
from swarmkeep.store.engine import run_once, session_scope
from swarmkeep.store.keys import ensure_dev_key
from swarmkeep.store.migrate import upgrade

Say = Callable[[str], None]


class LocalStack:
    """Start what is not already running, in dependency order; stop only what this stack started."""

    def __init__(self, settings: Settings, say: Say = print):
        self.settings = settings
        self.say = say
        self.logs = settings.data_dir / "logs"
        self.started: list[ManagedProcess] = []
        self.model_server: object | None = None
        self.dev_key: str | None = None

    def _swarmkeep(self, name: str, *args: str) -> ManagedProcess:
        return ManagedProcess(
            f"swarmkeep {name}", [sys.executable, "-m", "swarmkeep", name, *args], self.logs / f"{name}.log"
        )

    def start_temporal(self) -> None:
        s = self.settings
        if not s.uses_dev_server:
            self.say(f"Temporal: using {s.effective_temporal_address}")
            return
        if port_open("127.0.0.1", s.temporal_dev_port):
            self.say(f"Temporal: dev server already running at {s.effective_temporal_address}")
            return
        server = TemporalDevServer(
            s.data_dir / "temporal.db",
            port=s.temporal_dev_port,
            ui_port=s.temporal_ui_port,
            namespace=s.temporal_namespace,
            log_file=self.logs / "temporal.log",
        )
        self.say(f"Temporal: starting the dev server ({s.data_dir / 'temporal.db'}) ...")
        server.start_and_wait()
        self.started.append(server)
        self.say(f"Temporal: ready at {server.address}, web UI {s.effective_temporal_ui_url}")

    def migrate(self) -> None:
        run_once(upgrade(self.settings.effective_database_url))
        self.say(f"Job store: migrated ({self.settings.effective_database_url})")
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
        server.start()
        self.model_server = server
        server.wait_healthy()
        self.say(f"Model: ready at {server.base_url}")

    def start_worker(self) -> None:
        worker = self._swarmkeep("worker")
        worker.start()
        self.started.append(worker)
        self.say(f"Worker: polling task queue {self.settings.task_queue!r} (log {worker.log_file})")

    def start_api(self) -> None:
        s = self.settings
        health = f"{s.effective_api_url}/healthz"
        if http_ok(health):
            self.say(f"API: already serving at {s.effective_api_url}")
            return
        api = self._swarmkeep("api")
        api.start()
        self.started.append(api)
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
        """Stop what this stack started, newest first."""
        for process in reversed(self.started):
            process.stop()
        if self.model_server is not None:
            self.model_server.stop()  # type: ignore[attr-defined]
        self.started.clear()
        self.model_server = None

    @property
    def log_dir(self) -> Path:
        return self.logs

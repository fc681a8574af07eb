"""Serve the real API app over HTTP from a background thread, for tests."""

from __future__ import annotations

import threading
import time

import uvicorn

from swarmkeep.api.app import create_app
from swarmkeep.settings import Settings


class ApiServer:
    def __init__(self, settings: Settings):
        self.settings = settings
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=settings.api_port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the API server thread exited during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)

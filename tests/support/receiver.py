"""A webhook receiver for tests: records every request; can start late to play a receiver that was down."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI, Request, Response

from swarmkeep.services.process import free_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


class WebhookReceiver:
    def __init__(self, path: str = "/hook") -> None:
        self.port = free_port()
        self.path = path
        self.received: list[Received] = []
        app = FastAPI()

        @app.post(path)
        async def hook(request: Request) -> Response:
            self.received.append(Received(dict(request.headers), await request.body(), time.time()))
            return Response(status_code=204)

        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> None:
        self._thread.start()
        while not self._server.started:
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)

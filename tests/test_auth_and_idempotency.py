"""API keys and tenants, idempotent triggers, and the request size limit, over real HTTP."""

from __future__ import annotations

import asyncio

import httpx


async def test_missing_or_wrong_key_is_401(swarm_factory) -> None:
    swarm = await swarm_factory(worker=False)
    anonymous = httpx.AsyncClient(base_url=str(swarm.api.base_url))
    try:
        for method, path in (("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/job_x")):
            response = await anonymous.request(method, path, json={"task": "x"})
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "swarmkeep keys create" in response.json()["detail"]
        wrong = await anonymous.get("/v1/jobs", headers={"Authorization": "Bearer sk_wrong"})
        assert wrong.status_code == 401
        via_header = await anonymous.get("/v1/jobs", headers={"X-API-Key": swarm.key.key})
        assert via_header.status_code == 200
    finally:
        await anonymous.aclose()


async def test_other_tenants_jobs_do_not_exist_for_you(swarm_factory) -> None:
    swarm = await swarm_factory(worker=False)
    job_id = await swarm.submit("tenant A's secret plan")
    other = await swarm.new_key("tenant-b")
    headers = {"Authorization": f"Bearer {other.key}"}
    for method, path in (
        ("GET", f"/v1/jobs/{job_id}"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
        ("GET", f"/v1/jobs/{job_id}/wait?timeout=0"),
        ("GET", f"/v1/jobs/{job_id}/events"),
        ("GET", f"/v1/jobs/{job_id}/callbacks"),
    ):
        response = await swarm.api.request(method, path, headers=headers)
        assert response.status_code == 404, (method, path, response.text)
        assert "secret plan" not in response.text
    listing = await swarm.api.get("/v1/jobs", headers=headers)
    assert listing.json()["items"] == []
    assert (await swarm.job(job_id))["status"] == "queued"  # untouched


async def test_revoked_key_is_refused(swarm_factory) -> None:
    from swarmkeep.store.engine import session_scope
    from swarmkeep.store.keys import revoke_key

    swarm = await swarm_factory(worker=False)
    async with session_scope(swarm.settings.effective_database_url) as session:
        await revoke_key(session, swarm.key.row.id)
    assert (await swarm.api.get("/v1/jobs")).status_code == 401


async def test_five_identical_triggers_make_one_job(swarm_factory) -> None:
    swarm = await swarm_factory(worker=False)
    body = {"task": "Summarise the quarter.", "metadata": {"source": "n8n"}}
    headers = {"Idempotency-Key": "order-42"}
    responses = await asyncio.gather(*(swarm.api.post("/v1/jobs", json=body, headers=headers) for _ in range(5)))
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1, [r.text for r in responses]
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 200, 200, 202]
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 4
    listing = (await swarm.api.get("/v1/jobs")).json()["items"]
    assert [item["id"] for item in listing] == list(ids)
    workflows = [w async for w in swarm.client.list_workflows(f"WorkflowId = '{ids.pop()}'")]
    assert len(workflows) == 1

    conflict = await swarm.api.post("/v1/jobs", json={**body, "task": "Something else."}, headers=headers)
    assert conflict.status_code == 409
    assert "different request body" in conflict.json()["detail"]


async def test_same_idempotency_key_in_two_tenants_is_two_jobs(swarm_factory) -> None:
    swarm = await swarm_factory(worker=False)
    other = await swarm.new_key("tenant-b")
    body, key = {"task": "x"}, {"Idempotency-Key": "shared"}
    first = await swarm.api.post("/v1/jobs", json=body, headers=key)
    second = await swarm.api.post("/v1/jobs", json=body, headers={**key, "Authorization": f"Bearer {other.key}"})
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] != second.json()["id"]


async def test_oversized_body_is_413(swarm_factory) -> None:
    swarm = await swarm_factory(worker=False, max_request_bytes=2048)
    response = await swarm.api.post("/v1/jobs", json={"task": "x" * 5000})
    assert response.status_code == 413
    assert "larger than 2048 bytes" in response.json()["detail"]

    async def chunks():
        for _ in range(10):
            yield b" " * 1000

    streamed = await swarm.api.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert (await swarm.api.get("/v1/jobs")).json()["items"] == []

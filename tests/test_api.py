"""The HTTP API over real HTTP: statuses, validation, listing, health and the OpenAPI document."""

from __future__ import annotations


async def test_submit_answers_202_with_links(swarm_factory) -> None:
    swarm = await swarm_factory(worker=False)
    response = await swarm.api.post("/v1/jobs", json={"task": "Plan a trip.", "metadata": {"run": 7}})
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["metadata"] == {"run": 7}
    assert job["links"]["temporal_ui"] is None  # an operator setting exposes it (tests/test_compose.py)
    # the workflow id is the job id
    description = await swarm.client.get_workflow_handle(job["id"]).describe()
    assert description.id == job["id"]


async def test_unknown_job_is_404(swarm_factory) -> None:
    swarm = await swarm_factory(worker=False)
    for method, path in (("GET", "/v1/jobs/job_nope"), ("POST", "/v1/jobs/job_nope/cancel")):
        response = await swarm.api.request(method, path)
        assert response.status_code == 404
        assert "job_nope" in response.json()["detail"]


async def test_invalid_body_is_422_naming_the_field(swarm_factory) -> None:
    swarm = await swarm_factory(worker=False)
    response = await swarm.api.post("/v1/jobs", json={"task": ""})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "task"]
    response = await swarm.api.post("/v1/jobs", json={"task": "x", "max_parallel": 500})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "max_parallel"]
    response = await swarm.api.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


async def test_list_filters_by_status_and_paginates(swarm_factory) -> None:
    swarm = await swarm_factory(worker=False)
    ids = [await swarm.submit(f"task {i}") for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, "status": "queued"} | ({"cursor": cursor} if cursor else {})
        page = (await swarm.api.get("/v1/jobs", params=params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert (await swarm.api.get("/v1/jobs", params={"status": "succeeded"})).json()["items"] == []
    bad = await swarm.api.get("/v1/jobs", params={"status": "bogus"})
    assert bad.status_code == 422


async def test_health_readiness_and_openapi(swarm_factory) -> None:
    swarm = await swarm_factory(worker=False)
    assert (await swarm.api.get("/healthz")).json() == {"status": "ok"}
    assert (await swarm.api.get("/readyz")).json() == {"status": "ready"}
    spec = (await swarm.api.get("/openapi.json")).json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel"} <= set(spec["paths"])

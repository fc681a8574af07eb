"""Signed callbacks (Standard Webhooks), the SSRF guard at submission, long-poll wait and server-sent events."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.receiver import WebhookReceiver
from tests.support.scripted_llm import Script, fan_out_plan


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.stop()


async def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.2)


async def test_callback_is_signed_and_verifies(swarm_factory, receiver) -> None:
    receiver.start()
    swarm = await swarm_factory(callback_allow=["127.0.0.1"])
    swarm.llm.reset(Script(plans=[fan_out_plan(3)], steps_to_conclude=1))
    job_id = await swarm.submit(callback_url=receiver.url, progress_callbacks=True)
    job = await swarm.wait(job_id)
    assert job["status"] == "succeeded"
    await wait_for(lambda: any(json.loads(r.body)["type"] == "job.succeeded" for r in receiver.received))
    await wait_for(lambda: len(receiver.received) == 4)  # three subtask.finished and one job.succeeded
    verifier = Webhook(swarm.key.webhook_secret)
    events = []
    for request in receiver.received:
        payload = verifier.verify(request.body, request.headers)  # the reference verifier raises if wrong
        events.append(payload["type"])
        assert request.headers["webhook-id"].startswith(f"msg_{job_id}_")
    assert sorted(events) == ["job.succeeded"] + ["subtask.finished"] * 3
    final = next(json.loads(r.body) for r in receiver.received if json.loads(r.body)["type"] == "job.succeeded")
    assert final["data"]["result"]["synthesis"]
    log = (await swarm.api.get(f"/v1/jobs/{job_id}/callbacks")).json()["items"]
    assert len(log) == 4 and all(item["delivered"] and item["status_code"] == 204 for item in log)


async def test_receiver_down_for_two_minutes_still_gets_it_with_the_same_id(swarm_factory, receiver) -> None:
    swarm = await swarm_factory(callback_allow=["127.0.0.1"], callback_initial_retry_s=1.0, callback_max_retry_s=8.0)
    swarm.llm.reset(Script(plans=[fan_out_plan(1)], steps_to_conclude=1))
    job_id = await swarm.submit(callback_url=receiver.url)  # nothing listens on the receiver's port yet
    await swarm.wait(job_id)
    down_since = time.monotonic()
    await wait_for(lambda: len(_attempts_sync(swarm, job_id)) >= 3, timeout=60)
    await asyncio.sleep(max(0.0, 120 - (time.monotonic() - down_since)))
    receiver.start()
    await wait_for(lambda: len(receiver.received) == 1, timeout=60)
    log = (await swarm.api.get(f"/v1/jobs/{job_id}/callbacks")).json()["items"]
    assert {item["webhook_id"] for item in log} == {receiver.received[0].headers["webhook-id"]}
    assert [item["delivered"] for item in log][-1] is True
    assert not any(item["delivered"] for item in log[:-1])
    assert [item["attempt"] for item in log] == list(range(1, len(log) + 1))
    Webhook(swarm.key.webhook_secret).verify(receiver.received[0].body, receiver.received[0].headers)


def _attempts_sync(swarm, job_id: str) -> list[dict]:
    import httpx

    response = httpx.get(
        f"{swarm.api.base_url}/v1/jobs/{job_id}/callbacks", headers={"Authorization": f"Bearer {swarm.key.key}"}
    )
    return response.json()["items"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://localhost/hook",
    ],
)
async def test_internal_callback_urls_are_refused_at_submission(swarm_factory, url: str) -> None:
    swarm = await swarm_factory(worker=False)
    response = await swarm.api.post("/v1/jobs", json={"task": "x", "callback_url": url})
    assert response.status_code == 403  # well-formed, but a destination callbacks may not reach
    assert "SWARMKEEP_CALLBACK_ALLOW" in response.json()["detail"] or "metadata" in response.json()["detail"]
    assert (await swarm.api.get("/v1/jobs")).json()["items"] == []


async def test_key_default_callback_url_is_checked_at_delivery(swarm_factory) -> None:
    swarm = await swarm_factory()
    swarm.llm.reset(Script(plans=[fan_out_plan(1)], steps_to_conclude=1))
    key = await swarm.new_key("tenant-a", callback_url="http://10.0.0.1/hook")
    response = await swarm.api.post("/v1/jobs", json={"task": "x"}, headers={"Authorization": f"Bearer {key.key}"})
    job_id = response.json()["id"]
    await swarm.wait(job_id)
    await wait_for(lambda: len(_attempts_sync(swarm, job_id)) == 1)
    (attempt,) = _attempts_sync(swarm, job_id)
    assert not attempt["delivered"] and "private address" in attempt["error"]


async def test_wait_returns_when_the_job_ends(swarm_factory) -> None:
    swarm = await swarm_factory()
    swarm.llm.reset(Script(plans=[fan_out_plan(2)], steps_to_conclude=2, subagent_delay_s=0.5))
    job_id = await swarm.submit()
    early = await swarm.api.get(f"/v1/jobs/{job_id}/wait", params={"timeout": 0.2})
    assert early.status_code == 200 and early.json()["status"] not in ("succeeded", "failed", "canceled")
    done = await swarm.api.get(f"/v1/jobs/{job_id}/wait", params={"timeout": 60})
    assert done.json()["status"] == "succeeded"
    assert done.json()["result"]["subtasks"]


async def test_events_stream_progress_until_the_end(swarm_factory) -> None:
    swarm = await swarm_factory()
    swarm.llm.reset(Script(plans=[fan_out_plan(2)], steps_to_conclude=2, subagent_delay_s=0.3))
    job_id = await swarm.submit()
    events: list[tuple[str, dict]] = []
    async with swarm.api.stream("GET", f"/v1/jobs/{job_id}/events", timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event:
                events.append((event, json.loads(line.split(":", 1)[1])))
                if event == "end":
                    break
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "end" and events[-1][1]["status"] == "succeeded"
    statuses = [data["status"] for kind, data in events if kind == "job"]
    assert statuses[-1] == "succeeded" and len(statuses) >= 2

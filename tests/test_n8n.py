"""A real n8n (2.x, Node 24) with the built n8n-nodes-swarmkeep package runs swarms against a live swarmkeep,
in both wait modes: polling, and sleeping until swarmkeep's signed callback resumes it."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarmkeep.services.process import ManagedProcess, free_port
from tests.support.scripted_llm import Script, fan_out_plan

pytestmark = pytest.mark.n8n

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "n8n-nodes" / "examples"


@pytest.fixture(scope="module")
def n8n_env() -> dict[str, str]:
    """Install (cached under ~/.cache/swarmkeep, keyed by version) and build; the environment that runs n8n."""
    script = ROOT / "scripts" / "n8n.sh"
    for step in ("install", "build"):
        subprocess.run(["bash", str(script), step], check=True, timeout=1500)
    exports = subprocess.run(["bash", str(script), "env"], check=True, capture_output=True, text=True).stdout
    env = dict(os.environ)
    for line in exports.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = os.path.expandvars(value.strip('"').replace("$PATH", env["PATH"]))
    return env


def unflatten(text: str) -> Any:
    """Decode n8n's stored execution data (the "flatted" format: a table of values that refer to each other)."""
    table = json.loads(text)
    cache: dict[int, Any] = {}

    def get(index: int) -> Any:
        if index in cache:
            return cache[index]
        value = table[index]
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            cache[index] = out
            out.update({k: get(int(v)) if isinstance(v, str) else v for k, v in value.items()})
            return out
        if isinstance(value, list):
            items: list[Any] = []
            cache[index] = items
            items.extend(get(int(v)) if isinstance(v, str) else v for v in value)
            return items
        cache[index] = value
        return value

    return get(0)


def raw_output(stdout: str) -> dict[str, Any]:
    """`n8n execute --rawOutput` prints log lines, then the run as JSON from a line that is exactly `{`."""
    start = stdout.index("\n{\n") + 1 if not stdout.startswith("{") else 0
    return json.JSONDecoder().raw_decode(stdout[start:])[0]


def swarmkeep_items(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [item["json"] for item in run["data"]["resultData"]["runData"]["Swarmkeep"][-1]["data"]["main"][0]]


def prepare_folder(folder: Path, env: dict[str, str], api_url: str, key: str, secret: str, port: int) -> dict[str, str]:
    env = env | {
        "N8N_USER_FOLDER": str(folder),
        "N8N_ENCRYPTION_KEY": "swarmkeep-test",
        "N8N_DIAGNOSTICS_ENABLED": "false",
        "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
        "N8N_LISTEN_ADDRESS": "127.0.0.1",
        "N8N_PORT": str(port),
        "WEBHOOK_URL": f"http://127.0.0.1:{port}/",
        "N8N_RUNNERS_BROKER_PORT": str(free_port()),
    }
    credentials = json.loads((EXAMPLES / "credentials.template.json").read_text())
    credentials[0]["data"] = {"baseUrl": api_url, "apiKey": key, "webhookSecret": secret}
    (folder / "credentials.json").write_text(json.dumps(credentials))
    subprocess.run(["n8n", "import:credentials", f"--input={folder / 'credentials.json'}"], env=env, check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    for name in ("run-swarm-poll.json", "run-swarm-resume-on-callback.json"):
        workflow = (EXAMPLES / name).read_text().replace('"n8n-nodes-swarmkeep.', '"CUSTOM.')
        (folder / name).write_text(workflow)
        subprocess.run(["n8n", "import:workflow", f"--input={folder / name}"], env=env, check=True,
                       capture_output=True, timeout=300)  # fmt: skip
    return env


async def test_n8n_runs_a_swarm_in_both_wait_modes(swarm_factory, n8n_env, tmp_path: Path) -> None:
    swarm = await swarm_factory(callback_allow=["127.0.0.1"])
    swarm.llm.reset(Script(plans=[fan_out_plan(3)], steps_to_conclude=1))
    port = free_port()
    env = await asyncio.to_thread(
        prepare_folder, tmp_path, n8n_env, str(swarm.api.base_url), swarm.key.key, swarm.key.webhook_secret, port
    )

    # Poll until done: n8n long-polls /wait and returns the finished job as an item.
    poll = await asyncio.to_thread(
        subprocess.run,
        ["n8n", "execute", "--id", "swarmkeepPoll001", "--rawOutput"],
        env=env | {"N8N_RUNNERS_BROKER_PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert poll.returncode == 0, poll.stdout[-3000:] + poll.stderr[-3000:]
    (job,) = swarmkeep_items(raw_output(poll.stdout))
    assert job["status"] == "succeeded"
    assert job["result"]["synthesis"].startswith("Final answer")
    assert {s["id"] for s in job["result"]["subtasks"]} == {"s1", "s2", "s3"}

    # Resume on callback: the execution sleeps; swarmkeep's signed callback to n8n's resume URL wakes it.
    server = ManagedProcess("n8n", ["n8n", "start"], tmp_path / "n8n.log", env=env)
    server.start()
    try:
        server.wait_until(lambda: _ready(port), 180, "ready")
        waiting = await asyncio.to_thread(
            subprocess.run,
            ["n8n", "execute", "--id", "swarmkeepCback01", "--rawOutput"],
            env=env | {"N8N_RUNNERS_BROKER_PORT": str(free_port())},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert waiting.returncode == 0, waiting.stdout[-3000:]
        assert '"status": "waiting"' in waiting.stdout or '"waitTill"' in waiting.stdout
        data = await asyncio.to_thread(_finished_execution, tmp_path / ".n8n" / "database.sqlite", "swarmkeepCback01")
    finally:
        server.stop()
    (job,) = swarmkeep_items(data)
    assert job["status"] == "succeeded"
    assert {s["id"] for s in job["result"]["subtasks"]} == {"s1", "s2", "s3"}
    listing = (await swarm.api.get("/v1/jobs")).json()["items"]
    callback_job = listing[0]["id"]

    # A person's answer handed in through the node completes a human subtask, and the job finishes.
    human_job = await swarm.submit(human_subtasks=[{"id": "approve", "instruction": "Approve the plan."}])
    for _ in range(100):
        if (await swarm.api.get("/v1/tasks")).json()["items"]:
            break
        await asyncio.sleep(0.2)
    (tmp_path / "human.json").write_text(json.dumps(human_workflow(human_job, "approve")))
    completed = await asyncio.to_thread(
        subprocess.run,
        ["n8n", "import:workflow", f"--input={tmp_path / 'human.json'}"],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert completed.returncode == 0
    answered = await asyncio.to_thread(
        subprocess.run,
        ["n8n", "execute", "--id", "swarmkeepHuman01", "--rawOutput"],
        env=env | {"N8N_RUNNERS_BROKER_PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert answered.returncode == 0, answered.stdout[-3000:]
    human = await swarm.wait(human_job)
    assert human["status"] == "succeeded"
    approve = {s["id"]: s for s in human["subtasks"]}["approve"]
    assert (approve["conclusion"], approve["worker"]) == ("Approved by n8n.", "person: n8n form")
    deliveries = (await swarm.api.get(f"/v1/jobs/{callback_job}/callbacks")).json()["items"]
    assert any(d["delivered"] and d["url"].startswith(f"http://127.0.0.1:{port}/webhook-waiting/") for d in deliveries)


def human_workflow(job_id: str, subtask_id: str) -> dict[str, Any]:
    """An n8n workflow in which a person's answer (here fixed; in practice an n8n Form) completes a subtask."""
    return {
        "id": "swarmkeepHuman01",
        "name": "Swarmkeep: complete a human subtask",
        "active": False,
        "settings": {},
        "nodes": [
            {"id": "h1", "name": "Manual Trigger", "type": "n8n-nodes-base.manualTrigger", "typeVersion": 1,
             "position": [0, 0], "parameters": {}},
            {"id": "h2", "name": "Swarmkeep", "type": "CUSTOM.swarmkeep", "typeVersion": 1, "position": [220, 0],
             "parameters": {"resource": "task", "operation": "complete", "jobId": job_id, "subtaskId": subtask_id,
                            "conclusion": "Approved by n8n.", "completedBy": "n8n form"},
             "credentials": {"swarmkeepApi": {"id": "swarmkeepCred01", "name": "Swarmkeep local"}}},
        ],
        "connections": {"Manual Trigger": {"main": [[{"node": "Swarmkeep", "type": "main", "index": 0}]]}},
    }  # fmt: skip


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz/readiness", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _finished_execution(database: Path, workflow_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(database) as db:
            row = db.execute(
                "select e.status, d.data from execution_entity e join execution_data d on d.executionId = e.id "
                "where e.workflowId = ? order by e.id desc limit 1",
                (workflow_id,),
            ).fetchone()
        if row and row[0] in ("success", "error", "crashed"):
            assert row[0] == "success", row[0]
            return {"data": unflatten(row[1])}
        time.sleep(1)
    raise AssertionError(f"the n8n execution of {workflow_id} did not finish in {timeout}s")

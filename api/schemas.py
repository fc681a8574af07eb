"""Request and response models of the HTTP API (never the database rows themselves)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

# Text the job store keeps must not hold NUL: PostgreSQL's text type cannot store it.
NO_NUL = r"^[^\x00]*$"
# An http(s) URL without credentials; the SSRF guard checks where it leads when a job is submitted.
HTTP_URL = r"^https?://[^\s/?#@\x00]+([/?#][^\s\x00]*)?$"


def _integral(value: object) -> object:
    """JSON Schema counts 227.0 as an integer: take it as 227, but not a string, a bool or 227.5."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _aware(moment: datetime) -> datetime:
    """Every time the API returns is timezone-aware UTC (RFC 3339); a naive one is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


Text = Annotated[str, Field(pattern=NO_NUL)]
UTCDatetime = Annotated[datetime, AfterValidator(_aware)]


class RequestModel(BaseModel):
    """A request body: types as the schema says them (no "1" for 1, no 0 for false), finite numbers, no NUL."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)


class HumanSubtaskIn(RequestModel):
    """A subtask the caller gives to a person."""

    id: str = Field(..., pattern=r"^[A-Za-z0-9_-]{1,32}$")
    instruction: Text = Field(..., min_length=1, max_length=2000)


class JobCreate(RequestModel):
    """A task for the swarm."""

    task: Text = Field(..., min_length=1, max_length=20_000, description="What the swarm should do.")
    max_parallel: int | None = Field(
        None, ge=1, le=300, description="Most sub-agents at once for this job (at most the server's limit)."
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Anything the caller wants echoed back.")
    callback_url: str | None = Field(
        None,
        max_length=2000,
        pattern=HTTP_URL,
        description="Where to POST a signed (Standard Webhooks) callback on each terminal state; "
        "defaults to the key's callback URL. Public http(s) addresses only, unless the operator allows others.",
    )
    progress_callbacks: bool = Field(False, description="Also send a `subtask.finished` callback per subtask.")
    max_tokens: int | None = Field(
        None, ge=1, le=1_000_000_000, description="Token budget; the job ends partial when it is reached."
    )
    max_cost_usd: float | None = Field(
        None, gt=0, le=1_000_000, description="Cost budget in USD (prices from settings)."
    )
    deadline_s: float | None = Field(
        None, gt=0, le=30 * 86_400, description="Seconds the job may run before it ends partial (at most 30 days)."
    )
    allow_humans: bool = Field(False, description="Let the plan give subtasks to a person (see GET /v1/tasks).")
    human_subtasks: list[HumanSubtaskIn] = Field(
        default_factory=list, max_length=50, description="Subtasks the caller gives to people, besides the plan."
    )

    @field_validator("max_parallel", "max_tokens", mode="before")
    @classmethod
    def _whole_numbers(cls, value: object) -> object:
        return _integral(value)


class Progress(BaseModel):
    subtasks_total: int = 0
    pending: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    retries: int = 0
    stage: int = 0
    stages_total: int = 0
    waiting_for_model: int = Field(
        0,
        description="Running calls (sub-agents, orchestrator) queued for a slot at the model, as their last "
        "heartbeat said; not stalled. Counted while the job runs.",
    )


class SubtaskView(BaseModel):
    id: str
    role: str
    instruction: str
    depends_on: list[str]
    stage: int
    status: str
    attempts: int
    steps: int
    tokens: int
    conclusion: str | None = None
    error: str | None = None
    worker: str | None = Field(None, description="The worker (or person) whose run produced the conclusion.")
    lane: str | None = Field(
        None, description="Which run produced the conclusion: primary, hedge, reassigned, regenerated."
    )
    history: list[dict[str, Any]] = Field(default_factory=list, description="Recovery and hedging events, in order.")


class ArtifactView(BaseModel):
    """A file a sub-agent produced; `url` downloads it (with the same key)."""

    name: str
    subtask_id: str
    size: int
    content_type: str
    url: str


class JobResult(BaseModel):
    synthesis: str | None
    subtasks: list[SubtaskView]
    artifacts: list[ArtifactView] = Field(default_factory=list)


class Links(BaseModel):
    self: str
    cancel: str
    wait: str
    events: str
    callbacks: str
    temporal_ui: str | None = Field(
        None, description="The job's page in the Temporal UI, only where the operator exposes it to tenants."
    )


class JobView(BaseModel):
    """A job as the API shows it: status, progress, metrics, and (when done) the result."""

    id: str
    status: str
    task: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: UTCDatetime
    started_at: UTCDatetime | None = None
    finished_at: UTCDatetime | None = None
    progress: Progress
    metrics: dict[str, Any] = Field(default_factory=dict)
    subtasks: list[SubtaskView] = Field(default_factory=list)
    result: JobResult | None = None
    error: str | None = None
    partial: bool = Field(False, description="True when a budget stopped the job and the result covers part of it.")
    partial_reason: str | None = None
    links: Links


class JobSummary(BaseModel):
    id: str
    status: str
    task: str
    created_at: UTCDatetime
    finished_at: UTCDatetime | None = None
    links: Links


class JobList(BaseModel):
    items: list[JobSummary]
    next_cursor: str | None = Field(None, description="Pass as `cursor` to get the next page; null at the end.")


class Problem(BaseModel):
    detail: str


class CallbackDeliveryView(BaseModel):
    """One delivery attempt of a signed callback."""

    webhook_id: str
    event_type: str
    attempt: int
    url: str
    status_code: int | None
    delivered: bool
    error: str | None
    created_at: UTCDatetime


class CallbackDeliveryList(BaseModel):
    items: list[CallbackDeliveryView]


class HumanTask(BaseModel):
    """A subtask waiting for a person: what to do, what it builds on, and where to hand in the answer."""

    job_id: str
    subtask_id: str
    task: str
    instruction: str
    depends_on: list[str]
    deadline: UTCDatetime | None
    links: dict[str, str]


class HumanTaskList(BaseModel):
    items: list[HumanTask]


class HumanConclusion(RequestModel):
    conclusion: Text = Field(..., min_length=1, max_length=20_000)
    completed_by: Text = Field("", max_length=200, description="Who answered (shown in the job's record).")

"""Request and response models of the HTTP API (never the database rows themselves)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class HumanSubtaskIn(BaseModel):
    """A subtask the caller gives to a person."""

    id: str = Field(..., pattern=r"^[A-Za-z0-9_-]{1,32}$")
    instruction: str = Field(..., min_length=1, max_length=2000)


class JobCreate(BaseModel):
    """A task for the swarm."""

    task: str = Field(..., min_length=1, max_length=20_000, description="What the swarm should do.")
    max_parallel: int | None = Field(
        None, ge=1, le=300, description="Most sub-agents at once for this job (at most the server's limit)."
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Anything the caller wants echoed back.")
    callback_url: str | None = Field(
        None,
        max_length=2000,
        description="Where to POST a signed (Standard Webhooks) callback on each terminal state; "
        "defaults to the key's callback URL.",
    )
    progress_callbacks: bool = Field(False, description="Also send a `subtask.finished` callback per subtask.")
    max_tokens: int | None = Field(None, ge=1, description="Token budget; the job ends partial when it is reached.")
    max_cost_usd: float | None = Field(None, gt=0, description="Cost budget in USD (prices from settings).")
    deadline_s: float | None = Field(None, gt=0, description="Seconds the job may run before it ends partial.")
    allow_humans: bool = Field(False, description="Let the plan give subtasks to a person (see GET /v1/tasks).")
    human_subtasks: list[HumanSubtaskIn] = Field(
        default_factory=list, max_length=50, description="Subtasks the caller gives to people, besides the plan."
    )


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
    temporal_ui: str


class JobView(BaseModel):
    """A job as the API shows it: status, progress, metrics, and (when done) the result."""

    id: str
    status: str
    task: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
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
    created_at: datetime
    finished_at: datetime | None = None
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
    created_at: datetime


class CallbackDeliveryList(BaseModel):
    items: list[CallbackDeliveryView]


class HumanTask(BaseModel):
    """A subtask waiting for a person: what to do, what it builds on, and where to hand in the answer."""

    job_id: str
    subtask_id: str
    task: str
    instruction: str
    depends_on: list[str]
    deadline: datetime | None
    links: dict[str, str]


class HumanTaskList(BaseModel):
    items: list[HumanTask]


class HumanConclusion(BaseModel):
    conclusion: str = Field(..., min_length=1, max_length=20_000)
    completed_by: str = Field("", max_length=200, description="Who answered (shown in the job's record).")

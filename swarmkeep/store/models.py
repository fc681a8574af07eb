"""Job store rows: jobs, subtasks and notebook entries (one row per sub-agent step)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint, false
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # A naive value is taken as UTC, as utcnow() and the rows read back are.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base whose metadata Alembic reads."""

    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class JobStatus:
    """The states a job moves through; the last three are terminal."""

    QUEUED = "queued"
    PLANNING = "planning"
    RUNNING = "running"
    SYNTHESIZING = "synthesizing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    ALL = (QUEUED, PLANNING, RUNNING, SYNTHESIZING, SUCCEEDED, FAILED, CANCELED)
    TERMINAL = (SUCCEEDED, FAILED, CANCELED)


class SubtaskStatus:
    """The states of one subtask of a plan."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"  # a human subtask, until its person answers or its deadline passes
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class Job(Base):
    """One swarm run: one workflow execution, keyed by the same id."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), default="local", server_default="local", index=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED, index=True)
    task: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    callback_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    api_key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    plan: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    synthesis: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    partial: Mapped[bool] = mapped_column(default=False, server_default=false())
    partial_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    subtasks: Mapped[list[Subtask]] = relationship(
        back_populates="job", cascade="all, delete-orphan", order_by="Subtask.position"
    )


class Subtask(Base):
    """One unit of a job's plan, worked on by one sub-agent (over one or more attempts)."""

    __tablename__ = "subtasks"
    __table_args__ = (UniqueConstraint("job_id", "subtask_id", name="uq_subtasks_job_subtask"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    subtask_id: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer, default=0)
    stage: Mapped[int] = mapped_column(Integer, default=0)
    role: Mapped[str] = mapped_column(String(32))
    instruction: Mapped[str] = mapped_column(Text)
    depends_on: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=SubtaskStatus.PENDING)
    lane: Mapped[str | None] = mapped_column(String(16), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Recovery and hedging events, in order: [{"event": "reassigned", "role": ..., "error": ...}, ...]
    history: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default="[]")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    steps: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    conclusion: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    job: Mapped[Job] = relationship(back_populates="subtasks")


class NotebookEntry(Base):
    """One step of a sub-agent: what it was asked and what it answered, private to that sub-agent."""

    __tablename__ = "notebook_entries"
    __table_args__ = (
        UniqueConstraint("job_id", "subtask_id", "lane", "step", name="uq_notebook_lane_step"),
        Index("ix_notebook_job_subtask", "job_id", "subtask_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    subtask_id: Mapped[str] = mapped_column(String(64))
    # A subtask's runs each keep their own notebook lane: primary, hedge, reassigned, regenerated.
    lane: Mapped[str] = mapped_column(String(16), default="primary", server_default="primary")
    step: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    prompt: Mapped[str] = mapped_column(Text)
    response: Mapped[str] = mapped_column(Text)
    reasoning: Mapped[str | None] = mapped_column(Text, nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    # The exact messages the step added (the assistant turn with its tool calls, then the tool results), so a
    # retry can resume the conversation as it was.
    messages: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Artifact(Base):
    """A file a sub-agent produced, kept in the artifact store and downloadable through the API."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("job_id", "name", name="uq_artifacts_job_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    subtask_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer, default=0)
    content_type: Mapped[str] = mapped_column(String(128), default="application/octet-stream")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKey(Base):
    """A caller's key: only its hash is stored; jobs belong to the key's tenant."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Signing needs the secret itself, so unlike the key it is stored as issued.
    webhook_secret: Mapped[str] = mapped_column(String(128))
    callback_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Hosts, host:port pairs or networks this key's callbacks may reach although not public, besides the
    # operator's SWARMKEEP_CALLBACK_ALLOW.
    callback_allow: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class CallbackDelivery(Base):
    """One attempt to deliver a signed callback; the webhook id stays the same across a message's attempts."""

    __tablename__ = "callback_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    webhook_id: Mapped[str] = mapped_column(String(128), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# The tables themselves, for Core statements on the hot paths (sub-agents' and record_plan's writes), which skip
# the ORM's unit of work.
JOBS = cast(Table, Job.__table__)
SUBTASKS = cast(Table, Subtask.__table__)
NOTEBOOK = cast(Table, NotebookEntry.__table__)

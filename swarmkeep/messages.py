"""What workflows and activities hand each other: one dataclass in, one out, ids and short texts only.

Unlike the rest of the project, no postponed annotations here: Temporal's converter calls typing.get_type_hints on
every payload it decodes, and string annotations are compiled anew on each call (5x the cost, on some 600 payloads
of a 300-sub-agent job).
"""

from dataclasses import dataclass, field
from typing import Any

# The error type of an activity whose worker's job store does not have the job: that worker belongs to another
# swarmkeep stack polling the same Temporal server and task queue. A workflow that meets it ends failed at once.
JOB_NOT_IN_STORE = "JobNotInStore"


@dataclass
class JobLimits:
    """The limits a job runs under, fixed when it is submitted so a replay never sees other values."""

    max_parallel: int = 32
    min_subtasks: int = 3
    max_subtasks: int = 12
    max_steps: int = 4
    conclusion_chars: int = 1200
    subagent_attempts: int = 3
    subagent_timeout_s: float = 3600.0
    heartbeat_timeout_s: float = 60.0
    llm_timeout_s: float = 900.0  # the ceiling of one streamed LLM call; stalls fail sooner, on the idle timeout
    # Recovery after a sub-agent's attempts run out, and straggler hedging.
    reassign: bool = True
    regenerate: bool = True
    fallback_model: str = ""
    hedging: bool = True
    hedge_factor: float = 3.0
    hedge_min_s: float = 30.0
    # Budgets: when one is reached the job synthesises from what is done and ends partial.
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    deadline_s: float | None = None
    price_in_per_mtok: float = 0.0
    price_out_per_mtok: float = 0.0
    # Worker pools and people: per-role models, how long a sub-agent may wait for a worker of its role, and
    # whether the plan may give subtasks to a person (who has `human_deadline_s` before an agent takes over).
    role_models: dict[str, str] = field(default_factory=dict)
    schedule_to_start_s: float = 300.0
    allow_humans: bool = False
    human_deadline_s: float = 86_400.0


@dataclass
class CallbackPolicy:
    """How long and how often a callback is retried."""

    retry_hours: float = 24.0
    initial_interval_s: float = 2.0
    max_interval_s: float = 600.0


@dataclass
class JobInput:
    """Input of `SwarmWorkflow`: the job id (also the workflow id) and its limits; the task text is in the job row."""

    job_id: str
    limits: JobLimits = field(default_factory=JobLimits)
    callbacks: bool = False  # a callback URL is set: deliver a signed callback on each terminal state
    progress_callbacks: bool = False  # also one per finished subtask
    callback_policy: CallbackPolicy = field(default_factory=CallbackPolicy)
    search_attributes: bool = False  # the namespace has swarmkeep's search attributes: keep them current


@dataclass
class JobOutcome:
    """What `SwarmWorkflow` returns: the terminal status and a short preview of the result."""

    job_id: str
    status: str
    preview: str = ""
    error: str | None = None


@dataclass
class PlanRequest:
    """Ask the orchestrator for a plan; `feedback` carries the previous plan's validation error."""

    job_id: str
    min_subtasks: int
    max_subtasks: int
    attempt: int = 1
    feedback: str | None = None
    allow_humans: bool = False


@dataclass
class PlanItem:
    """One planned subtask without its instruction (that stays in the job store)."""

    id: str
    role: str
    depends_on: list[str] = field(default_factory=list)


@dataclass
class PlanOutcome:
    """The plan's shape, or why the model's answer could not be read as a plan."""

    subtasks: list[PlanItem] = field(default_factory=list)
    problem: str | None = None
    findings: list[str] = field(default_factory=list)  # plan guard findings: serial collapse, fake parallelism
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # On the last attempt, near-duplicates merged before the plan was stored: [{"kept": "s1", "merged": ["s4"]}]
    merged: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RecordPlanRequest:
    """Write the accepted plan's subtasks, with their stages, to the job store."""

    job_id: str
    stages: list[list[str]]
    attempt: int = 1  # which plan attempt was accepted


@dataclass
class DependencyConclusion:
    """A finished subtask's conclusion, as a dependant or the synthesis sees it."""

    subtask_id: str
    role: str
    status: str
    conclusion: str


@dataclass
class SubagentInput:
    """Input of `run_subagent`: which subtask, its limits, and its dependencies' conclusions."""

    job_id: str
    subtask_id: str
    max_steps: int
    conclusion_chars: int
    dependencies: list[DependencyConclusion] = field(default_factory=list)
    lane: str = "primary"  # each run of a subtask keeps its own notebook lane
    role: str | None = None  # set when the subtask is reassigned to another role
    model: str | None = None  # set when it is reassigned to another model


@dataclass
class SubagentResult:
    """What a sub-agent hands up: its conclusion, steps and token usage."""

    subtask_id: str
    conclusion: str
    steps: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempt: int = 1
    lane: str = "primary"
    role: str = ""
    transcript_chars: int = 0  # how much the sub-agent read and wrote; the orchestrator sees only the conclusion
    worker: str = ""  # which worker ran it
    loop_cut: bool = False  # the conclusion fell into a loop (one sentence again and again) and was cut there


@dataclass
class SubtaskRecord:
    """The final word on a subtask, written once by the workflow: which run won, or why it failed."""

    job_id: str
    subtask_id: str
    status: str
    lane: str | None = None
    role: str | None = None
    conclusion: str | None = None
    error: str | None = None
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    history: list[dict[str, str]] = field(default_factory=list)
    worker: str | None = None


@dataclass
class HumanAnswer:
    """A person's conclusion for a human subtask, handed in through the `complete_subtask` update."""

    subtask_id: str
    conclusion: str
    completed_by: str = ""


@dataclass
class WaitingForHuman:
    """Mark a human subtask as waiting for its person, until `deadline_s` from now."""

    job_id: str
    subtask_id: str
    deadline_s: float


@dataclass
class RegenerateRequest:
    """Ask the orchestrator to rewrite a subtask that failed, given how it failed."""

    job_id: str
    subtask_id: str
    error: str


@dataclass
class RegenerateOutcome:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class SynthesisRequest:
    """Ask the orchestrator to write the answer from the conclusions."""

    job_id: str
    conclusions: list[DependencyConclusion]


@dataclass
class SynthesisOutcome:
    preview: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    context_chars: int = 0  # the size of what the orchestrator read: the task and the conclusions
    loop_cut: bool = False  # the answer fell into a loop (one sentence again and again) and was cut there


@dataclass
class JobStatusUpdate:
    """Move a job to a new status; terminal statuses carry the error and metrics."""

    job_id: str
    status: str
    error: str | None = None
    metrics: dict[str, Any] | None = None
    partial_reason: str | None = None  # set when a budget stopped the job early


@dataclass
class JobProgress:
    """Answer of the `progress` query."""

    status: str
    stage: int = 0
    stages_total: int = 0
    subtasks_total: int = 0
    pending: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    retries: int = 0
    steps: int = 0


@dataclass
class CallbackInput:
    """One signed callback message; `webhook_id` stays the same across its delivery attempts."""

    job_id: str
    event_type: str
    webhook_id: str
    subtask_id: str | None = None
    policy: CallbackPolicy = field(default_factory=CallbackPolicy)

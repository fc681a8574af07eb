"""Workers: the orchestrator side (workflows, planning, job store, callbacks) and sub-agent pools by role.

A worker declares its capabilities with SWARMKEEP_WORKER_ROLES and SWARMKEEP_WORKER_ORCHESTRATOR; it polls the
workflow task queue if it orchestrates, and `<task_queue>.<role>` for each role it serves, so workers on other
machines, with other models and toolkits, join the same swarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from datetime import timedelta
from types import TracebackType

from temporalio.client import Client
from temporalio.worker import Worker

from swarmkeep.activities.callbacks import CallbackActivities
from swarmkeep.activities.jobstore import JobStoreActivities
from swarmkeep.activities.planner import PlannerActivities
from swarmkeep.activities.subagent import SubagentActivities
from swarmkeep.inference.client import LLMClient
from swarmkeep.roles import ROLES, queue_for
from swarmkeep.search_attributes import register as register_search_attributes
from swarmkeep.settings import Settings
from swarmkeep.store.migrate import require_migrated
from swarmkeep.temporal_client import connect
from swarmkeep.workflows.callback import DeliverCallbackWorkflow
from swarmkeep.workflows.swarm import SwarmWorkflow

log = logging.getLogger(__name__)


class SwarmWorkers:
    """The Temporal workers one process runs, started and stopped together."""

    def __init__(self, workers: list[Worker], roles: list[str], orchestrator: bool):
        self.workers = workers
        self.roles = roles
        self.orchestrator = orchestrator

    async def __aenter__(self) -> SwarmWorkers:
        for worker in self.workers:
            await worker.__aenter__()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await asyncio.gather(*(worker.__aexit__(kind, error, trace) for worker in self.workers))

    async def run(self) -> None:
        await asyncio.gather(*(worker.run() for worker in self.workers))


def build_worker(client: Client, settings: Settings, llm: LLMClient | None = None) -> SwarmWorkers:
    """The workers for this process's capabilities, wired to the settings' job store and LLM."""
    llm = llm or LLMClient.from_settings(settings)
    url = settings.effective_database_url
    # On shutdown, running activities get this long to finish before they are canceled; a canceled sub-agent's
    # steps are already in its notebook, so its next attempt (on another worker) resumes from them.
    graceful = timedelta(seconds=settings.worker_shutdown_s)
    roles = [role for role in ROLES if not settings.worker_roles or role in settings.worker_roles]
    workers: list[Worker] = []
    if settings.worker_orchestrator:
        store = JobStoreActivities(url)
        planner = PlannerActivities(url, llm, settings.llm_max_tokens)
        callbacks = CallbackActivities(settings)
        workers.append(
            Worker(
                client,
                task_queue=settings.task_queue,
                workflows=[SwarmWorkflow, DeliverCallbackWorkflow],
                activities=[
                    store.set_job_status,
                    store.record_plan,
                    store.record_subtask,
                    store.wait_for_human,
                    planner.plan_job,
                    planner.synthesize,
                    planner.regenerate_subtask,
                    callbacks.deliver_callback,
                ],
                max_concurrent_activities=100,
                max_concurrent_workflow_tasks=50,
                graceful_shutdown_timeout=graceful,
            )
        )
    subagents = SubagentActivities(settings, llm)
    for role in roles:
        workers.append(
            Worker(
                client,
                task_queue=queue_for(settings.task_queue, role),
                activities=[subagents.run_subagent],
                # By default, enough slots for every sub-agent of a full-width job. A worker with no free slot
                # has no poll open, so Temporal hands it no sub-agent it cannot start.
                max_concurrent_activities=settings.worker_subagents,
                graceful_shutdown_timeout=graceful,
            )
        )
    return SwarmWorkers(workers, roles, settings.worker_orchestrator)


def freeze_startup_heap() -> None:
    """Take everything allocated so far (modules, clients, workers) out of the garbage collector's full passes.

    A full collection walks every tracked object and pauses the event loop that runs every sub-agent and workflow
    task of this worker: with the start-up heap in it, about one per 300-sub-agent job, 0.12-0.15 s each; after
    the freeze, 5 ms (bench/swarm.py at N = 300). Objects made later are collected as usual."""
    gc.collect()
    gc.freeze()


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Check the job store, connect, and run the workers until `stop` is set (or forever)."""
    await require_migrated(settings.effective_database_url)
    client = await connect(settings)
    await register_search_attributes(client, settings.temporal_namespace)
    workers = build_worker(client, settings)
    freeze_startup_heap()
    log.info(
        "worker %s: %sroles %s, at %s",
        settings.effective_worker_name,
        "orchestrator and " if workers.orchestrator else "",
        ", ".join(workers.roles) or "none",
        settings.effective_temporal_address,
    )
    if stop is None:
        await workers.run()
        return
    async with workers:
        with contextlib.suppress(asyncio.CancelledError):
            await stop.wait()

"""The worker: polls the task queue and runs `SwarmWorkflow` and every activity."""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import Client
from temporalio.worker import Worker

from swarmkeep.activities.callbacks import CallbackActivities
from swarmkeep.activities.jobstore import JobStoreActivities
from swarmkeep.activities.planner import PlannerActivities
from swarmkeep.activities.subagent import SubagentActivities
from swarmkeep.inference.client import LLMClient
from swarmkeep.search_attributes import register as register_search_attributes
from swarmkeep.settings import HARD_MAX_PARALLEL, Settings
from swarmkeep.store.migrate import require_migrated
from swarmkeep.temporal_client import connect
from swarmkeep.workflows.callback import DeliverCallbackWorkflow
from swarmkeep.workflows.swarm import SwarmWorkflow

log = logging.getLogger(__name__)


def build_worker(client: Client, settings: Settings, llm: LLMClient | None = None) -> Worker:
    """A worker with the swarm workflow and activities wired to the settings' job store and LLM."""
    llm = llm or LLMClient.from_settings(settings)
    url = settings.effective_database_url
    store = JobStoreActivities(url)
    planner = PlannerActivities(url, llm, settings.llm_max_tokens)
    subagents = SubagentActivities(settings, llm)
    callbacks = CallbackActivities(settings)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[SwarmWorkflow, DeliverCallbackWorkflow],
        activities=[
            store.set_job_status,
            store.record_plan,
            store.record_subtask,
            planner.plan_job,
            planner.synthesize,
            planner.regenerate_subtask,
            subagents.run_subagent,
            callbacks.deliver_callback,
        ],
        # Enough slots for every sub-agent of a full-width job plus the bookkeeping around them.
        max_concurrent_activities=HARD_MAX_PARALLEL + 50,
        max_concurrent_workflow_tasks=50,
    )


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Check the job store, connect, and run the worker until `stop` is set (or forever)."""
    await require_migrated(settings.effective_database_url)
    client = await connect(settings)
    await register_search_attributes(client, settings.temporal_namespace)
    worker = build_worker(client, settings)
    log.info("worker polling task queue %r at %s", settings.task_queue, settings.effective_temporal_address)
    if stop is None:
        await worker.run()
        return
    async with worker:
        await stop.wait()

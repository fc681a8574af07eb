"""Replay a finished job's real history against the current workflow code: the check that keeps the unsandboxed
workflow deterministic."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Replayer

from swarmkeep.workflows.callback import DeliverCallbackWorkflow
from swarmkeep.workflows.swarm import SwarmWorkflow


async def assert_replays(client: Client, job_id: str) -> None:
    history = await client.get_workflow_handle(job_id).fetch_history()
    result = await Replayer(workflows=[SwarmWorkflow, DeliverCallbackWorkflow]).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert result.replay_failure is None, f"{job_id} does not replay: {result.replay_failure!r}"

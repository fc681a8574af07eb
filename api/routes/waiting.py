"""Waiting without polling loops: long-poll `/wait`, server-sent `/events`, and the callback log."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import select
from sse_starlette import EventSourceResponse, ServerSentEvent

from swarmkeep.api.deps import CurrentKey, SessionDep, SettingsDep, TemporalDep
from swarmkeep.api.routes.jobs import NOT_FOUND, tenant_job
from swarmkeep.api.schemas import CallbackDeliveryList, CallbackDeliveryView, JobView
from swarmkeep.api.views import job_view
from swarmkeep.store.engine import session_factory
from swarmkeep.store.models import CallbackDelivery, Job, JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_WAIT_S = 300.0
EVENT_INTERVAL_S = 1.0


@router.get("/{job_id}/wait", response_model=JobView, responses=NOT_FOUND)
async def wait_for_job(
    job_id: str,
    session: SessionDep,
    client: TemporalDep,
    settings: SettingsDep,
    key: CurrentKey,
    timeout: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait at most.")] = 30.0,
) -> JobView:
    """The job as soon as it is terminal, or as it stands when `timeout` passes (check `status`)."""
    job = await tenant_job(session, key, job_id)
    if job.status not in JobStatus.TERMINAL:
        # Temporal's own long poll on the workflow's result: no loop here either. Timed out, failed or
        # canceled, the job row says which.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.get_workflow_handle(job_id).result(), timeout)
        await session.refresh(job)
    return await job_view(session, client, job, settings)


@router.get(
    "/{job_id}/events",
    responses={**NOT_FOUND, 200: {"content": {"text/event-stream": {}}, "description": "Server-sent events."}},
)
async def job_events(
    job_id: str, request: Request, session: SessionDep, client: TemporalDep, settings: SettingsDep, key: CurrentKey
) -> EventSourceResponse:
    """Progress as server-sent events: `job` with the whole view when anything changes, `end` when terminal."""
    await tenant_job(session, key, job_id)
    make_session = session_factory(settings.effective_database_url)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        last = ""
        while not await request.is_disconnected():
            async with make_session() as events_session:
                job = await events_session.get(Job, job_id)
                assert job is not None
                view = await job_view(events_session, client, job, settings)
            payload = view.model_dump(mode="json")
            fingerprint = json.dumps({k: v for k, v in payload.items() if k != "metrics"}, sort_keys=True)
            if fingerprint != last:
                last = fingerprint
                yield ServerSentEvent(data=json.dumps(payload), event="job", id=f"{job_id}:{len(last)}")
            if view.status in JobStatus.TERMINAL:
                yield ServerSentEvent(data=json.dumps({"id": job_id, "status": view.status}), event="end")
                return
            await asyncio.sleep(EVENT_INTERVAL_S)

    return EventSourceResponse(stream(), ping=15)


@router.get("/{job_id}/callbacks", response_model=CallbackDeliveryList, responses=NOT_FOUND)
async def callback_deliveries(job_id: str, session: SessionDep, key: CurrentKey) -> CallbackDeliveryList:
    """Every delivery attempt of the job's signed callbacks, oldest first."""
    await tenant_job(session, key, job_id)
    rows = await session.scalars(
        select(CallbackDelivery).where(CallbackDelivery.job_id == job_id).order_by(CallbackDelivery.id)
    )
    return CallbackDeliveryList(
        items=[
            CallbackDeliveryView(
                webhook_id=row.webhook_id,
                event_type=row.event_type,
                attempt=row.attempt,
                url=row.url,
                status_code=row.status_code,
                delivered=row.delivered,
                error=row.error,
                created_at=row.created_at,
            )
            for row in rows.all()
        ]
    )

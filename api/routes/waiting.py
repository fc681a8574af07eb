"""Waiting without polling loops or held connections: long-poll `/wait`, server-sent `/events`, and the callback
log. Both waits read the job once, give their database session back, and then follow the job's one shared watcher
(api/job_watch.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from swarmkeep.api.deps import CurrentKey, SessionDep, SettingsDep, TemporalDep
from swarmkeep.api.job_watch import JobWatch, JobWatchers, job_watchers
from swarmkeep.api.routes.jobs import NOT_FOUND, tenant_job
from swarmkeep.api.schemas import CallbackDeliveryList, CallbackDeliveryView, JobView, Problem
from swarmkeep.api.views import job_view
from swarmkeep.store.models import CallbackDelivery, JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_WAIT_S = 300.0
WatchersDep = Annotated[JobWatchers, Depends(job_watchers)]
TOO_MANY_WAITS: dict[int | str, dict[str, Any]] = {
    429: {"model": Problem, "description": "This key holds its most open waits (SWARMKEEP_MAX_WAITS_PER_KEY)."}
}


@router.get("/{job_id}/wait", response_model=JobView, responses={**NOT_FOUND, **TOO_MANY_WAITS})
async def wait_for_job(
    job_id: str,
    request: Request,
    session: SessionDep,
    client: TemporalDep,
    settings: SettingsDep,
    key: CurrentKey,
    watchers: WatchersDep,
    timeout: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait at most.")] = 30.0,
) -> JobView:
    """The job as soon as it is terminal, or as it stands when `timeout` passes (check `status`)."""
    job = await tenant_job(session, key, job_id)
    if job.status in JobStatus.TERMINAL:
        return await job_view(session, client, job, settings)
    await session.close()  # its connection goes back to the pool for the whole wait
    with watchers.reserve(key.id):
        async with watchers.watch(job_id, client) as watch:
            # A caller that hangs up stops waiting at once, giving back its place under the key's cap.
            follow = asyncio.ensure_future(_until_terminal(watch, timeout))
            gone = asyncio.ensure_future(_disconnected(request))
            try:
                await asyncio.wait({follow, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                follow.cancel()
                gone.cancel()
            if watch.view is not None:
                return watch.view
    # The watch had no view yet (a timeout shorter than its first read) or lost the job: read it here.
    return await job_view(session, client, await tenant_job(session, key, job_id), settings)


async def _until_terminal(watch: JobWatch, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (watch.terminal or watch.ended):
        remaining = deadline - loop.time()
        if remaining <= 0 or not await watch.changed_since(watch.version, remaining):
            return


async def _disconnected(request: Request) -> None:
    """Return when the client closes the connection (the request has no body to read first)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.get(
    "/{job_id}/events",
    responses={
        **NOT_FOUND,
        **TOO_MANY_WAITS,
        200: {"content": {"text/event-stream": {}}, "description": "Server-sent events."},
    },
)
async def job_events(
    job_id: str, request: Request, session: SessionDep, client: TemporalDep, key: CurrentKey, watchers: WatchersDep
) -> EventSourceResponse:
    """Progress as server-sent events: `job` with the whole view when anything changes, `end` when terminal."""
    await tenant_job(session, key, job_id)
    await session.close()  # the stream holds no connection; the job's watcher reads for it
    slot = watchers.reserve(key.id)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        with slot:
            async with watchers.watch(job_id, client) as watch:
                version = 0
                while not await request.is_disconnected():
                    if watch.version > version and watch.view is not None:
                        version = watch.version
                        payload = watch.view.model_dump(mode="json")
                        yield ServerSentEvent(data=json.dumps(payload), event="job", id=f"{job_id}:{version}")
                    if watch.terminal or watch.ended:
                        status = watch.view.status if watch.view is not None else "unknown"
                        yield ServerSentEvent(data=json.dumps({"id": job_id, "status": status}), event="end")
                        return
                    await watch.changed_since(version, timeout=15.0)

    return EventSourceResponse(stream(), ping=15, background=BackgroundTask(slot.release))


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

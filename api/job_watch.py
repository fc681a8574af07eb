"""One shared watcher per waited-on job: `/wait` and `/events` subscribe to it and hold nothing of their own.

Each watcher is one asyncio task that re-reads its job (the row, and the workflow's progress while it runs) every
`watch_interval_s` in a short read session, and wakes at once when Temporal's long poll on the workflow's result
returns. Every waiter of that job sees the same view; the task ends with its last subscriber. Waits per API key
are counted here too, so one key cannot hold every open connection of the API process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import HTTPException, Request, status
from temporalio.client import Client

from swarmkeep.api.schemas import JobView
from swarmkeep.api.views import job_view
from swarmkeep.settings import Settings
from swarmkeep.store.engine import read_scope
from swarmkeep.store.models import Job, JobStatus

RETRY_AFTER_S = 5


def fingerprint(view: JobView) -> str:
    """What makes a view news to a waiter: everything but the running metrics, which change every second."""
    return json.dumps(view.model_dump(mode="json", exclude={"metrics"}), sort_keys=True)


class JobWatch:
    """The latest view of one job, re-read by one task for all its subscribers."""

    def __init__(self, job_id: str, settings: Settings, client: Client):
        self.job_id = job_id
        self.settings = settings
        self.client = client
        self.view: JobView | None = None
        self.version = 0
        self.error: Exception | None = None
        self.subscribers = 0
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"watch {job_id}")

    @property
    def terminal(self) -> bool:
        return self.view is not None and self.view.status in JobStatus.TERMINAL

    @property
    def ended(self) -> bool:
        """The watch re-reads no more: the job ended, vanished or could not be read (`error`)."""
        return self._task.done()

    async def changed_since(self, version: int, timeout: float | None = None) -> bool:
        """Wait until the view is newer than `version` (or the job ended); False when `timeout` passes first."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            # One deadline for the whole wait: the watcher's every read wakes us, most without news.
            async with asyncio.timeout_at(deadline):
                while self.version <= version and not self._task.done():
                    await self._changed.wait()
        except TimeoutError:
            return False
        return self.version > version

    def _publish(self, view: JobView) -> None:
        if self.view is None or fingerprint(view) != fingerprint(self.view):
            self.version += 1
        self.view = view
        # Waiters wake on this event; the next round waits on a fresh one.
        self._changed.set()
        self._changed = asyncio.Event()

    async def _read(self) -> JobView | None:
        async with read_scope(self.settings.effective_database_url) as session:
            job = await session.get(Job, self.job_id)
            return None if job is None else await job_view(session, self.client, job, self.settings)

    async def _run(self) -> None:
        # Temporal's long poll on the result ends a sleep as soon as the workflow closes; once it has answered
        # (or failed: no such workflow yet, or it failed), the watch just polls.
        result = asyncio.ensure_future(self.client.get_workflow_handle(self.job_id).result())
        try:
            while True:
                try:
                    view = await self._read()
                except Exception as error:  # the store is unreachable: waiters see the last view, and why
                    self.error = error
                    return
                if view is None:
                    return
                self._publish(view)
                if view.status in JobStatus.TERMINAL:
                    return
                if result.done():
                    await asyncio.sleep(self.settings.watch_interval_s)
                else:
                    await asyncio.wait({result}, timeout=self.settings.watch_interval_s)
        finally:
            if result.done() and not result.cancelled():
                result.exception()  # seen: a failed or canceled workflow's job row says which
            result.cancel()
            self._changed.set()

    def cancel(self) -> None:
        self._task.cancel()


class JobWatchers:
    """The watchers and per-key wait counts of one API process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.watches: dict[str, JobWatch] = {}
        self.waits_by_key: dict[int, int] = {}

    def reserve(self, key_id: int) -> WaitSlot:
        """Count one wait against the key; 429 with Retry-After when the key already holds its cap."""
        cap = self.settings.max_waits_per_key
        held = self.waits_by_key.get(key_id, 0)
        if held >= cap:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"This API key already holds {held} open /wait or /events calls, the most it may "
                f"(SWARMKEEP_MAX_WAITS_PER_KEY={cap}). Close some, or retry after {RETRY_AFTER_S} s.",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self.waits_by_key[key_id] = held + 1
        return WaitSlot(self, key_id)

    def _release(self, key_id: int) -> None:
        left = self.waits_by_key.get(key_id, 1) - 1
        if left > 0:
            self.waits_by_key[key_id] = left
        else:
            self.waits_by_key.pop(key_id, None)

    @asynccontextmanager
    async def watch(self, job_id: str, client: Client) -> AsyncIterator[JobWatch]:
        """Subscribe to the job's watcher, starting it if this is its first waiter."""
        watch = self.watches.get(job_id)
        if watch is None or (watch.ended and watch.error is not None):  # a failed read is retried by the next waiter
            watch = self.watches[job_id] = JobWatch(job_id, self.settings, client)
        watch.subscribers += 1
        try:
            yield watch
        finally:
            watch.subscribers -= 1
            if watch.subscribers == 0:
                self._forget(watch)

    def _forget(self, watch: JobWatch) -> None:
        if self.watches.get(watch.job_id) is watch:
            del self.watches[watch.job_id]
        watch.cancel()


class WaitSlot:
    """One counted wait of a key; `release` may be called more than once."""

    def __init__(self, watchers: JobWatchers, key_id: int):
        self._watchers = watchers
        self._key_id = key_id
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._watchers._release(self._key_id)

    def __enter__(self) -> WaitSlot:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def job_watchers(request: Request) -> JobWatchers:
    """The app's watchers, made on first use."""
    watchers: JobWatchers | None = getattr(request.app.state, "job_watchers", None)
    if watchers is None:
        watchers = request.app.state.job_watchers = JobWatchers(request.app.state.settings)
    return watchers

"""Group read: lookups that concurrent callers make at about the same time run as one query.

Hundreds of sub-agents start at once and each reads its subtask. One session per caller costs the worker about a
millisecond of CPU in round trips to the database's thread, at the moment the Temporal server needs the CPU to
dispatch the rest. Here each caller queues a key and waits; one query fetches every key queued so far, and the next
takes those that queued meanwhile, after a short linger as in group commit. Reads do not wait for the writers' turn
(WAL readers need not), and run on a Core connection, not an ORM session.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from .engine import LoopLocal, get_engine, loop_local
from .group_commit import LINGER_S

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Fetch = Callable[[AsyncConnection, list[K]], Awaitable[Mapping[K, V]]]

_readers: LoopLocal[tuple[str, Any], GroupRead[Any, Any]] = weakref.WeakKeyDictionary()


class GroupRead(Generic[K, V]):
    """The lookups of one kind (`fetch`) on one database URL on one event loop."""

    def __init__(self, url: str, fetch: Fetch[K, V], linger_s: float = LINGER_S) -> None:
        self.url = url
        self.fetch = fetch
        self.linger_s = linger_s
        self._queued: dict[K, list[asyncio.Future[V | None]]] = {}
        self._reading: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        """The value stored under `key`, or None when there is none."""
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._queued.setdefault(key, []).append(future)
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read())
        return await future

    async def _read(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, {}
            try:
                async with get_engine(self.url).connect() as connection:
                    found = await self.fetch(connection, list(batch))
            except Exception as error:  # every caller of the failed query sees why (a read is safe to retry)
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(error)
            else:
                for key, futures in batch.items():
                    for future in futures:
                        if not future.done():  # a caller cancelled meanwhile
                            future.set_result(found.get(key))
            await asyncio.sleep(self.linger_s)  # in a burst, let more lookups join the next query


def group_read(url: str, fetch: Fetch[K, V]) -> GroupRead[K, V]:
    """The group reader of `fetch` on `url` for the running event loop."""
    return loop_local(_readers, (url, fetch), lambda: GroupRead(url, fetch))

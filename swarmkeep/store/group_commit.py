"""Group commit: writes that concurrent callers queue for one database run together, in one transaction.

Hundreds of sub-agents starting or finishing at once each wrote their own transaction, one after another (SQLite
has one writer): about a millisecond each, so at 300 sub-agents the last waited some 0.3 s at both ends of the
stage. Here each caller queues its statements and waits; a flush runs everything queued so far in one transaction,
each statement once for all the callers that queued it (executemany), and the next flush takes what queued
meanwhile. Each caller's statements run in its own order; callers must write rows independent of each other's.
A flush that fails is retried caller by caller, so a bad write fails only its own caller.

A lone write is flushed at once; after each flush the committer lingers a few milliseconds (LINGER_S) for more
before it flushes again or stops. So a burst of sub-agents shares a few dozen transactions rather than a hundred
of two or three callers each: a transaction costs the worker about a millisecond of CPU in round trips to the
database's thread, and at a stage's start and end that CPU is what the Temporal server is short of while it
dispatches and completes the sub-agents. Transactions are Core connections, not ORM sessions: the statements
are Core already.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from .engine import LoopLocal, loop_local, transaction

Write = tuple[Executable, dict[str, Any]]

LINGER_S = 0.01  # against a model step of seconds, ten milliseconds more per write is nothing

_committers: LoopLocal[str, GroupCommit] = weakref.WeakKeyDictionary()


class GroupCommit:
    """The write queue of one database URL on one event loop."""

    def __init__(self, url: str, linger_s: float = LINGER_S) -> None:
        self.url = url
        self.linger_s = linger_s
        self._queued: list[tuple[list[Write], asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def write(self, writes: list[Write]) -> None:
        """Run ``writes`` (statement, parameters) in order, committed, together with other callers' writes.

        Once queued, the writes happen even if the caller is cancelled (as a commit under way would)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)  # a cancelled caller's error is not "never retrieved"
        self._queued.append((writes, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        await asyncio.shield(future)

    async def _flush(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                await self._commit([writes for writes, _ in batch])
            except Exception as error:
                if len(batch) == 1:
                    _settle(batch[0][1], error)
                    continue
                for writes, future in batch:  # find the caller(s) at fault; the others still commit
                    try:
                        await self._commit([writes])
                    except Exception as own_error:
                        _settle(future, own_error)
                    else:
                        _settle(future, None)
            else:
                for _, future in batch:
                    _settle(future, None)
            await asyncio.sleep(self.linger_s)  # in a burst, let more writes join the next flush

    async def _commit(self, callers: list[list[Write]]) -> None:
        async with transaction(self.url) as connection:
            await _execute(connection, callers)


async def _execute(connection: AsyncConnection, callers: list[list[Write]]) -> None:
    """Every caller's first statement, then every caller's second, ...: each distinct statement at a position
    runs once with all its parameter sets."""
    for position in range(max(len(writes) for writes in callers)):
        grouped: dict[int, tuple[Executable, list[dict[str, Any]]]] = {}
        for writes in callers:
            if position < len(writes):
                statement, params = writes[position]
                grouped.setdefault(id(statement), (statement, []))[1].append(params)
        for statement, sets in grouped.values():
            await connection.execute(statement, sets if len(sets) > 1 else sets[0])


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def group_commit(url: str) -> GroupCommit:
    """The group committer of ``url`` for the running event loop."""
    return loop_local(_committers, url, lambda: GroupCommit(url))

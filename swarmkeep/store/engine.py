"""Database engine and sessions for the job store (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
LoopLocal = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[K, T]]

_engines: LoopLocal[str, AsyncEngine] = weakref.WeakKeyDictionary()
# SQLite has one writer at a time: scopes of one loop take turns here rather than in SQLite's busy handler.
_turns: LoopLocal[str, asyncio.Lock] = weakref.WeakKeyDictionary()
_taking_turn: ContextVar[bool] = ContextVar("swarmkeep_store_taking_turn", default=False)


def loop_local(registry: LoopLocal[K, T], key: K, make: Callable[[], T]) -> T:
    """The running event loop's value for `key` in `registry`, made on first use. Engines, locks and the queues
    built on them belong to the loop that made them, so each loop has its own (weakly held, gone with the loop)."""
    values = registry.setdefault(asyncio.get_running_loop(), {})
    value = values.get(key)
    if value is None:
        value = values[key] = make()
    return value


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the worker writes; the busy timeout makes
    # concurrent sub-agents wait for the write lock instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def ensure_sqlite_dir(url: str) -> None:
    """Create the folder a SQLite file lives in, so a fresh data directory just works."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def get_engine(url: str) -> AsyncEngine:
    """One engine per URL per event loop."""
    return loop_local(_engines, url, lambda: _make_engine(url))


def _make_engine(url: str) -> AsyncEngine:
    ensure_sqlite_dir(url)
    # Hundreds of sub-agents share one pool: they wait their turn for a connection rather than fail after
    # SQLAlchemy's default 30 s (an attempt that fails that way is retried, adding to the queue).
    kwargs: dict[str, Any] = {"pool_size": 10, "max_overflow": 20, "pool_timeout": 300}
    if make_url(url).get_backend_name() != "sqlite":
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def session_factory(url: str) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(get_engine(url), expire_on_commit=False)


async def _end(session: AsyncSession, commit: bool) -> None:
    try:
        if commit:
            await session.commit()
        else:
            await session.rollback()
    finally:
        await session.close()


@asynccontextmanager
async def _writers_turn(url: str) -> AsyncIterator[None]:
    """On SQLite, wait for this event loop's writers' turn (a scope inside another shares its turn); on other
    databases, go ahead."""
    if _taking_turn.get() or get_engine(url).dialect.name != "sqlite":
        yield
        return
    async with loop_local(_turns, url, asyncio.Lock):
        taking = _taking_turn.set(True)
        try:
            yield
        finally:
            _taking_turn.reset(taking)


@asynccontextmanager
async def session_scope(url: str) -> AsyncIterator[AsyncSession]:
    """A session that commits on success and rolls back on error.

    On SQLite, scopes in one process take turns (a scope inside another shares its turn). SQLite lets one
    connection write at a time anyway; waiting here is in order and costs nothing, while hundreds of sub-agents
    waiting in SQLite's busy handler poll the file lock with sleeps of up to 100 ms and each hold a connection.

    Ending the session is shielded from cancellation: an activity canceled mid-transaction (a timeout, a lost
    hedge) still returns its connection to the pool instead of leaking it, which under load would starve every
    other sub-agent of connections.
    """
    async with _writers_turn(url), _session(url) as session:
        yield session


@asynccontextmanager
async def transaction(url: str) -> AsyncIterator[AsyncConnection]:
    """A Core connection in one transaction, committed on success and rolled back on error, for batched writes
    that need no ORM session (group_commit.py). On SQLite it takes the writers' turn, as session_scope does."""
    async with _writers_turn(url), get_engine(url).begin() as connection:
        yield connection


@asynccontextmanager
async def read_scope(url: str) -> AsyncIterator[AsyncSession]:
    """A session for reads only: on SQLite it does not wait for the writers' turn, as WAL readers need not."""
    async with _session(url) as session:
        yield session


@asynccontextmanager
async def _session(url: str) -> AsyncIterator[AsyncSession]:
    session = session_factory(url)()
    try:
        yield session
    except BaseException:
        await asyncio.shield(asyncio.ensure_future(_end(session, commit=False)))
        raise
    await asyncio.shield(asyncio.ensure_future(_end(session, commit=True)))


async def dispose_engines() -> None:
    """Close the pooled connections of this event loop's engines (at shutdown, and between tests)."""
    for engine in _engines.pop(asyncio.get_running_loop(), {}).values():
        await engine.dispose()


def run_once(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` for a one-off database task, closing its connections before the loop ends."""

    async def main() -> T:
        try:
            return await coro
        finally:
            await dispose_engines()

    return asyncio.run(main())

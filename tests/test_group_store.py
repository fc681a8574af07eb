"""Group commit and group read: concurrent callers share transactions and queries, and lose nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

import swarmkeep.store.group_commit as group_commit_module
from swarmkeep.store.engine import dispose_engines, get_engine
from swarmkeep.store.group_commit import GroupCommit
from swarmkeep.store.group_read import GroupRead

METADATA = MetaData()
NOTES = Table("notes", METADATA, Column("id", Integer, primary_key=True), Column("text", String, nullable=False))
ADD = insert(NOTES)


@pytest.fixture
async def url(tmp_path: Path) -> AsyncIterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'notes.db'}"
    async with get_engine(url).begin() as connection:
        await connection.run_sync(METADATA.create_all)
    yield url
    await dispose_engines()


async def stored(url: str) -> dict[int, str]:
    async with get_engine(url).connect() as connection:
        return {row.id: row.text for row in await connection.execute(select(NOTES))}


async def test_concurrent_writes_share_transactions(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    transactions = 0
    original = group_commit_module.transaction

    def counted(target: str):  # type: ignore[no-untyped-def]
        nonlocal transactions
        transactions += 1
        return original(target)

    monkeypatch.setattr(group_commit_module, "transaction", counted)
    committer = GroupCommit(url)

    async def caller(i: int) -> None:
        await asyncio.sleep(i * 0.001)  # a burst spread over 100 ms, as sub-agents starting one after another
        await committer.write([(ADD, {"id": i, "text": f"note {i}"})])

    await asyncio.gather(*(caller(i) for i in range(100)))
    assert await stored(url) == {i: f"note {i}" for i in range(100)}
    assert transactions <= 20, f"{transactions} transactions for 100 writers"


async def test_a_bad_write_fails_only_its_caller(url: str) -> None:
    committer = GroupCommit(url)
    await committer.write([(ADD, {"id": 1, "text": "first"})])
    results = await asyncio.gather(
        *(committer.write([(ADD, {"id": i, "text": f"note {i}"})]) for i in (2, 1, 3)),  # id 1 exists already
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], IntegrityError)
    assert await stored(url) == {1: "first", 2: "note 2", 3: "note 3"}


async def test_concurrent_lookups_share_queries(url: str) -> None:
    async with get_engine(url).begin() as connection:
        await connection.execute(ADD, [{"id": i, "text": f"note {i}"} for i in range(50)])
    queries: list[list[int]] = []

    async def fetch(connection: AsyncConnection, keys: list[int]) -> Mapping[int, str]:
        queries.append(keys)
        rows = await connection.execute(select(NOTES).where(NOTES.c.id.in_(keys)))
        return {row.id: row.text for row in rows}

    reader: GroupRead[int, str] = GroupRead(url, fetch)
    found = await asyncio.gather(*(reader.get(i) for i in [*range(60), 7]))
    assert found == [*(f"note {i}" for i in range(50)), *([None] * 10), "note 7"]  # 50..59 are not stored
    assert len(queries) <= 3 and sorted(k for keys in queries for k in keys) == list(range(60))


async def test_a_failed_lookup_reaches_every_caller(url: str) -> None:
    async def fetch(connection: AsyncConnection, keys: list[int]) -> Mapping[int, str]:
        raise RuntimeError("the database is gone")

    reader: GroupRead[int, str] = GroupRead(url, fetch)
    results = await asyncio.gather(*(reader.get(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)

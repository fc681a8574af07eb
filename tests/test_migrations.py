"""Alembic migrations: upgrade head matches the models; un-migrated stores are refused with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from swarmkeep.store.engine import dispose_engines, get_engine
from swarmkeep.store.migrate import DatabaseNotMigratedError, downgrade, require_migrated, upgrade
from swarmkeep.store.models import Base


async def test_upgrade_head_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    await upgrade(url)
    async with get_engine(url).connect() as connection:
        diff = await connection.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    assert diff == []
    await require_migrated(url)
    await downgrade(url, "base")
    with pytest.raises(DatabaseNotMigratedError):
        await require_migrated(url)
    await dispose_engines()


async def test_unmigrated_store_is_refused_with_the_command_to_run(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(DatabaseNotMigratedError, match="Run `swarmkeep migrate`"):
        await require_migrated(url)
    await dispose_engines()

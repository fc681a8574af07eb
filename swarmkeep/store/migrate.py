"""Schema migrations: run Alembic to head, and refuse to start on an un-migrated database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from swarmkeep.settings import redact_url
from swarmkeep.store.engine import get_engine


class DatabaseNotMigratedError(RuntimeError):
    """The job store's schema is missing or behind the code's migrations."""


def _migrations_dir() -> Path:
    import swarmkeep.migrations as package

    return Path(package.__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at swarmkeep's migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(url: str) -> str | None:
    """The revision the database is at, or None when it was never migrated."""

    def _read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with get_engine(url).connect() as connection:
        return await connection.run_sync(_read)


async def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision` (head by default)."""
    config = alembic_config(url)

    def _upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with get_engine(url).begin() as connection:
        await connection.run_sync(_upgrade)


async def downgrade(url: str, revision: str) -> None:
    """Revert migrations down to `revision` ("base" removes every table)."""
    config = alembic_config(url)

    def _downgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with get_engine(url).begin() as connection:
        await connection.run_sync(_downgrade)


async def require_migrated(url: str) -> None:
    """Raise a clear error unless the database is at the latest migration."""
    current, head = await current_revision(url), head_revision()
    if current != head:
        state = "has never been migrated" if current is None else f"is at revision {current}, not {head}"
        raise DatabaseNotMigratedError(
            f"The job store at {redact_url(url)} {state}. Run `swarmkeep migrate` first "
            "(it uses the same SWARMKEEP_DATABASE_URL), then start again."
        )

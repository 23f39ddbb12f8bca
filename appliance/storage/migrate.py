"""Schema migrations: Alembic, configured in code, run on the application's own engine.

`upgrade()` runs at every start and from `appliance db upgrade`. It holds a database-wide lock
for the whole upgrade (an advisory lock on PostgreSQL, a write lock on SQLite) and works in a
single transaction, so several processes or appliances starting at once against one database
apply each migration exactly once, and the others then find the schema already at head.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.storage.db import is_sqlite
from appliance.storage.models import Base

MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")

# Key of the PostgreSQL advisory lock that serialises migrations: the ASCII bytes of "applianc",
# fixed so that every appliance sharing one server takes the same lock.
PG_MIGRATION_LOCK_KEY: Final = 0x6170706C69616E63


class MigrationError(Exception):
    """The schema cannot be brought to this version's head; the message says why and what to do."""


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    """Alembic's configuration without an ini file: the scripts ship inside the package."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = connection
    return cfg


def migration_options(connection: Connection) -> dict[str, Any]:
    """Options for `context.configure`, shared by env.py and the schema comparison in the tests."""
    return {
        "target_metadata": Base.metadata,
        # SQLite cannot ALTER most things: Alembic recreates the table instead ("batch" mode).
        "render_as_batch": is_sqlite(connection.engine.url),
        "compare_type": True,
    }


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise MigrationError(f"no migrations in {MIGRATIONS_DIR}: the installation is incomplete; reinstall")
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The schema revision the database is at; None for a database never migrated."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


@contextmanager
def _sqlite_locked(connection: Connection) -> Iterator[None]:
    # Foreign keys are off while batch mode recreates tables (a drop would otherwise cascade or
    # fail); the pragma is ignored inside a transaction, so it goes first, and the result is
    # checked before commit instead.
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()
    try:
        with connection.begin():
            # IMMEDIATE takes the write lock now, before Alembic reads the current revision.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            yield
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                tables = sorted({row[0] for row in broken})
                raise MigrationError(
                    f"a migration left rows whose foreign keys point nowhere (tables: {', '.join(tables)}); "
                    "nothing was changed; report this as a bug"
                )
    finally:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()


@contextmanager
def _postgres_locked(connection: Connection) -> Iterator[None]:
    with connection.begin():
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK_KEY})
        yield


def _check_known(connection: Connection, cfg: AlembicConfig) -> None:
    current = _current(connection)
    if current is None:
        return
    try:
        ScriptDirectory.from_config(cfg).get_revision(current)
    except CommandError:
        raise MigrationError(
            f"the database schema is at revision {current!r}, which this version of the appliance does not "
            "know: a newer version has upgraded it. Install that version again, or restore the backup taken "
            "before it"
        ) from None


def _upgrade(connection: Connection) -> None:
    cfg = alembic_config(connection)
    locked = _sqlite_locked if is_sqlite(connection.engine.url) else _postgres_locked
    with locked(connection):
        _check_known(connection, cfg)
        command.upgrade(cfg, "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to head. Safe to run at every start and from several processes at once."""
    async with engine.connect() as conn:
        await conn.run_sync(_upgrade)

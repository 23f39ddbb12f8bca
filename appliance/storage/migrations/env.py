"""Alembic environment.

At run time `appliance.storage.migrate` hands over an open connection (inside its lock and
transaction). A developer's `alembic -c appliance/storage/alembic.ini revision --autogenerate`
has none: then an engine is built from `sqlalchemy.url` and the same code runs on it.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from appliance.storage.db import create_engine
from appliance.storage.migrate import migration_options


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **migration_options(connection))
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_own_engine(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")

_given: Connection | None = context.config.attributes.get("connection")
if _given is not None:
    _run(_given)
else:
    _url = context.config.get_main_option("sqlalchemy.url")
    if not _url:
        raise SystemExit("set sqlalchemy.url in the alembic ini file (a development database)")
    asyncio.run(_run_on_own_engine(_url))

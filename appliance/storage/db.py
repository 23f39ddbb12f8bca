"""Engines and sessions: the one place that knows which database backend is in use.

SQLite (the default, a file in the data directory) and PostgreSQL (a shared server, for a chain
of shops) differ only here; everything else talks to an `AsyncEngine` / `async_sessionmaker`.

SQLite takes one writer at a time. Each connection of the pool runs in a thread of its own, and a
write transaction holds the lock from its first write until its commit, across several trips
through the event loop. With 48 cameras on a saturated box those trips took seconds, the other
connections' writers gave up after the busy timeout (then 5 s) with "database is locked", and
segments were left out of the evidence chain. The busy timeout is now long enough for that
(`SQLITE_BUSY_TIMEOUT_MS`).

Serialising the writes of the process on one asyncio lock instead was tried and measured worse:
each write then waits for the whole queue, including the loop trips of the writes before it,
where separate connections overlap them (32 cameras on a loaded box: event latency p50 4.4 s
against 1.3 s, 22 segments left unchained against none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from appliance.config import Config

# How long a writer waits for another writer's lock before SQLite gives up with "database is
# locked". WAL readers never wait; a writer waits only for another writer, which on a saturated box
# can hold the lock for seconds between its first write and its commit: 30 s covers that with room
# to spare, and a writer stuck for longer is reported rather than waited for.
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000

# WAL lets the console read while the recorder writes; NORMAL synchronisation is durable across
# application crashes and only risks the last transactions on power loss, which WAL keeps consistent.
SQLITE_PRAGMAS: Final = (
    # First: switching a new file to WAL takes a lock that another process may hold for a moment;
    # with the timeout set it waits instead of failing with "database is locked".
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
)

# How long to wait for a PostgreSQL server to answer before reporting it unreachable (asyncpg's
# own default is 60 s, too long for a command someone is waiting on).
PG_CONNECT_TIMEOUT_S: Final = 10.0


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def create_engine(url: str, password: str | None = None) -> AsyncEngine:
    """An engine for a `sqlite+aiosqlite://` or `postgresql+asyncpg://` URL.

    The PostgreSQL password travels as a connection argument, never inside the URL, so that
    `engine.url` and anything that logs it stay free of it.
    """
    parsed = make_url(url)
    if is_sqlite(parsed):
        path = _sqlite_file(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed)
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {"timeout": PG_CONNECT_TIMEOUT_S}
    if password is not None:
        connect_args["password"] = password
    # A shared server may close idle connections (restart, failover): test them before use.
    return create_async_engine(parsed, connect_args=connect_args, pool_pre_ping=True)


def engine_from_config(cfg: Config) -> AsyncEngine:
    password = cfg.database.password
    return create_engine(cfg.database_url, password.get_secret_value() if password is not None else None)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit: async code must never trigger a hidden refresh.
    return async_sessionmaker(engine, expire_on_commit=False)

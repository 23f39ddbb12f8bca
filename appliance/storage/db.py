"""Engines and sessions: the one place that knows which database backend is in use.

SQLite (the default, a file in the data directory) and PostgreSQL (a shared server, for a chain
of shops) differ only here; everything else talks to an `AsyncEngine` / `async_sessionmaker`.

SQLite takes one writer at a time. Each connection of the pool runs in a thread of its own, and a
write transaction holds the lock from its first write until its commit, across several trips
through the event loop. With 48 cameras on a saturated box those trips took seconds, other
connections' writers gave up after the busy timeout with "database is locked", and segments were
left out of the evidence chain. So, in this process, write transactions (`sessions.begin()`) of
one SQLite database take their turn on an asyncio lock before they touch it (they queue, in
order, with no timeout), and the busy timeout is left for other processes (a CLI command).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from appliance.config import Config

# How long a writer waits for another process's write lock before SQLite gives up with "database
# is locked" (writers of this process queue on an asyncio lock instead, see above). WAL readers
# never wait for a writer; a writer waits only for another writer, and a commit of another process
# under full load can take seconds: 30 s is long enough for that, short enough to report a stuck
# process.
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


class _WriterTurn:
    """An asyncio lock that the task holding it may take again (a write that calls another write)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._depth = 0

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if task is None or self._owner is not task:
            await self._lock.acquire()
            self._owner = task
        self._depth += 1

    async def __aexit__(self, *_exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()


_TURNS: weakref.WeakKeyDictionary[Engine, _WriterTurn] = weakref.WeakKeyDictionary()
"""One writer's turn per SQLite database (engine) in this process, whichever sessionmaker writes."""


class SerialWriteSessions(async_sessionmaker[AsyncSession]):
    """Sessions of a SQLite database whose write transactions (`begin()`) run one at a time in
    this process (see the module docstring). Reading sessions (`sessions()`) run freely."""

    def __init__(self, engine: AsyncEngine, **kw: Any) -> None:
        super().__init__(engine, **kw)
        self._turn = _TURNS.setdefault(engine.sync_engine, _WriterTurn())

    @contextlib.asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncSession]:
        async with self._turn, super().begin() as session:
            yield session

    def begin(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:  # type: ignore[override]
        # The base returns its own context manager class; every caller only enters it.
        return self._begin()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit: async code must never trigger a hidden refresh.
    if is_sqlite(engine.url):
        return SerialWriteSessions(engine, expire_on_commit=False)
    return async_sessionmaker(engine, expire_on_commit=False)

"""The machine's real PostgreSQL server as a test peer: throw-away databases on it.

Reached on 127.0.0.1:5432 as `postgres` with trust authentication (how Debian's package is set
up on the development and CI machines). If it does not answer, one attempt is made to start the
installed cluster; when that fails too, `unavailable_reason()` says why, for a visible skip.
The helpers are synchronous (asyncpg runs in a thread of its own), so fixtures of any scope and
sync or async tests can use them.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

HOST = "127.0.0.1"
PORT = 5432
USER = "postgres"
CONNECT_TIMEOUT_S = 5.0
START_TIMEOUT_S = 60.0
PG_CONFIG_DIR = Path("/etc/postgresql")

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    # A thread of its own: safe whether or not the caller is inside a running event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _admin() -> asyncpg.Connection:
    return await asyncpg.connect(host=HOST, port=PORT, user=USER, database="postgres", timeout=CONNECT_TIMEOUT_S)


async def _ping() -> None:
    conn = await _admin()
    await conn.close()


def _reachable() -> str | None:
    try:
        _run(_ping())
    except (OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _start_clusters() -> str | None:
    """Start every installed cluster once; None on success, else what went wrong."""
    ctl = shutil.which("pg_ctlcluster")
    versions = sorted(p.name for p in PG_CONFIG_DIR.iterdir()) if PG_CONFIG_DIR.is_dir() else []
    if ctl is None or not versions:
        return "PostgreSQL is not installed (no pg_ctlcluster or /etc/postgresql); apt-get install postgresql"
    for version in versions:
        done = subprocess.run(
            [ctl, "--skip-systemctl-redirect", version, "main", "start"],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )
        # Exit 2 means "already running", which is fine.
        if done.returncode not in (0, 2):
            return f"pg_ctlcluster {version} main start failed: {(done.stderr or done.stdout).strip()}"
    return None


@functools.cache
def unavailable_reason() -> str | None:
    """None when the server answers (after starting it if needed), else why it cannot be used."""
    first = _reachable()
    if first is None:
        return None
    start_problem = _start_clusters()
    again = _reachable()
    if again is None:
        return None
    started = start_problem or "started, still no answer"
    return f"PostgreSQL on {HOST}:{PORT} is unreachable ({again}); starting it: {started}"


def database_url(name: str) -> str:
    return f"postgresql+asyncpg://{USER}@{HOST}:{PORT}/{name}"


def create_database(prefix: str = "appliance_test") -> str:
    """A new empty database with a unique name; drop it with drop_database()."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await _admin()
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    _run(create())
    return name


def drop_database(name: str) -> None:
    async def drop() -> None:
        conn = await _admin()
        try:
            # FORCE: a test that failed half-way may still hold connections.
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    _run(drop())

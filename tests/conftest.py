"""Shared fixtures. Each area keeps its fixtures in its own delimited section below."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.storage.db import create_engine
from appliance.storage.migrate import upgrade
from tests import pg
from tests.peers.smsc_standin import SmscStandIn
from tests.peers.smsru_standin import SmsRuStandIn

# ---------------------------------------------------------------------------------- storage ---
# `db_url` runs a test on SQLite and on the machine's real PostgreSQL (tests/pg.py);
# `db_engine` is an engine on that database with the migrations applied.

PG_SKIPPED = "PostgreSQL storage tests need the real server: "


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: a file under tmp_path, or a fresh database on the local server."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'appliance.db'}"
        return
    reason = pg.unavailable_reason()
    if reason is not None:
        pytest.skip(f"{PG_SKIPPED}{reason}")
    name = pg.create_database()
    try:
        yield pg.database_url(name)
    finally:
        pg.drop_database(name)


@pytest.fixture
async def db_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    try:
        await upgrade(engine)
        yield engine
    finally:
        await engine.dispose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Skip reasons are hidden without -rs; a missing database server must not go unnoticed. Read
    # from the skip reports: under pytest-xdist the tests ran in the worker processes.
    for report in terminalreporter.stats.get("skipped", []):
        message = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        if PG_SKIPPED in message:
            reason = message.split(PG_SKIPPED, 1)[1]
            terminalreporter.write_line(f"PostgreSQL tests were SKIPPED: {reason}", yellow=True, bold=True)
            return


# ------------------------------------------------------------------------- end of storage ---


# ---------------------------------------------------------------------------- sms stand-ins ---
# Local stand-ins for SMS.ru and SMSC.ru (tests/peers/), one per test on 127.0.0.1. Point the
# appliance at one with `[portal.sms]` = standin.sms_config(); read the code a guest was sent
# with standin.last_code("+79991234567"); make it fail with standin.mode = "down" / "busy" / "slow".


@pytest.fixture
async def smsru_standin() -> AsyncIterator[SmsRuStandIn]:
    async with SmsRuStandIn.running() as standin:
        yield standin


@pytest.fixture
async def smsc_standin() -> AsyncIterator[SmscStandIn]:
    async with SmscStandIn.running() as standin:
        yield standin


# --------------------------------------------------------------------- end of sms stand-ins ---

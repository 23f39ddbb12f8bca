"""Many concurrent writers on one SQLite database (appliance/storage/db.py, the evidence chain's
append in appliance/cameras/pipeline.py): 48 cameras' recorders, evidence chain and events at once
on a busy event loop used to end in "database is locked" and segments left out of the chain."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from appliance.cameras.events import EndReason, EventEnded, EventStarted, event_id_for
from appliance.cameras.pipeline import CHAIN_ATTEMPTS, CHAIN_RETRY_S, record_segment
from appliance.evidence.ledger import EvidenceLedger
from appliance.storage import db
from appliance.storage.db import create_engine, make_sessionmaker
from appliance.storage.events import EventStore
from appliance.storage.migrate import upgrade
from appliance.storage.models import SEGMENT_COMPLETE, EvidenceRecord, Segment
from appliance.storage.segments import NewSegment, SegmentIndex, SegmentInfo, new_row

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
CAMERAS = 48
SEGMENTS = 4
SHORT_BUSY_MS = 100
"""A busy timeout shorter than the tests hold the write lock: what 5 s was on a saturated box."""
HOLD_S = 1.0


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    pragmas = tuple(
        f"PRAGMA busy_timeout={SHORT_BUSY_MS}" if p.startswith("PRAGMA busy_timeout") else p for p in db.SQLITE_PRAGMAS
    )
    monkeypatch.setattr(db, "SQLITE_PRAGMAS", pragmas)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'appliance.db'}")
    await upgrade(engine)
    yield engine
    await engine.dispose()


def segment(camera: str, i: int) -> NewSegment:
    start = T0 + timedelta(seconds=10 * i)
    return NewSegment(camera, f"{camera}/2026-05-04/09/{start:%Y%m%dT%H%M%S}Z.mp4", start, "h264", 1280, 720)


async def hold_a_write(sessions: async_sessionmaker[AsyncSession], seconds: float) -> None:
    """A write transaction that keeps SQLite's write lock across the event loop for `seconds`, as a
    recorder's did on a saturated box between its INSERT and its COMMIT."""
    async with sessions.begin() as session:
        session.add(new_row(segment("slow", 0)))
        await session.flush()
        await asyncio.sleep(seconds)


async def test_a_writer_waits_for_a_long_write_instead_of_failing(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    index = SegmentIndex(sessions)
    holder = asyncio.create_task(hold_a_write(sessions, HOLD_S))
    await asyncio.sleep(0.05)
    started = time.monotonic()

    await index.add(segment("cam1", 0))

    assert time.monotonic() - started >= HOLD_S / 2  # it waited for the other writer
    await holder
    assert {r.camera_id for r in await index.with_status("recording")} == {"slow", "cam1"}


@pytest.mark.usefixtures("short_busy_timeout")
async def test_with_a_busy_timeout_shorter_than_the_write_the_writer_fails(engine: AsyncEngine) -> None:
    """What happened at 48 cameras with the old 5 s timeout, made quick."""
    sessions = make_sessionmaker(engine)
    holder = asyncio.create_task(hold_a_write(sessions, HOLD_S))
    await asyncio.sleep(0.05)
    with pytest.raises(OperationalError, match="database is locked"):
        await SegmentIndex(sessions).add(segment("cam1", 0))
    await holder


def lock_for(path: Path, seconds: float) -> None:
    """Another connection (as another process would) takes the write lock and commits `seconds` later."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    def release() -> None:
        other.execute("COMMIT")
        other.close()

    asyncio.get_running_loop().call_later(seconds, release)


def finished(camera: str, i: int) -> SegmentInfo:
    new = segment(camera, i)
    end = new.start_utc + timedelta(seconds=10)
    return SegmentInfo(camera, new.key, new.start_utc, end, 10.0, 1000, f"{i:064x}", "h264", 1280, 720)


@pytest.mark.usefixtures("short_busy_timeout")
async def test_a_segment_refused_by_a_locked_database_is_chained_on_a_retry(
    engine: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = EvidenceLedger(make_sessionmaker(engine), Ed25519PrivateKey.generate())
    lock_for(tmp_path / "appliance.db", CHAIN_RETRY_S / 2)
    with caplog.at_level(logging.WARNING):
        await record_segment(ledger, finished("cam1", 0))
    assert await ledger.recorded_keys("cam1") == {segment("cam1", 0).key}
    assert "evidence chain append failed; retrying" in caplog.text

    # Locked for longer than every attempt: the error comes out (reconciliation appends it later).
    lock_for(tmp_path / "appliance.db", 10 * CHAIN_RETRY_S * CHAIN_ATTEMPTS)
    with pytest.raises(OperationalError, match="database is locked"):
        await record_segment(ledger, finished("cam1", 1))
    assert segment("cam1", 1).key not in await ledger.recorded_keys("cam1")


async def test_another_process_holding_the_lock_is_waited_for(tmp_path: Path) -> None:
    """Another process (a CLI command) holding the write lock is waited for too."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'appliance.db'}")
    await upgrade(engine)
    hold = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(2); c.execute('COMMIT')\n"
    )
    other = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path / "appliance.db")], stdout=subprocess.PIPE)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == b"locked"
        started = time.monotonic()
        await SegmentIndex(make_sessionmaker(engine)).add(segment("cam1", 0))
        assert time.monotonic() - started >= 1.0  # it did wait for the other process
    finally:
        other.wait(10)
        assert other.stdout is not None
        other.stdout.close()
        await engine.dispose()


async def busy_loop(stop: asyncio.Event) -> None:
    """The event loop of a saturated box: blocked 30 ms out of every 40."""
    while not stop.is_set():
        time.sleep(0.03)
        await asyncio.sleep(0.01)


async def camera(camera_id: str, index: SegmentIndex, ledger: EvidenceLedger, events: EventStore) -> None:
    """One camera's writes as the pipeline makes them: segments opened and finished, chained,
    motion marked; an event started and ended."""
    for i in range(SEGMENTS):
        await index.add(segment(camera_id, i))
        await asyncio.sleep(0)
        info = finished(camera_id, i)
        await index.finalize(info)
        await record_segment(ledger, info)
        await index.mark_motion(info.key, i % 2 == 0)
    start = T0 + timedelta(seconds=5)
    event_id = event_id_for(camera_id, start)
    await events.started(EventStarted(event_id, camera_id, start, start - timedelta(seconds=5), True))
    end = start + timedelta(seconds=20)
    await events.ended(
        EventEnded(
            event_id, camera_id, start, end, start - timedelta(seconds=5), end, EndReason.QUIET, True, start, 0.5, ()
        )
    )


@pytest.mark.slow
async def test_48_cameras_writing_at_once_on_a_busy_loop_leave_every_segment_chained(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    index, events = SegmentIndex(sessions), EventStore(sessions)
    ledger = EvidenceLedger(sessions, Ed25519PrivateKey.generate())
    stop = asyncio.Event()
    load = asyncio.create_task(busy_loop(stop))
    try:
        async with asyncio.timeout(120):
            await asyncio.gather(*(camera(f"cam{n}", index, ledger, events) for n in range(CAMERAS)))
    finally:
        stop.set()
        await load
    async with sessions() as session:
        complete = await session.scalar(select(func.count()).where(Segment.status == SEGMENT_COMPLETE))
    assert complete == CAMERAS * SEGMENTS
    for n in range(CAMERAS):
        assert await ledger.recorded_keys(f"cam{n}") == {segment(f"cam{n}", i).key for i in range(SEGMENTS)}
    async with sessions() as session:
        seqs = (await session.execute(select(func.count(), func.max(EvidenceRecord.seq)).where(
            EvidenceRecord.camera_id == "cam0"))).one()  # fmt: skip
    assert tuple(seqs) == (SEGMENTS, SEGMENTS)  # one unbroken chain
    assert len(await events.list_range(None, T0, T0 + timedelta(hours=1))) == CAMERAS

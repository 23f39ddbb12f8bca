"""The camera pipeline through a database that goes away, and through a stop.

The database is made genuinely unavailable: SQLite is held locked by another connection for longer
than the busy timeout (shortened for the test), PostgreSQL refuses new connections while the test's
ones are terminated. The pipeline is the daemon's own (`build_cameras`, the supervisor, a simulated
camera whose figure never stops moving, so that an event is open until the stop).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from appliance.bus import EventBus
from appliance.cameras.events import EndReason, EventEnded, EventStarted, PeakChanged, event_id_for
from appliance.cameras.messages import EventClosed, EventOpened
from appliance.cameras.pipeline import EventJournal
from appliance.cameras.status import StatusBoard
from appliance.cameras.system import CameraSystem, build_cameras
from appliance.config import Config, DaemonSection
from appliance.simulator.scene import Figure, Scene, Waypoint
from appliance.simulator.server import SimCamera, SimulatorServer
from appliance.storage.db import create_engine, is_sqlite, make_sessionmaker
from appliance.storage.events import EventStore
from appliance.storage.migrate import upgrade
from appliance.storage.models import Event, Segment
from appliance.supervisor import ComponentState, ComponentStatus, Supervisor
from tests import pg
from tests.simulator_support import TINY_FPS, TINY_GOP, cache_dir
from tests.xdist_groups import REALTIME

CAM = "cam1"
BUSY_TIMEOUT_MS = 300
"""SQLite's busy timeout in these tests (the appliance waits 30 s): how long a write waits for the
lock before "database is locked"."""
BOX = (0.1, 0.2, 0.3, 0.4)
STOP_BUDGET_S = DaemonSection().shutdown_timeout_s
"""What the daemon gives its components at SIGTERM."""
LOGGER = "appliance.cameras.pipeline"
SCENE = Scene(
    name="calm_then_walking",
    duration=6.0,
    figures=(Figure((Waypoint(3.0, -0.04, 0.9), Waypoint(5.9, 1.04, 0.9))),),
    description="a still shop for 3 s (the pipeline connects and calibrates), then a figure crossing",
)
MERGE_GAP_S = 4.0
"""Longer than the scene's still part: once open, the event lasts until the stop."""


# ------------------------------------------------------------------------------ database ---


class Outage:
    """Makes the test's database unavailable to the appliance's connections, and available again."""

    def __init__(self, db_url: str) -> None:
        self.url = make_url(db_url)
        self._lock: sqlite3.Connection | None = None
        self._admin: asyncpg.Connection | None = None

    async def begin(self) -> None:
        if is_sqlite(self.url):
            # In a thread: taking the lock waits for a writer that needs the event loop to commit.
            self._lock = await asyncio.to_thread(self._hold_sqlite_lock)
            return
        self._admin = await asyncpg.connect(host=pg.HOST, port=pg.PORT, user=pg.USER, database="postgres")
        name = self.url.database
        await self._admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await self._admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )

    def _hold_sqlite_lock(self) -> sqlite3.Connection:
        assert self.url.database is not None
        conn = sqlite3.connect(self.url.database, isolation_level=None, check_same_thread=False, timeout=10)
        conn.execute("BEGIN EXCLUSIVE")
        return conn

    async def end(self) -> None:
        if self._lock is not None:
            self._lock.execute("ROLLBACK")
            self._lock.close()
            self._lock = None
        if self._admin is not None:
            await self._admin.execute(f'ALTER DATABASE "{self.url.database}" ALLOW_CONNECTIONS true')
            await self._admin.close()
            self._admin = None


def _short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    if is_sqlite(db_url):
        # After the appliance's own pragmas, which set the 30 s timeout.
        event.listen(engine.sync_engine, "connect", _short_busy_timeout)
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def outage(db_url: str) -> AsyncIterator[Outage]:
    down = Outage(db_url)
    try:
        yield down
    finally:
        await down.end()


async def eventually(what: str, check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.1)


# --------------------------------------------------------------------- the event journal ---

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def motion(start: datetime) -> tuple[EventStarted, list[PeakChanged], EventEnded]:
    event_id = event_id_for(CAM, start)
    peaks = [PeakChanged(event_id, CAM, start + timedelta(seconds=i), 0.5 + i / 10, (BOX,)) for i in range(3)]
    end = EventEnded(
        event_id,
        CAM,
        start,
        start + timedelta(seconds=5),
        start - timedelta(seconds=3),
        start + timedelta(seconds=8),
        EndReason.QUIET,
        True,
        peaks[-1].t,
        peaks[-1].score,
        (BOX,),
    )
    return EventStarted(event_id, CAM, start, start - timedelta(seconds=3), True), peaks, end


async def write_event(journal: EventJournal, events: EventStore, start: datetime) -> asyncio.Future[bool]:
    """One motion event's writes as the pipeline makes them; the end's future."""
    begun, peaks, end = motion(start)
    await journal.write(begun.event_id, "start", partial(events.started, begun, snapshot=b"start", thumbnail=b"s"))
    for n, peak in enumerate(peaks):
        await journal.write(peak.event_id, "peak", partial(events.peak, peak, snapshot=b"peak%d" % n, thumbnail=b"p"))
    return await journal.write(end.event_id, "end", partial(events.ended, end))


async def test_writes_the_database_refuses_wait_in_order_and_are_made_once_it_is_back(
    engine: AsyncEngine, outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    events = EventStore(make_sessionmaker(engine))
    journal = EventJournal(CAM)
    began, _peaks, end = motion(T0)
    await outage.begin()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        started = time.monotonic()
        ended = await write_event(journal, events, T0)
        # Only the first write waited for the database (SQLite: its busy timeout); the rest queued.
        assert time.monotonic() - started < BUSY_TIMEOUT_MS / 1000 + 1.0
        assert not ended.done()
        assert len(journal.waiting()) == 3  # start, the newest peak, end
        await asyncio.sleep(1.0)  # a retry or two, refused too
        await outage.end()
        assert await asyncio.wait_for(ended, 5.0) is True

    row = await events.get(began.event_id)
    assert row is not None
    # The start came first (the row exists), the newest peak's snapshot replaced it, the end closed it.
    assert (row.snapshot_jpeg, row.end_utc, row.end_reason) == (b"peak2", end.end, "quiet")
    assert (row.peak_at, row.peak_score) == (end.peak_t, end.peak_score)
    assert journal.waiting() == []
    messages = [r.getMessage() for r in caplog.records]
    assert sum("refuses writes" in m for m in messages) == 1, messages
    assert any("takes writes again" in m for m in messages)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_writes_given_up_are_logged_once_per_event_with_what_was_lost(
    engine: AsyncEngine, outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    events = EventStore(make_sessionmaker(engine))
    journal = EventJournal(CAM, max_pending=3)
    first, _, _ = motion(T0)
    second, peaks, end = motion(T0 + timedelta(minutes=1))
    await outage.begin()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        first_ended = await write_event(journal, events, T0)
        # A fourth write: the oldest event's go.
        await journal.write(second.event_id, "start", partial(events.started, second, snapshot=b"second"))
        assert first_ended.done() and first_ended.result() is False
        journal.abandon()  # the pipeline stops with the database still away
        await outage.end()
        # The second event goes on after its start was given up: its peaks are dropped without a
        # word, its end makes the row (without the snapshot) once the database takes it.
        await journal.write(second.event_id, "peak", partial(events.peak, peaks[0], snapshot=b"x", thumbnail=None))
        second_ended = await journal.write(end.event_id, "end", partial(events.ended, end))
        assert await asyncio.wait_for(second_ended, 5.0) is True

    assert await events.get(first.event_id) is None
    row = await events.get(second.event_id)
    assert row is not None and row.end_utc == end.end and row.snapshot_jpeg is None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2, errors
    assert first.event_id in errors[0] and "Lost: its start, peak, end; the event has no row" in errors[0]
    assert second.event_id in errors[1] and "Lost: its start; the event has no row" in errors[1]
    assert all("Make the database reachable again" in e for e in errors)
    assert not [r for r in caplog.records if "dropped" in r.getMessage()]


# ---------------------------------------------------------------------- the whole camera ---


@pytest.fixture(scope="module")
def sim_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cache_dir(tmp_path_factory)


@pytest.fixture
async def camera(sim_cache: Path) -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer([SimCamera(CAM, SCENE)], fps=TINY_FPS, gop_seconds=TINY_GOP, cache_dir=sim_cache)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class Appliance:
    """The camera side as the daemon assembles and stops it, on the test's database."""

    def __init__(
        self,
        tmp_path: Path,
        server: SimulatorServer,
        engine: AsyncEngine,
        areas: dict[str, Any] | None = None,
        **events: float,
    ) -> None:
        self.cfg = Config.model_validate(
            {
                "appliance": {"data_dir": str(tmp_path / "data")},
                "recording": {"segment_seconds": 2.0},
                "cameras": [
                    {
                        "id": CAM,
                        "name": CAM,
                        "main_url": server.url(CAM, "main"),
                        "sub_url": server.url(CAM, "sub"),
                        # Calibrated as soon as the picture is still: the event opens sooner.
                        "motion": {"settle_s": 0.0},
                        "events": {"pre_roll_s": 1.0, "post_roll_s": 1.0, "merge_gap_s": MERGE_GAP_S} | events,
                    }
                ],
            }
        )
        if areas:
            # Past the load check, which can only assume a picture shape (see config.CHECKED_FRAME).
            self.cfg.cameras[0] = self.cfg.cameras[0].model_copy(update=areas)
        self.sessions: async_sessionmaker[AsyncSession] = make_sessionmaker(engine)
        self.events = EventStore(self.sessions)
        self.board = StatusBoard()
        self.bus = EventBus()
        self.opened = self.bus.subscribe(EventOpened)
        self.closed = self.bus.subscribe(EventClosed)
        self.system: CameraSystem | None = None
        self.supervisor: Supervisor | None = None
        self.stopped = False

    async def start(self) -> None:
        self.board.register(CAM, CAM)
        self.system = await build_cameras(self.cfg, self.sessions, self.board, self.bus)
        self.supervisor = Supervisor.from_config(self.cfg.daemon)
        for name, component, stage in self.system.components:
            self.supervisor.add(name, component, stage=stage)
        self.supervisor.start()

    async def first_event(self) -> str:
        return (await asyncio.wait_for(self.opened.get(), 10)).event_id

    async def halt(self) -> float:
        """The components stopped as at SIGTERM; how long they took."""
        assert self.supervisor is not None
        self.stopped = True
        started = time.monotonic()
        assert await self.supervisor.stop(STOP_BUDGET_S) == []
        return time.monotonic() - started

    async def finish(self) -> None:
        """What the daemon does once its components stopped: sign the evidence chain's heads."""
        assert self.system is not None
        await self.system.finish()

    async def stop(self) -> float:
        """SIGTERM's sequence to the end; how long the components took."""
        took = await self.halt()
        await self.finish()
        return took

    async def has_clip(self, event_id: str) -> bool:
        found = await self.events.get(event_id)
        return found is not None and found.clip_key is not None

    async def chained(self) -> set[str]:
        assert self.system is not None
        return await self.system.ledger.recorded_keys(CAM)

    def camera_restarts(self) -> dict[str, int]:
        assert self.supervisor is not None
        statuses = [s for s in self.supervisor.status() if s.name.startswith(f"camera:{CAM}:")]
        assert not [s.name for s in statuses if s.state is ComponentState.FAILED]
        return {s.name: s.restarts for s in statuses if s.restarts}


@pytest.fixture
async def appliance(
    tmp_path: Path, camera: SimulatorServer, engine: AsyncEngine, outage: Outage
) -> AsyncIterator[Callable[..., Awaitable[Appliance]]]:
    """Starts the appliance (again: the next start on the same data), with these event settings;
    all are stopped at the end."""
    started: list[Appliance] = []

    async def start(areas: dict[str, Any] | None = None, **events: float) -> Appliance:
        box = Appliance(tmp_path, camera, engine, areas, **events)
        started.append(box)
        await box.start()
        return box

    try:
        yield start
    finally:
        await outage.end()
        for box in started:
            if box.supervisor is not None and not box.stopped:
                await box.supervisor.stop(STOP_BUDGET_S)
        # A stopped stream's thread ends when its connection does, then tells the event loop,
        # which must still be running by then.
        await camera.stop()
        for pump in [t for t in threading.enumerate() if t.name.startswith(f"pump-{CAM}-")]:
            await asyncio.to_thread(pump.join, 10)


def check_clip(root: Path, row: Event | None) -> None:
    assert row is not None and row.clip_key is not None, row
    path = root / row.clip_key
    assert path.is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == row.clip_sha256
    assert row.clip_size == path.stat().st_size


@pytest.mark.slow
@REALTIME
async def test_an_outage_during_an_event_delays_its_row_and_restarts_nothing(
    appliance: Callable[..., Awaitable[Appliance]], outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    box = await appliance()
    await asyncio.sleep(0.5)  # past the start's own queries; the figure enters 3 s into the scene
    await outage.begin()
    event_id = await box.first_event()
    await asyncio.sleep(1.0)  # its start and peaks are refused meanwhile
    await outage.end()
    back = datetime.now(UTC)

    async def stored() -> bool:
        row = await box.events.get(event_id)
        return row is not None and row.peak_at is not None

    await eventually("the event's row", stored, 6)
    took = await box.stop()

    row = await box.events.get(event_id)
    assert row is not None and row.created_at >= back  # written late, not lost
    assert row.snapshot_jpeg is not None and row.snapshot_jpeg[:2] == b"\xff\xd8"
    assert row.end_reason == "shutdown" and row.end_utc is not None
    check_clip(box.cfg.footage_dir, row)
    assert took < STOP_BUDGET_S
    assert box.camera_restarts() == {}
    messages = [r.getMessage() for r in caplog.records]
    assert any("refuses writes" in m for m in messages), messages
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], messages


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_analysis_that_cannot_run_fails_loudly_and_recording_goes_on(
    appliance: Callable[..., Awaitable[Appliance]], caplog: pytest.LogCaptureFixture
) -> None:
    # Masks that leave nothing to watch in this camera's picture: the detector refuses them at
    # the first frame it sees.
    caplog.set_level(logging.ERROR)
    box = await appliance({"masks": [[[0, 0], [1, 0], [1, 1], [0, 1]]]})
    assert box.supervisor is not None

    def analyser() -> ComponentStatus:
        (status,) = [s for s in box.supervisor.status() if s.name == f"camera:{CAM}:analyser"]  # type: ignore[union-attr]
        return status

    async def failed() -> bool:
        return analyser().restarts >= 1 or analyser().state is ComponentState.FAILED

    await eventually("the analyser's failure", failed, 10)
    # What to do is in the component's status (the console shows it), and the trace in the log.
    error = analyser().last_error or ""
    assert "motion analysis of camera 'cam1' stopped" in error and "draw larger zones" in error, error
    assert any(r.exc_info and "draw larger zones" in str(r.exc_info[1]) for r in caplog.records)

    async def recorded() -> bool:
        async with box.sessions() as session:
            return bool(await session.scalar(select(func.count()).select_from(Segment).where(Segment.camera_id == CAM)))

    await eventually("a recorded segment", recorded, 10)
    await box.stop()


@pytest.mark.slow
@REALTIME
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_event_open_at_the_stop_gets_its_clip_before_the_exit(
    appliance: Callable[..., Awaitable[Appliance]],
) -> None:
    box = await appliance()
    event_id = await box.first_event()
    await asyncio.sleep(0.5)
    took = await box.stop()

    row = await box.events.get(event_id)
    assert row is not None and row.end_reason == "shutdown"
    check_clip(box.cfg.footage_dir, row)
    assert row.clip_to is not None and row.clip_duration_s is not None
    # All of it, up to where recording stopped.
    assert row.clip_duration_s >= (row.clip_to - row.clip_from).total_seconds() - 1.0
    assert took < STOP_BUDGET_S
    assert row.clip_key in await box.chained()

    # A clip the stop published but never recorded in its event (it stopped in between): the next
    # start finds the file in the evidence chain and puts it back into the event.
    await box.events.clip_removed(event_id)
    again = await appliance()

    await eventually("the clip back in its event", partial(again.has_clip, event_id), 5)
    await again.stop()
    adopted = await again.events.get(event_id)
    check_clip(box.cfg.footage_dir, adopted)
    assert adopted is not None and adopted.clip_sha256 == row.clip_sha256


@pytest.mark.slow
@REALTIME
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_clip_whose_post_roll_outlasts_the_stop_is_cut_at_the_stop(
    appliance: Callable[..., Awaitable[Appliance]],
) -> None:
    # The figure leaves and the event ends, but its clip is to run 5 s longer: the stop comes first.
    box = await appliance(merge_gap_s=0.5, post_roll_s=5.0)
    ended = await asyncio.wait_for(box.closed.get(), 12)
    took = await box.stop()
    stopped = datetime.now(UTC)

    row = await box.events.get(ended.event_id)
    assert row is not None and row.end_reason == "quiet" and row.clip_to is not None
    assert row.clip_to > stopped  # footage that was never recorded: the clip did not wait for it
    check_clip(box.cfg.footage_dir, row)
    assert took < STOP_BUDGET_S


@pytest.mark.slow
@REALTIME
async def test_a_clip_the_stop_could_not_make_is_made_at_the_next_start(
    appliance: Callable[..., Awaitable[Appliance]], outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    box = await appliance()
    event_id = await box.first_event()

    async def stored() -> bool:
        return await box.events.get(event_id) is not None

    def lost() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == LOGGER]

    async def given_up() -> bool:
        return bool(lost())

    await eventually("the event's row", stored, 5)
    # The database goes away and is still away when the pipeline gives up its last writes: the
    # event's end is lost, so its clip has no row to go into. (It comes back before the stop's
    # end: a recorder cannot finish its segment without it.)
    await outage.begin()
    halting = asyncio.create_task(box.halt())
    await eventually("the stopping pipeline gives the event up", given_up, STOP_BUDGET_S)
    await outage.end()
    await halting
    await box.finish()
    assert box.camera_restarts() == {}
    assert len(lost()) == 1 and event_id in lost()[0] and "Lost: its end; its row keeps" in lost()[0], lost()
    row = await box.events.get(event_id)
    assert row is not None and row.end_utc is None and row.clip_key is None

    # The next start closes the event and makes its clip from the footage recorded before the stop.
    again = await appliance()

    await eventually("the clip made at the next start", partial(again.has_clip, event_id), 8)
    await again.stop()
    row = await again.events.get(event_id)
    check_clip(box.cfg.footage_dir, row)
    assert row is not None and row.end_reason == "shutdown"

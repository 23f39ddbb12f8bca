"""The recorder against real RTSP peers: the camera simulator (H.264), GStreamer (H.265), a kill -9
of a recording process, and a footage disk that really fills up."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.cameras.fanout import CapturedPacket, StreamFanout, Subscription, pump
from appliance.cameras.reconcile import reconcile
from appliance.cameras.recorder import FRAGMENT_SECONDS, Recorder
from appliance.simulator.server import SimCamera, SimulatorServer
from appliance.storage.db import create_engine, make_sessionmaker
from appliance.storage.footage import LocalFootageStore
from appliance.storage.migrate import upgrade
from appliance.storage.models import SEGMENT_COMPLETE
from appliance.storage.segments import SegmentIndex, SegmentInfo
from tests.gst_peer import SYSTEM_PYTHON, free_port, gst_available
from tests.recorder_support import (
    assert_same_units,
    check_playable,
    decode_all,
    encode_clip,
    file_payloads,
    first_packet_flags,
    hevc_parameter_set,
    wait_for,
)
from tests.simulator_support import TINY, cache_dir
from tests.test_recorder_storage import tmpfs

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SIM_FPS = 15
SIM_GOP_S = 1.0
EVERYTHING = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def sim_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cache_dir(tmp_path_factory)


@pytest.fixture
async def camera(sim_cache: Path) -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer([SimCamera("cam1", TINY)], fps=SIM_FPS, gop_seconds=SIM_GOP_S, cache_dir=sim_cache)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def sqlite_index(path: Path) -> AsyncIterator[tuple[AsyncEngine, SegmentIndex]]:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade(engine)
    try:
        yield engine, SegmentIndex(make_sessionmaker(engine))
    finally:
        await engine.dispose()


class Live:
    """A camera URL pumped into a fanout by a thread, with a recorder on it (and a tap)."""

    def __init__(self, url: str, store: LocalFootageStore, index: SegmentIndex, **options: object) -> None:
        self.fanout = StreamFanout("cam1")
        self.tap = self.fanout.subscribe("tap", 10_000)
        self.finalised: list[SegmentInfo] = []
        self.recorder = Recorder(
            "cam1", self.fanout.subscribe("recorder"), store, index, on_segment_finalised=self._hook, **options
        )  # type: ignore[arg-type]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, args=(url,), daemon=True)
        self._thread.start()
        self.task = asyncio.create_task(self.recorder.run())

    def _pump(self, url: str) -> None:
        with contextlib.suppress(Exception):
            pump(url, self.fanout, self._stop)

    async def _hook(self, info: SegmentInfo) -> None:
        self.finalised.append(info)

    async def stop(self) -> None:
        self.recorder.stop()
        await asyncio.wait_for(self.task, 20)
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 10)

    def tapped(self) -> list[bytes]:
        return [bytes(item.packet) for item in _drain(self.tap) if isinstance(item, CapturedPacket)]


def _drain(sub: Subscription) -> Iterator[object]:
    while (item := sub.get(timeout=0)) is not None:
        yield item


async def _check_index_matches_files(store: LocalFootageStore, index: SegmentIndex) -> None:
    assert list(store.partial_keys()) == []
    statuses = await index.statuses("cam1")
    assert set(statuses) == set(store.iter_keys())
    assert set(statuses.values()) == {SEGMENT_COMPLETE}
    for key in statuses:
        row = await index.get(key)
        data = (store.root / key).read_bytes()
        assert row is not None and row.sha256 == hashlib.sha256(data).hexdigest() and row.size_bytes == len(data)
        duration, _codec, _tag = check_playable(store.root / key)
        assert duration == pytest.approx(row.duration_s, abs=0.05)


async def test_recording_a_camera_by_copy_into_ten_second_segments(tmp_path: Path, camera: SimulatorServer) -> None:
    store = LocalFootageStore(tmp_path / "footage")
    async with sqlite_index(tmp_path / "appliance.db") as (_engine, index):
        started = datetime.now(UTC)
        live = Live(camera.url("cam1"), store, index, segment_seconds=10.0)
        # A viewer that stopped reading: it loses packets, the recorder none.
        stalled = live.fanout.subscribe("stalled-viewer", max_packets=5)
        await asyncio.sleep(25)
        await live.stop()
        rows = await index.list_range("cam1", *EVERYTHING)
        await _check_index_matches_files(store, index)

    assert len(rows) >= 3 and [r.key for r in rows] == [i.key for i in live.finalised]
    assert stalled.dropped > 0 and live.recorder.subscription.dropped == 0
    assert abs((rows[0].start_utc - started).total_seconds()) < 3
    recorded: list[bytes] = []
    for n, row in enumerate(rows):
        path = store.root / row.key
        assert row.duration_s is not None and row.end_utc is not None
        if n < len(rows) - 1:  # the last one was cut short by stopping
            assert 10.0 <= row.duration_s <= 10.0 + SIM_GOP_S + 1 / SIM_FPS
            assert abs((rows[n + 1].start_utc - row.end_utc).total_seconds()) < 0.1
        duration, codec, tag = check_playable(path)
        assert (codec, tag, row.width, row.height) == ("h264", "avc1", 1280, 720)
        assert first_packet_flags(path).startswith("K")
        frames, packets = decode_all(path)
        assert frames == packets == round(duration * SIM_FPS)
        recorded += file_payloads(path)
    assert_same_units(live.tapped(), recorded)


@pytest.fixture(scope="module")
def h265_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode_clip(tmp_path_factory.mktemp("h265") / "clip.mp4", 7.0, "libx265")


@contextlib.contextmanager
def gst_file_camera(clip: Path, codec: str) -> Iterator[str]:
    reason = gst_available()
    if reason:
        pytest.skip(reason)
    import subprocess

    port = free_port()
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, str(ROOT / "tests" / "peers" / "gst_file_camera.py"), str(port), str(clip), codec],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        yield f"rtsp://127.0.0.1:{port}/file"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_h265_is_recorded_by_copy_and_tagged_hvc1(tmp_path: Path, h265_clip: Path) -> None:
    store = LocalFootageStore(tmp_path / "footage")
    with gst_file_camera(h265_clip, "h265") as url:
        async with sqlite_index(tmp_path / "appliance.db") as (_engine, index):
            live = Live(url, store, index, segment_seconds=2.0)
            # The clip plays once: the camera ends the stream, which ends the last segment.
            await wait_for(
                lambda: live.recorder.status.segments >= 3 and live.recorder.status.current_key is None,
                20,
                "three H.265 segments",
            )
            await live.stop()
            rows = await index.list_range("cam1", *EVERYTHING)
            await _check_index_matches_files(store, index)
    recorded: list[bytes] = []
    for row in rows:
        path = store.root / row.key
        _duration, codec, tag = check_playable(path)
        assert (codec, tag, row.codec) == ("hevc", "hvc1", "hevc")
        assert first_packet_flags(path).startswith("K")
        frames, packets = decode_all(path)
        assert frames == packets > 0
        recorded += file_payloads(path)
    assert_same_units(live.tapped(), recorded, ignore=hevc_parameter_set)


async def test_kill_9_loses_at_most_the_last_fragment(tmp_path: Path, camera: SimulatorServer) -> None:
    footage, db_file = tmp_path / "footage", tmp_path / "appliance.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.record_camera",
        camera.url("cam1"),
        str(footage),
        f"sqlite+aiosqlite:///{db_file}",
        "cam1",
        "3",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        opened: list[str] = []
        async with asyncio.timeout(30):
            while len(opened) < 2:
                line = (await proc.stdout.readline()).decode()
                assert line, "the recording process ended early"
                opened.append(line.split()[1])
        await asyncio.sleep(2.3)  # into the second segment, between fragments
        killed_at = datetime.now(UTC)
        proc.send_signal(signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()

    store = LocalFootageStore(footage)
    assert list(store.partial_keys()) == [opened[1]]
    async with sqlite_index(db_file) as (_engine, index):
        report = await reconcile(store, index, ["cam1"])
        assert report.repaired == [opened[1]] and report.problems == []
        await _check_index_matches_files(store, index)
        newest = await index.newest("cam1")
    assert newest is not None and newest.key == opened[1] and newest.end_utc is not None
    # At most the fragment being written is lost (plus the camera-to-disk latency).
    assert newest.end_utc >= killed_at - timedelta(seconds=FRAGMENT_SECONDS + 1.0)


async def test_a_full_disk_pauses_recording_keeps_the_database_sound_and_recording_resumes(
    tmp_path: Path, camera: SimulatorServer
) -> None:
    with tmpfs(tmp_path / "disk", "3m") as disk:
        store = LocalFootageStore(disk / "footage")
        async with sqlite_index(disk / "appliance.db") as (_engine, index):
            # The database shares the small disk, as on a box with one disk.
            filler = disk / "filler"
            filler.write_bytes(b"\0" * (store.free_bytes() - 300 * 1024))
            live = Live(camera.url("cam1"), store, index, segment_seconds=2.0, min_free_bytes=0, disk_retry_s=0.5)
            await wait_for(lambda: live.recorder.status.state == "disk_full", 20, "the disk to fill")
            assert "footage disk is full" in (live.recorder.status.last_error or "")
            with sqlite3.connect(disk / "appliance.db") as db:
                assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            filler.unlink()
            await wait_for(lambda: live.recorder.status.state == "recording", 20, "recording to resume")
            assert live.recorder.status.last_error is None
            resumed = live.recorder.status.segments
            await wait_for(lambda: live.recorder.status.segments > resumed, 20, "a segment after resuming")
            await live.stop()
            await _check_index_matches_files(store, index)
            report = await reconcile(store, index, ["cam1"])
            assert not report.changed and report.problems == []
        with sqlite3.connect(disk / "appliance.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

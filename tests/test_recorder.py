"""The recorder on clips fed as if live: segment cuts, remux by copy, timestamps, index, full disk."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest
from av.container import InputContainer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.cameras.fanout import StreamFanout
from appliance.cameras.pressure import RecordingPressure
from appliance.cameras.recorder import BATCH_S, Recorder
from appliance.storage.db import create_engine, make_sessionmaker
from appliance.storage.footage import LocalFootageStore
from appliance.storage.migrate import upgrade
from appliance.storage.models import SEGMENT_COMPLETE
from appliance.storage.segments import SegmentIndex, SegmentInfo
from tests.recorder_support import (
    CLIP_FPS,
    assert_same_units,
    check_playable,
    decode_all,
    feed_clip,
    file_payloads,
    first_packet_flags,
    wait_for,
)
from tests.recorder_support import encode_clip as _encode

T0 = datetime(2026, 5, 4, 9, 0, 0, 500000, tzinfo=UTC)
EVERYTHING = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
FRAME_S = 1 / CLIP_FPS


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "h264": _encode(d / "h264.mp4", 9.0),
        "bframes": _encode(d / "bframes.mp4", 5.0, bframes=True),
        "mjpeg": _encode(d / "mjpeg.avi", 1.0, "mjpeg"),
    }


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db' / 'appliance.db'}")
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


class Rig:
    """A fanout, a recorder on it, and the recorder's run task."""

    def __init__(self, root: Path, engine: AsyncEngine, **options: object) -> None:
        self.store = LocalFootageStore(root)
        self.index = SegmentIndex(make_sessionmaker(engine))
        self.fanout = StreamFanout("cam1")
        self.finalised: list[SegmentInfo] = []
        self.recorder = Recorder(
            "cam1",
            self.fanout.subscribe("recorder", 2000),
            self.store,
            self.index,
            on_segment_finalised=self._hook,
            **options,
        )  # type: ignore[arg-type]
        self.task = asyncio.create_task(self.recorder.run())

    async def _hook(self, info: SegmentInfo) -> None:
        self.finalised.append(info)

    async def settle(self, segments: int) -> None:
        await wait_for(lambda: len(self.finalised) >= segments, 20, f"{segments} finalised segments")

    async def stop(self) -> None:
        self.recorder.stop()
        await asyncio.wait_for(self.task, 20)

    def path(self, key: str) -> Path:
        return self.store.root / key


async def test_segments_are_cut_at_keyframes_copied_and_indexed(
    tmp_path: Path, db_engine: AsyncEngine, clips: dict[str, Path]
) -> None:
    rig = Rig(tmp_path / "footage", db_engine, segment_seconds=3.0)
    fed = await asyncio.to_thread(feed_clip, rig.fanout, clips["h264"], T0)
    await rig.settle(3)
    await rig.stop()

    rows = await rig.index.list_range("cam1", *EVERYTHING)
    assert [r.key for r in rows] == [i.key for i in rig.finalised]
    assert sorted(rig.store.iter_keys()) == sorted(r.key for r in rows)
    assert len(rows) == 3
    recorded: list[bytes] = []
    for n, row in enumerate(rows):
        path = rig.path(row.key)
        assert row.status == SEGMENT_COMPLETE and (row.codec, row.width, row.height) == ("h264", 320, 240)
        assert row.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and row.size_bytes == path.stat().st_size
        assert row.duration_s == pytest.approx(3.0, abs=FRAME_S / 2)
        duration, codec, tag = check_playable(path)
        assert (codec, tag) == ("h264", "avc1") and duration == pytest.approx(row.duration_s, abs=0.01)
        assert first_packet_flags(path).startswith("K")
        frames, packets = decode_all(path)
        assert frames == packets == 3 * CLIP_FPS
        # Wall-clock times: contiguous, from the capture clock, in the name and in the file's metadata.
        assert row.start_utc == T0 + timedelta(seconds=3 * n)
        assert row.duration_s is not None and row.end_utc == row.start_utc + timedelta(seconds=row.duration_s)
        assert row.key.endswith(f"{row.start_utc:%Y%m%dT%H%M%S}Z.mp4")
        with av.open(str(path)) as container:
            assert isinstance(container, InputContainer)
            assert container.metadata["creation_time"].startswith(f"{row.start_utc:%Y-%m-%dT%H:%M:%S}")
        recorded += file_payloads(path)
    # Copied, not re-encoded: every access unit of the source, unchanged, in order.
    assert len(recorded) == fed.packets
    assert_same_units(fed.payloads, recorded, source_annex_b=False)
    assert rig.recorder.status.segments == 3 and rig.recorder.status.state == "stopped"


async def test_bframes_and_a_clock_jump_still_give_a_clean_file(
    tmp_path: Path, sqlite_engine: AsyncEngine, clips: dict[str, Path]
) -> None:
    rig = Rig(tmp_path / "footage", sqlite_engine, segment_seconds=60.0)
    # Mid-GOP (packet 37 is no keyframe) the camera's timestamps jump 20 s ahead.
    fed = await asyncio.to_thread(feed_clip, rig.fanout, clips["bframes"], T0, pts_jump=(37, 20.0))
    await rig.settle(1)
    await rig.stop()
    (info,) = rig.finalised
    duration, _codec, _tag = check_playable(rig.path(info.key))
    # The jump is closed up, not recorded as 20 s of nothing.
    assert duration == pytest.approx(5.0, abs=2 * FRAME_S) and info.duration_s == pytest.approx(duration, abs=0.1)
    frames, packets = decode_all(rig.path(info.key))
    assert frames == packets == fed.packets


async def test_recording_waits_for_a_keyframe_and_a_new_connection_starts_a_new_file(
    tmp_path: Path, sqlite_engine: AsyncEngine, clips: dict[str, Path]
) -> None:
    rig = Rig(tmp_path / "footage", sqlite_engine, segment_seconds=60.0)
    with av.open(str(clips["h264"])) as container:
        assert isinstance(container, InputContainer)
        video = container.streams.video[0]
        rig.fanout.begin_session(video)
        packets = [p for p in container.demux(video) if p.size]
    # Joining mid-GOP: the 5 packets before the next keyframe cannot be decoded, so are not kept.
    for n, p in enumerate(packets[10:40]):
        rig.fanout.publish(p, T0 + timedelta(seconds=n * FRAME_S))
    rig.fanout.end_session("camera rebooted")
    await asyncio.to_thread(feed_clip, rig.fanout, clips["h264"], T0 + timedelta(seconds=60))
    await rig.settle(2)
    await rig.stop()
    first, second = rig.finalised
    assert first.duration_s == pytest.approx(25 * FRAME_S, abs=0.01)
    assert first.start_utc == T0 + timedelta(seconds=5 * FRAME_S)
    assert second.start_utc == T0 + timedelta(seconds=60) and second.duration_s == pytest.approx(9.0, abs=0.01)


async def test_an_unsupported_codec_is_reported_not_recorded(
    tmp_path: Path, sqlite_engine: AsyncEngine, clips: dict[str, Path]
) -> None:
    rig = Rig(tmp_path / "footage", sqlite_engine)
    await asyncio.to_thread(feed_clip, rig.fanout, clips["mjpeg"], T0, end_session=False)
    await wait_for(lambda: rig.recorder.status.state == "unsupported", 10, "the recorder to refuse MJPEG")
    await rig.stop()
    assert "mjpeg" in (rig.recorder.status.last_error or "") and "H.264" in (rig.recorder.status.last_error or "")
    assert list(rig.store.iter_keys()) == [] and list(rig.store.partial_keys()) == []


async def test_too_little_free_space_pauses_recording_until_there_is_room(
    tmp_path: Path, sqlite_engine: AsyncEngine, clips: dict[str, Path]
) -> None:
    rig = Rig(tmp_path / "footage", sqlite_engine, segment_seconds=3.0, min_free_bytes=2**62, disk_retry_s=0.0)
    await asyncio.to_thread(feed_clip, rig.fanout, clips["h264"], T0, end_session=False)
    await wait_for(lambda: rig.recorder.status.state == "disk_full", 10, "the recorder to notice the full disk")
    assert "MiB free" in (rig.recorder.status.last_error or "")
    assert list(rig.store.iter_keys()) == [] and await rig.index.known_keys() == set()
    # The recorder takes packets in batches: the first clip is all passed over before space is freed.
    await wait_for(lambda: rig.recorder.subscription.backlog == 0, 10, "the first clip to be passed over")
    await asyncio.sleep(2 * BATCH_S)  # the last batch taken is handled before the next is waited for
    assert list(rig.store.iter_keys()) == []
    # Retention freed space: the next keyframe opens a segment again.
    rig.recorder.min_free_bytes = 0
    await asyncio.to_thread(feed_clip, rig.fanout, clips["h264"], T0 + timedelta(seconds=30))
    await rig.settle(3)
    await rig.stop()
    assert rig.recorder.status.last_error is None
    assert len(list(rig.store.iter_keys())) == 3


async def test_index_updates_wait_for_the_database_and_keep_their_order(
    tmp_path: Path, sqlite_engine: AsyncEngine, clips: dict[str, Path]
) -> None:
    rig = Rig(tmp_path / "footage", sqlite_engine, segment_seconds=3.0)
    # The database fails every statement on the table for a while (as when its disk is full or
    # the server restarts): recording goes on, the index catches up afterwards.
    async with sqlite_engine.begin() as conn:
        await conn.execute(text("ALTER TABLE segments RENAME TO segments_away"))
    await asyncio.to_thread(feed_clip, rig.fanout, clips["h264"], T0)
    await wait_for(lambda: rig.recorder.status.segments == 3, 10, "three segments written")
    assert len(list(rig.store.iter_keys())) == 3 and rig.finalised == []
    async with sqlite_engine.begin() as conn:
        await conn.execute(text("ALTER TABLE segments_away RENAME TO segments"))
    await rig.settle(3)
    await rig.stop()
    rows = await rig.index.list_range("cam1", *EVERYTHING)
    assert [r.key for r in rows] == sorted(rig.store.iter_keys()) == [i.key for i in rig.finalised]
    assert {r.status for r in rows} == {SEGMENT_COMPLETE}


async def test_a_recorder_handed_a_backlog_raises_the_pressure_and_records_everything(
    tmp_path: Path, sqlite_engine: AsyncEngine, clips: dict[str, Path]
) -> None:
    pressure = RecordingPressure()
    rig = Rig(tmp_path / "footage", sqlite_engine, segment_seconds=3.0, pressure=pressure)
    # The whole clip at once, as a recording thread kept from running for seconds would find it.
    fed = feed_clip(rig.fanout, clips["h264"], T0)
    await wait_for(lambda: pressure.raised > 0, 10, "the recorder to report it was behind")
    await rig.settle(3)
    await rig.stop()
    assert sum(i.duration_s for i in rig.finalised) == pytest.approx(fed.packets / CLIP_FPS, abs=0.2)


async def test_a_burst_of_fresh_packets_at_connect_is_not_pressure(
    tmp_path: Path, sqlite_engine: AsyncEngine, clips: dict[str, Path]
) -> None:
    """A camera sends a GOP in one burst at connect: a big batch, but captured just now."""
    pressure = RecordingPressure()
    rig = Rig(tmp_path / "footage", sqlite_engine, segment_seconds=3.0, pressure=pressure)
    fed = feed_clip(rig.fanout, clips["h264"], datetime.now(UTC) - timedelta(seconds=1))
    await rig.settle(3)
    await rig.stop()
    assert rig.recorder.status.packets == fed.packets and pressure.raised == 0

"""Event clips: cut by copy out of footage recorded by the real Recorder, checked with PyAV, ffprobe
and the MP4 box layout; the H.264 rendition of H.265 footage; ClipService end to end (evidence
chain, events table, bus), giving up when the footage never comes; live latency; Chromium playback."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import numpy as np
import pytest
from aiohttp import web
from av.container import InputContainer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.bus import EventBus
from appliance.cameras.clips import ClipInfo, ClipService, NoFootage, build_clip, footage_end, h264_rendition
from appliance.cameras.events import EndReason, EventEnded, EventStarted, event_id_for
from appliance.cameras.fanout import StreamFanout, pump
from appliance.cameras.messages import ClipReady
from appliance.cameras.recorder import DEFAULT_SEGMENT_SECONDS, Recorder
from appliance.evidence.ledger import EvidenceLedger
from appliance.simulator.server import SimCamera, SimulatorServer
from appliance.storage.db import create_engine, make_sessionmaker
from appliance.storage.events import EventStore
from appliance.storage.footage import PARTIAL_SUFFIX, InvalidKey, LocalFootageStore, check_key, clip_key
from appliance.storage.migrate import upgrade
from appliance.storage.models import SEGMENT_COMPLETE, SEGMENT_RECORDING, EvidenceRecord, Segment
from appliance.storage.segments import SegmentIndex, SegmentInfo
from tests.recorder_support import CLIP_FPS, CLIP_GOP, CLIP_SIZE, check_playable, encode_clip, feed_clip, wait_for
from tests.simulator_support import TINY, cache_dir
from tests.xdist_groups import REALTIME

T0 = datetime(2026, 5, 4, 9, 0, 0, 500000, tzinfo=UTC)
FRAME_S = 1 / CLIP_FPS
GOP_S = CLIP_GOP / CLIP_FPS
SEGMENT_S = 4.0
SOURCE_S = 12.0
BAR_WIDTH = 16
BAR_STEP = 7
"""encode_clip draws a white bar at x = 7·i mod (width - 16) on frame i: the picture tells its frame."""


# ------------------------------------------------------------------------------- helpers ---


def frame_number(picture: np.ndarray) -> int:
    """Which frame of an encode_clip source this decoded (gray) picture is (unique below 20 s)."""
    columns = picture.astype(np.float64).mean(axis=0)
    x = int(np.argmax(np.convolve(columns, np.ones(BAR_WIDTH), mode="valid")))
    period = CLIP_SIZE[0] - BAR_WIDTH
    return x * pow(BAR_STEP, -1, period) % period


@dataclass
class Decoded:
    first_keyframe: bool
    timeline: list[tuple[float, int]]
    """(presentation time in s, source frame number) of every decoded frame."""
    codec: str
    tag: str
    creation_time: str
    width: int

    @property
    def first_frame(self) -> int:
        return self.timeline[0][1]

    @property
    def last_frame(self) -> int:
        return self.timeline[-1][1]

    @property
    def frames(self) -> int:
        return len(self.timeline)


def decode(path: Path) -> Decoded:
    with av.open(str(path)) as container:
        assert isinstance(container, InputContainer)
        video = container.streams.video[0]
        frames = list(container.decode(video))
        time_base = video.time_base
        assert time_base is not None
        return Decoded(
            first_keyframe=frames[0].key_frame,
            timeline=[(float((f.pts or 0) * time_base), frame_number(f.to_ndarray(format="gray"))) for f in frames],
            codec=video.codec_context.name,
            tag=video.codec_tag,
            creation_time=container.metadata["creation_time"],
            width=video.codec_context.width,
        )


def top_level_boxes(path: Path) -> list[str]:
    boxes, pos, data = [], 0, path.read_bytes()
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
        boxes.append(kind.decode())
        assert size >= 8, f"bad box size at {pos}"
        pos += size
    assert pos == len(data), "the boxes do not add up to the file"
    return boxes


def at(frame: float) -> datetime:
    """UTC capture time of source frame `frame` (fed from T0)."""
    return T0 + timedelta(seconds=frame * FRAME_S)


def check_clip_file(
    store: LocalFootageStore, clip: ClipInfo, clip_from: datetime, clip_to: datetime, *, reordered: int = 0
) -> Decoded:
    """`reordered`: B-frames between reference frames; showing the frame at clip_to then needs the
    reference frame after it, and the frames up to it."""
    path = store.root / clip.key
    data = path.read_bytes()
    assert clip.sha256 == hashlib.sha256(data).hexdigest() and clip.size == len(data)
    boxes = top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat"), f"not faststart: {boxes}"
    assert "moof" not in boxes
    duration, _codec, _tag = check_playable(path)  # ffprobe -v error says nothing
    assert duration == pytest.approx(clip.duration_s, abs=FRAME_S)
    got = decode(path)
    assert got.first_keyframe
    # Every source frame once, in order, each at its time since the first: no gap, no jump.
    assert [n for _t, n in got.timeline] == list(range(got.first_frame, got.first_frame + got.frames))
    for t, n in got.timeline:
        assert t == pytest.approx((n - got.first_frame) * FRAME_S, abs=FRAME_S / 4), f"frame {n} at {t:.3f} s"
    assert datetime.fromisoformat(got.creation_time) == clip.first_frame_utc.replace(microsecond=0)
    # The pictures themselves: the first is the keyframe at or before clip_from, at its recorded time...
    first_utc = at(got.first_frame)
    assert first_utc == pytest.approx(clip.first_frame_utc, abs=timedelta(milliseconds=2))
    assert clip_from - timedelta(seconds=GOP_S) < first_utc <= clip_from
    # ... the last one is at clip_to, and every frame in between is there once.
    assert (
        clip_to - timedelta(seconds=FRAME_S)
        < at(got.last_frame)
        <= clip_to + timedelta(seconds=FRAME_S * (reordered + 1))
    )
    assert clip.duration_s == pytest.approx((clip_to - clip_from).total_seconds(), abs=GOP_S + FRAME_S)
    return got


# ------------------------------------------------------------------------------ fixtures ---


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sources")
    return {
        "h264": encode_clip(d / "h264.mp4", SOURCE_S),
        "bframes": encode_clip(d / "bframes.mp4", SOURCE_S, bframes=True),
        "hevc": encode_clip(d / "hevc.mp4", SOURCE_S, "libx265"),
    }


class Rig:
    """Footage store, database (index, events, evidence, bus) and a Recorder fed from a clip."""

    def __init__(self, root: Path, engine: AsyncEngine, segment_seconds: float) -> None:
        sessions = make_sessionmaker(engine)
        self.store = LocalFootageStore(root / "footage")
        self.index = SegmentIndex(sessions)
        self.events = EventStore(sessions)
        self.ledger = EvidenceLedger(sessions, Ed25519PrivateKey.generate())
        self.bus = EventBus()
        self.sessions = sessions
        self.fanout = StreamFanout("cam1")
        self.finalised: list[SegmentInfo] = []
        self.recorder = Recorder(
            "cam1",
            self.fanout.subscribe("recorder", 5000),
            self.store,
            self.index,
            segment_seconds=segment_seconds,
            on_segment_finalised=self._hook,
        )
        self.task = asyncio.create_task(self.recorder.run())

    async def _hook(self, info: SegmentInfo) -> None:
        self.finalised.append(info)

    async def record(self, clip: Path, *, end_session: bool = True) -> None:
        fed = await asyncio.to_thread(feed_clip, self.fanout, clip, T0, end_session=end_session)
        status = self.recorder.status
        await wait_for(lambda: status.packets == fed.packets, 20, "the recorder to handle every packet")
        if end_session:
            # Every segment closed, published and indexed (the hook runs after the index update).
            await wait_for(
                lambda: (
                    self.recorder.status.current_key is None
                    and not list(self.store.partial_keys())
                    and len(self.finalised) == len(list(self.store.iter_keys()))
                ),
                20,
                "the last segment",
            )

    async def stop(self) -> None:
        self.recorder.stop()
        await asyncio.wait_for(self.task, 20)

    async def segments(self) -> list[Segment]:
        return await self.index.list_range("cam1", T0 - timedelta(hours=1), T0 + timedelta(hours=1))

    def service(self, **options: float) -> ClipService:
        return ClipService(self.store, self.index, self.events, self.ledger, self.bus, **options)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def recording_box(root: Path, segment_seconds: float = SEGMENT_S) -> AsyncIterator[Rig]:
    engine = create_engine(f"sqlite+aiosqlite:///{root / 'appliance.db'}")
    await upgrade(engine)
    rig = Rig(root, engine, segment_seconds)
    try:
        yield rig
    finally:
        await rig.stop()
        await engine.dispose()


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Rig]:
    async with recording_box(tmp_path) as rig:
        yield rig


def sources_of(rows: list[Segment]) -> tuple[list[str], list[datetime]]:
    return [r.key if r.status == SEGMENT_COMPLETE else r.key + PARTIAL_SUFFIX for r in rows], [
        r.start_utc for r in rows
    ]


def ended(start: datetime, end: datetime, clip_from: datetime, clip_to: datetime) -> EventEnded:
    return EventEnded(
        event_id_for("cam1", start),
        "cam1",
        start,
        end,
        clip_from,
        clip_to,
        EndReason.QUIET,
        True,
        start,
        0.5,
        ((1, 2, 3, 4),),
    )


async def store_event(box: Rig, action: EventEnded) -> None:
    await box.events.started(EventStarted(action.event_id, "cam1", action.start, action.clip_from, True))
    await box.events.ended(action)


# ------------------------------------------------------------------------------ clip keys ---


def test_clip_keys_have_their_own_layout_and_are_checked(tmp_path: Path) -> None:
    start = datetime(2026, 2, 28, 23, 59, 59, 900000, tzinfo=UTC)
    event = event_id_for("cam-1", start)
    key = clip_key("cam-1", event, start)
    assert key == "clips/cam-1/2026-02-28/cam-1-20260228T235959.900Z.mp4"
    assert clip_key("cam-1", event, start, rendition=True) == key.replace(".mp4", ".h264.mp4")
    assert check_key(key)["camera"] == "cam-1"
    for bad in (
        "clips/cam-1/2026-02-28/cam-2-20260228T235959.900Z.mp4",
        "clips/cam-1/2026-02-28/../x.mp4",
        key + PARTIAL_SUFFIX,
        "clips/cam-1/2026-02-28/cam-1-20260228T235959Z.mp4",
    ):
        with pytest.raises(InvalidKey):
            check_key(bad)
    with pytest.raises(InvalidKey, match="event id"):
        clip_key("cam-1", "../../etc/passwd", start)
    store = LocalFootageStore(tmp_path)
    with store.open_write(key) as f:
        f.write(b"clip")
    assert store.finalize(key) == 4
    with store.open_read(key) as f:
        assert f.read() == b"clip"
    # Clips are not segments: reconciliation and retention never see them.
    assert list(store.iter_keys()) == [] and list(store.partial_keys()) == []
    store.delete(key)
    assert not store.exists(key)


# ---------------------------------------------------------------------------- build_clip ---


@pytest.mark.parametrize("source", ["h264", "bframes"])
async def test_a_clip_across_two_segments_starts_at_the_keyframe_before_the_pre_roll(
    box: Rig, sources: dict[str, Path], source: str
) -> None:
    await box.record(sources[source])
    rows = await box.segments()
    assert [r.start_utc for r in rows] == [T0, at(60), at(120)]
    # Event from frame 70 to 80: pre-roll 1.3 s (from frame 50.5, mid-GOP), post-roll 0.8 s.
    clip_from, clip_to = at(50.5), at(92)
    keys, starts = sources_of(rows)
    started = time.monotonic()
    clip = await asyncio.to_thread(
        build_clip, box.store, keys, starts, clip_from, clip_to, clip_key("cam1", event_id_for("cam1", at(70)), at(70))
    )
    built_s = time.monotonic() - started
    print(f"\nclip of {clip.duration_s:.1f} s from 2 segments built in {built_s * 1000:.0f} ms")
    got = check_clip_file(box.store, clip, clip_from, clip_to, reordered=2 if source == "bframes" else 0)
    assert got.first_frame == 45 and clip.first_frame_utc == at(45)  # the keyframe at 3.0 s
    assert (clip.codec, got.codec, got.tag) == ("h264", "h264", "avc1")
    assert built_s < 2.0


async def test_no_footage_in_the_range_is_an_error_and_leaves_no_file(box: Rig, sources: dict[str, Path]) -> None:
    await box.record(sources["h264"])
    keys, starts = sources_of(await box.segments())
    key = clip_key("cam1", event_id_for("cam1", at(400)), at(400))
    with pytest.raises(NoFootage, match="no picture"):
        build_clip(box.store, keys, starts, at(400), at(500), key)
    assert not box.store.exists(key)
    with pytest.raises(ValueError, match="before it starts"):
        build_clip(box.store, keys, starts, at(50), at(40), key)


async def test_a_clip_reads_the_segment_still_being_written(box: Rig, sources: dict[str, Path]) -> None:
    # The camera keeps the connection open: the last segment is still a partial file.
    await box.record(sources["h264"], end_session=False)
    await wait_for(lambda: len(box.finalised) == 2, 20, "two finalised segments")
    rows = await box.segments()
    assert [r.status for r in rows] == [SEGMENT_COMPLETE, SEGMENT_COMPLETE, SEGMENT_RECORDING]
    keys, starts = sources_of(rows)
    # Fragments reach the disk at each keyframe: the last one (frame 165) closes the fragment before it.
    async with asyncio.timeout(10):
        while (reached := await asyncio.to_thread(footage_end, box.store, keys[-1], starts[-1])) != at(165):
            assert reached is None or reached < at(165)
            await asyncio.sleep(0.05)
    clip_from, clip_to = at(100), at(164)
    clip = await asyncio.to_thread(
        build_clip,
        box.store,
        keys,
        starts,
        clip_from,
        clip_to,
        clip_key("cam1", event_id_for("cam1", at(110)), at(110)),
    )
    got = check_clip_file(box.store, clip, clip_from, clip_to)
    assert got.first_frame == 90
    assert box.recorder.status.current_key == rows[-1].key  # still being written


async def test_h265_footage_gives_an_hvc1_clip_and_an_h264_rendition(box: Rig, sources: dict[str, Path]) -> None:
    await box.record(sources["hevc"])
    keys, starts = sources_of(await box.segments())
    clip_from, clip_to = at(20), at(75)
    event = event_id_for("cam1", at(30))
    clip = await asyncio.to_thread(
        build_clip, box.store, keys, starts, clip_from, clip_to, clip_key("cam1", event, at(30))
    )
    got = check_clip_file(box.store, clip, clip_from, clip_to)
    assert (clip.codec, got.codec, got.tag) == ("hevc", "hevc", "hvc1")

    started = time.monotonic()
    rendition = await asyncio.to_thread(
        h264_rendition,
        box.store,
        clip.key,
        clip_key("cam1", event, at(30), rendition=True),
        160,
        first_frame_utc=clip.first_frame_utc,
    )
    transcode_s = time.monotonic() - started
    path = box.store.root / rendition.key
    assert rendition.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    boxes = top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat")
    duration, codec, tag = check_playable(path)
    assert (codec, tag, rendition.codec) == ("h264", "avc1", "h264")
    assert duration == pytest.approx(clip.duration_s, abs=FRAME_S)
    assert rendition.first_frame_utc == clip.first_frame_utc
    small = decode(path)
    assert small.width == 160 and small.frames == got.frames
    assert transcode_s < 5.0


# --------------------------------------------------------------------------- ClipService ---


async def test_clip_service_records_the_clip_everywhere_and_announces_it(box: Rig, sources: dict[str, Path]) -> None:
    await box.record(sources["hevc"])
    action = ended(at(60), at(90), at(45), at(105))
    await store_event(box, action)
    ready = box.bus.subscribe(ClipReady)

    clip = await box.service().on_event_ended(action)

    assert clip is not None
    check_clip_file(box.store, clip, action.clip_from, action.clip_to)
    message = await asyncio.wait_for(ready.get(), 1)
    rendition_key = clip_key("cam1", action.event_id, action.start, rendition=True)
    assert message == ClipReady(action.event_id, "cam1", clip.key, rendition_key, clip.sha256)
    row = await box.events.get(action.event_id)
    assert row is not None
    assert (row.clip_key, row.clip_sha256, row.clip_size, row.clip_duration_s, row.rendition_key) == (
        clip.key,
        clip.sha256,
        clip.size,
        clip.duration_s,
        rendition_key,
    )
    assert row.end_reason == "quiet"
    assert check_playable(box.store.root / rendition_key)[1:] == ("h264", "avc1")
    async with box.sessions() as session:
        records = list(await session.scalars(select(EvidenceRecord).where(EvidenceRecord.kind == "clip")))
    assert [(r.object_key, r.sha256, r.size, r.recorded_at) for r in records] == [
        (clip.key, clip.sha256, clip.size, clip.first_frame_utc)
    ]


async def test_clip_service_gives_up_when_the_footage_never_comes(box: Rig, caplog: pytest.LogCaptureFixture) -> None:
    # The camera dropped before the event's footage was recorded: nothing in the index at all.
    action = ended(at(60), at(90), at(45), at(105))
    await store_event(box, action)
    ready = box.bus.subscribe(ClipReady)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="appliance.cameras.clips"):
        assert await box.service(wait_timeout_s=0.5, poll_s=0.1).on_event_ended(action) is None
    assert 0.5 <= time.monotonic() - started < 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "no footage" in errors[0].getMessage() and "check its status" in errors[0].getMessage()
    row = await box.events.get(action.event_id)
    assert row is not None and row.end_reason == "quiet" and row.end_utc == action.end
    assert (row.clip_key, row.clip_sha256, row.rendition_key) == (None, None, None)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ready.get(), 0.1)
    assert not (box.store.root / "clips").exists()


async def test_clip_service_cuts_the_clip_short_when_the_footage_stops_early(
    box: Rig, sources: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    # The camera went offline 3 s into the post-roll: the footage up to then is the clip.
    await box.record(sources["h264"])
    action = ended(at(150), at(170), at(120), at(170 + 10 * CLIP_FPS))
    await store_event(box, action)
    with caplog.at_level(logging.WARNING, logger="appliance.cameras.clips"):
        clip = await box.service(wait_timeout_s=0.3, poll_s=0.1).on_event_ended(action)
    assert clip is not None and clip.first_frame_utc == at(120)
    assert clip.end_utc == at(180)
    assert any("the clip is shorter" in r.getMessage() for r in caplog.records)
    # Half a second short (an event that a stop ended, after the last recorder batch): not worth a line.
    caplog.clear()
    nearly = ended(at(151), at(170), at(120), at(180 + CLIP_FPS // 2))
    await store_event(box, nearly)
    with caplog.at_level(logging.WARNING, logger="appliance.cameras.clips"):
        clip = await box.service(wait_timeout_s=0.3, poll_s=0.1).on_event_ended(nearly)
    assert clip is not None and clip.end_utc == at(180)
    assert not any("the clip is shorter" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- end to end ---


@pytest.fixture(scope="module")
def sim_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cache_dir(tmp_path_factory)


@contextlib.contextmanager
def pumping(url: str, fanout: StreamFanout) -> Iterator[None]:
    stop = threading.Event()

    def run() -> None:
        with contextlib.suppress(Exception):
            pump(url, fanout, stop)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


@pytest.mark.slow
@REALTIME
async def test_live_clip_from_the_partial_segment_is_ready_within_2_s_of_its_end(
    tmp_path: Path, sim_cache: Path
) -> None:
    server = SimulatorServer([SimCamera("cam1", TINY)], fps=15, gop_seconds=1.0, cache_dir=sim_cache)
    await server.start()
    try:
        # The production segment length: the clip is ready long before its segment is.
        async with recording_box(tmp_path, DEFAULT_SEGMENT_SECONDS) as rig:
            with pumping(server.url("cam1"), rig.fanout):
                await wait_for(lambda: rig.recorder.status.current_key is not None, 20, "recording to start")
                async with asyncio.timeout(5):
                    while (first := await rig.index.get(rig.recorder.status.current_key or "")) is None:
                        await asyncio.sleep(0.05)
                # An event in the second segment, with a 5 s pre-roll reaching into the first one;
                # it ends now, its clip 1 s later (a short post-roll keeps the test short).
                await asyncio.sleep((first.start_utc - datetime.now(UTC)).total_seconds() + 11.5)
                end = datetime.now(UTC)
                action = ended(
                    first.start_utc + timedelta(seconds=10.5),
                    end,
                    first.start_utc + timedelta(seconds=5.5),
                    end + timedelta(seconds=1),
                )
                await store_event(rig, action)
                ready = rig.bus.subscribe(ClipReady)
                task = asyncio.create_task(rig.service().on_event_ended(action))
                await asyncio.wait_for(ready.get(), 10)
                latency_s = (datetime.now(UTC) - action.clip_to).total_seconds()
                rows = await rig.index.list_range("cam1", action.clip_from, action.clip_to)
                clip = await task
                await server.stop()  # the camera goes away: the pump ends at once, not at its read timeout
    finally:
        await server.stop()
    print(f"\nclip ready {latency_s:.2f} s after clip_to; segments {[r.status for r in rows]}")
    assert clip is not None
    assert latency_s <= 2.0
    assert [r.status for r in rows] == [SEGMENT_COMPLETE, SEGMENT_RECORDING]  # ready before its segment
    path = rig.store.root / clip.key
    duration, codec, tag = check_playable(path)
    assert (codec, tag) == ("h264", "avc1")
    assert action.clip_from - timedelta(seconds=1) < clip.first_frame_utc <= action.clip_from
    assert clip.end_utc >= action.clip_to - timedelta(seconds=1 / 15)
    assert duration == pytest.approx((action.clip_to - action.clip_from).total_seconds(), abs=1.0 + 1 / 15)
    boxes = top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat")


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PLAYS = """id => new Promise(done => {
  const v = document.getElementById(id);
  const check = () => v.error ? done({error: v.error.code})
    : v.readyState === 4 && v.currentTime > 0.5 ? done({ready: v.readyState, time: v.currentTime, width: v.videoWidth})
    : setTimeout(check, 50);
  check();
})"""


@pytest.mark.slow
async def test_chromium_plays_the_h264_clip_and_rendition_but_not_h265(
    tmp_path: Path, sources: dict[str, Path]
) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed (apt-get install -y chromium)")
    playwright = pytest.importorskip("playwright.async_api", reason="Playwright is missing (pip install playwright)")
    keys: dict[str, str] = {}
    roots: dict[str, Path] = {}
    for codec in ("h264", "hevc"):
        async with recording_box(tmp_path / codec) as rig:
            await rig.record(sources[codec])
            action = ended(at(40), at(100), at(30), at(120))
            await store_event(rig, action)
            clip = await rig.service().on_event_ended(action)
            assert clip is not None
            row = await rig.events.get(action.event_id)
            assert row is not None and row.clip_key is not None
            keys[codec] = f"/{codec}/{row.clip_key}"
            if row.rendition_key:
                keys["rendition"] = f"/{codec}/{row.rendition_key}"
            roots[codec] = rig.store.root
    assert set(keys) == {"h264", "hevc", "rendition"}
    page_html = "".join(f'<video id="{name}" muted autoplay src="{src}"></video>' for name, src in keys.items())

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=page_html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    for codec, root in roots.items():
        app.router.add_static(f"/{codec}/", root)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with playwright.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(f"http://127.0.0.1:{port}/")
                results = {name: await page.evaluate(PLAYS, name) for name in keys}
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
    assert results["h264"] == {"ready": 4, "time": pytest.approx(1, abs=0.5), "width": CLIP_SIZE[0]}
    assert results["rendition"]["ready"] == 4 and results["rendition"]["width"] == CLIP_SIZE[0]
    # Why the rendition exists: desktop Chromium cannot decode H.265 (MEDIA_ERR_SRC_NOT_SUPPORTED).
    assert results["hevc"] == {"error": 4}

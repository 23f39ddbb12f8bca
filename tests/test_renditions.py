"""Live H.264 renditions of an H.265 camera's events (appliance/cameras/renditions.py): an H.264
source remuxed, an H.265 source transcoded in the one transcode thread, from the pre-roll ring to
`clip_to`; fed packet by packet as a camera would send them, then from real RTSP cameras
(GStreamer: H.265 main, H.264 or H.265 sub) next to the after-the-fact transcode they replace."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import pytest
from av.container import InputContainer

from appliance.bus import EventBus
from appliance.cameras import clips, renditions
from appliance.cameras.clips import ClipInfo, RenditionEncoder
from appliance.cameras.events import event_id_for
from appliance.cameras.fanout import StreamFanout, VideoPacket
from appliance.cameras.messages import ClipReady
from appliance.cameras.renditions import LiveRenditions, Transcoder
from appliance.cameras.status import StatusBoard
from appliance.cameras.system import build_cameras
from appliance.config import parse_config
from appliance.simulator.server import SimCamera, SimulatorServer
from appliance.storage.db import create_engine, make_sessionmaker
from appliance.storage.footage import LocalFootageStore, clip_key
from appliance.storage.migrate import upgrade
from appliance.supervisor import Supervisor
from tests.gst_peer import gst_camera
from tests.recorder_support import CLIP_FPS, CLIP_GOP, check_playable, encode_clip, wait_for
from tests.test_clips import decode, ended, pumping, recording_box, store_event, top_level_boxes
from tests.xdist_groups import REALTIME

T0 = datetime(2026, 5, 4, 9, 0, 0, 500000, tzinfo=UTC)
"""Capture time of the clips' first frames; the renditions' clock stands there too."""
FRAME_S = 1 / CLIP_FPS
GOP_S = CLIP_GOP / CLIP_FPS
SOURCE_S = 12.0
EVENT = "cam1-20260504T090004.500Z"


def at(frame: float) -> datetime:
    return T0 + timedelta(seconds=frame * FRAME_S)


def packets(clip: Path) -> list[VideoPacket]:
    with av.open(str(clip)) as container:
        assert isinstance(container, InputContainer)
        return [p for p in container.demux(container.streams.video[0]) if p.size and p.pts is not None]


class Camera:
    """A fanout fed packet by packet from an encoded clip, with arrival = T0 + media time."""

    def __init__(self, clip: Path, fanout: StreamFanout) -> None:
        self.packets = packets(clip)
        self.fanout = fanout
        with av.open(str(clip)) as container:
            assert isinstance(container, InputContainer)
            fanout.begin_session(container.streams.video[0])
        self.sent = 0

    def send_until(self, frame: int) -> None:
        """Publish the packets of the frames before `frame`."""
        first = self.packets[0].pts or 0
        while self.sent < min(frame, len(self.packets)):
            packet = self.packets[self.sent]
            assert packet.pts is not None and packet.time_base is not None
            self.fanout.publish(packet, T0 + timedelta(seconds=float((packet.pts - first) * packet.time_base)))
            self.sent += 1


class Rig:
    """LiveRenditions in their thread, on a clock that stands at `now` (T0 unless moved)."""

    def __init__(self, root: Path, transcoder: Transcoder, hold_s: float) -> None:
        self.now = T0
        self.store = LocalFootageStore(root / "footage")
        self.fanout = StreamFanout("cam1", "sub")
        self.sub = self.fanout.subscribe("renditions", 5000)
        self.live = LiveRenditions(
            "cam1",
            self.sub,
            self.store,
            transcoder,
            pre_roll_s=3.0,
            hold_s=hold_s,
            scratch_dir=root,
            clock=lambda: self.now,
        )
        self.thread = threading.Thread(target=self.live.run, daemon=True)
        self.thread.start()

    def camera(self, clip: Path) -> Camera:
        return Camera(clip, self.fanout)

    def opened_from_the_start(self, clip: Path, frames: int) -> Camera:
        """A camera whose event opens with its first frame; `frames` of it sent and taken."""
        return self.opened_after(clip, 0, 0, frames)

    def opened_after(self, clip: Path, before: int, clip_from: int, frames: int) -> Camera:
        """A camera that sent `before` frames when the event (`clip_from` a frame number) opened,
        then up to `frames`, all of them taken."""
        camera = self.camera(clip)
        camera.send_until(before)
        self.settle()
        self.live.open(EVENT, key(), at(clip_from))
        camera.send_until(frames)
        self.settle()
        return camera

    def settle(self) -> None:
        """Wait until the renditions thread took every packet and ran every command."""
        deadline = time.monotonic() + 10
        while self.sub.backlog or self.live._commands:
            assert time.monotonic() < deadline, "the renditions thread is stuck"
            time.sleep(0.01)
        time.sleep(0.05)

    def stop(self) -> None:
        self.live.stop()
        self.thread.join(10)


@pytest.fixture
def transcoder() -> Iterator[Transcoder]:
    t = Transcoder()
    yield t
    t.shutdown()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sources")
    return {
        "h264": encode_clip(d / "h264.mp4", SOURCE_S),
        "hevc": encode_clip(d / "hevc.mp4", SOURCE_S, "libx265"),
        "hevc720": encode_clip(d / "hevc720.mp4", 3.0, "libx265", size=(1280, 720)),
        "other": encode_clip(d / "other.mp4", 3.0, size=(160, 120)),
    }


@contextlib.contextmanager
def rig(tmp_path: Path, transcoder: Transcoder, hold_s: float = 0.0) -> Iterator[Rig]:
    r = Rig(tmp_path, transcoder, hold_s)
    try:
        yield r
    finally:
        r.stop()


def key(event: str = EVENT) -> str:
    return clip_key("cam1", event, at(60), rendition=True)


def result(future: concurrent.futures.Future[ClipInfo | None], timeout: float = 20) -> ClipInfo | None:
    return future.result(timeout)


def check_rendition(store: LocalFootageStore, info: ClipInfo, clip_from: datetime, clip_to: datetime) -> list[int]:
    """The rendition is a faststart H.264 MP4 holding every source frame once, from the keyframe at
    or before `clip_from` to `clip_to`; its source frame numbers."""
    path = store.root / info.key
    boxes = top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat"), f"not faststart: {boxes}"
    duration, codec, tag = check_playable(path)
    assert (codec, tag, info.codec) == ("h264", "avc1", "h264")
    assert duration == pytest.approx(info.duration_s, abs=FRAME_S)
    got = decode(path)
    frames = [n for _t, n in got.timeline]
    assert frames == list(range(frames[0], frames[0] + len(frames))), "a frame is missing or repeated"
    assert clip_from - timedelta(seconds=GOP_S) < at(frames[0]) <= clip_from
    assert info.first_frame_utc == at(frames[0])
    assert clip_to - timedelta(seconds=FRAME_S) < at(frames[-1]) <= clip_to
    return frames


# ------------------------------------------------------------------- fed packet by packet ---


def test_an_h264_source_is_remuxed_from_the_pre_roll_to_clip_to(
    tmp_path: Path, transcoder: Transcoder, sources: dict[str, Path]
) -> None:
    with rig(tmp_path, transcoder) as r:
        # Opened at 6.7 s (the event confirmed at 6.5 s), its pre-roll from 3.5 s.
        camera = r.opened_after(sources["h264"], 100, 52, 141)
        future = r.live.close(EVENT, at(140))
        r.settle()
        assert not future.done(), "published before the footage passed clip_to"
        camera.send_until(142)
        info = result(future)
    assert info is not None and info.key == key()
    assert check_rendition(r.store, info, at(52), at(140))[0] == 45  # the keyframe before clip_from
    # Copied, not transcoded: the very packets of the source.
    with av.open(str(r.store.root / info.key)) as out:
        assert isinstance(out, InputContainer)
        copied = [bytes(p) for p in out.demux(out.streams.video[0]) if p.size]
    assert copied == [bytes(p) for p in camera.packets[45:141]]


def test_an_h265_source_is_transcoded_in_the_transcode_thread(
    tmp_path: Path, transcoder: Transcoder, sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[str] = set()
    encode = RenditionEncoder.add

    def add(self: RenditionEncoder, *args: Any) -> None:
        threads.add(threading.current_thread().name)
        encode(self, *args)

    monkeypatch.setattr(RenditionEncoder, "add", add)
    with rig(tmp_path, transcoder) as r:
        camera = r.opened_after(sources["hevc"], 100, 52, 141)
        future = r.live.close(EVENT, at(140))
        camera.send_until(160)
        info = result(future)
    assert info is not None
    check_rendition(r.store, info, at(52), at(140))
    assert len(threads) == 1 and threads.pop().startswith("rendition-transcode")


def test_a_large_h265_picture_is_scaled_to_640(
    tmp_path: Path, transcoder: Transcoder, sources: dict[str, Path]
) -> None:
    with rig(tmp_path, transcoder) as r:
        camera = r.opened_from_the_start(sources["hevc720"], 30)
        future = r.live.close(EVENT, at(29))
        camera.send_until(45)
        info = result(future)
    assert info is not None
    got = decode(r.store.root / info.key)
    assert (got.codec, got.width, got.frames) == ("h264", 640, 30)


def test_overlapping_events_each_get_their_own_range(
    tmp_path: Path, transcoder: Transcoder, sources: dict[str, Path]
) -> None:
    later = "cam1-20260504T090008.500Z"
    with rig(tmp_path, transcoder) as r:
        camera = r.opened_after(sources["h264"], 60, 20, 120)
        r.live.open(later, key(later), at(100))
        camera.send_until(126)
        r.settle()
        first = r.live.close(EVENT, at(125))
        camera.send_until(166)
        r.settle()
        second = r.live.close(later, at(165))
        camera.send_until(170)
        one, two = result(first), result(second)
    assert one is not None and two is not None
    assert check_rendition(r.store, one, at(20), at(125))[0] == 15
    assert check_rendition(r.store, two, at(100), at(165))[0] == 90


def test_packets_held_back_for_a_late_clip_to_stay_out(
    tmp_path: Path, transcoder: Transcoder, sources: dict[str, Path]
) -> None:
    """With a merge gap 2 s longer than the post-roll, an event ends 2 s after its clip_to."""
    with rig(tmp_path, transcoder, hold_s=2.0) as r:
        r.opened_after(sources["h264"], 40, 30, 120)
        info = result(r.live.close(EVENT, at(90)))  # 2 s before the newest packet
    assert info is not None
    check_rendition(r.store, info, at(30), at(90))


def test_a_camera_gone_silent_is_published_after_the_grace(
    tmp_path: Path, transcoder: Transcoder, sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(renditions, "POLL_S", 0.05)
    with rig(tmp_path, transcoder) as r:
        r.opened_from_the_start(sources["h264"], 50)
        future = r.live.close(EVENT, at(150))
        r.now = at(150) + timedelta(seconds=renditions.FINISH_GRACE_S - 0.5)
        r.settle()
        assert not future.done()
        r.now += timedelta(seconds=1)
        info = result(future)  # with what there is
    assert info is not None
    assert info.duration_s == pytest.approx(50 * FRAME_S, abs=FRAME_S / 2)


def test_a_changed_stream_cuts_the_rendition_short(
    tmp_path: Path, transcoder: Transcoder, sources: dict[str, Path]
) -> None:
    with rig(tmp_path, transcoder) as r:
        r.opened_from_the_start(sources["h264"], 60)
        r.camera(sources["other"]).send_until(10)  # the camera reconnects with other settings
        r.settle()
        info = result(r.live.close(EVENT, at(150)))
    assert info is not None and decode(r.store.root / info.key).frames == 60


def test_what_was_never_opened_or_had_no_picture_gives_none(tmp_path: Path, transcoder: Transcoder) -> None:
    with rig(tmp_path, transcoder) as r:
        assert result(r.live.close("cam1-20260504T090000.000Z", at(10))) is None
        r.live.open(EVENT, key(), at(0))  # and the camera sends nothing at all
        r.settle()
        r.stop()
        assert result(r.live.close(EVENT, at(10))) is None  # after the thread ended
    assert not (r.store.root / "clips").exists()


def test_renditions_are_not_made_when_not_wanted(
    tmp_path: Path, transcoder: Transcoder, sources: dict[str, Path]
) -> None:
    with rig(tmp_path, transcoder) as r:
        r.live.wanted = lambda: False  # the camera's main stream is H.264
        r.opened_from_the_start(sources["h264"], 60)
        assert result(r.live.close(EVENT, at(30))) is None
    assert not (r.store.root / "clips").exists()


# ------------------------------------------------------------------- real RTSP cameras ---


@pytest.mark.slow
@REALTIME
@pytest.mark.timeout(180)
@pytest.mark.parametrize("sub_path", ["sub", "sub265", None], ids=["h264-sub", "h265-sub", "no-sub"])
async def test_an_h265_cameras_rendition_is_ready_within_2_s_of_clip_to(tmp_path: Path, sub_path: str | None) -> None:
    """GStreamer's RTSP server as an H.265 camera (1280×720 main) with an H.264 or H.265 sub stream
    or none. The same event once with a live rendition and once without (the clip transcoded
    after the fact, as before), their ClipReady measured against clip_to."""
    transcoder = Transcoder()
    with gst_camera() as cam:
        async with recording_box(tmp_path, 4.0) as box:
            source = StreamFanout("cam1", "sub") if sub_path else box.fanout
            live = LiveRenditions(
                "cam1", source.subscribe("renditions"), box.store, transcoder, pre_roll_s=3.0, scratch_dir=tmp_path
            )
            thread = threading.Thread(target=live.run, daemon=True)
            thread.start()
            with (
                pumping(cam.url("main265"), box.fanout),
                pumping(cam.url(sub_path), source) if sub_path else contextlib.nullcontext(),
            ):
                await wait_for(lambda: box.recorder.status.current_key is not None, 30, "recording to start")
                await asyncio.sleep(4)  # the ring holds the pre-roll
                start = datetime.now(UTC)
                actions = [ended(start, start, start - timedelta(seconds=3), start) for _ in range(2)]
                with_live, without = (
                    replace(actions[0], event_id=event_id_for("cam1", start)),
                    replace(actions[1], event_id=event_id_for("cam1", start + timedelta(milliseconds=1))),
                )
                live.open(
                    with_live.event_id,
                    clip_key("cam1", with_live.event_id, start, rendition=True),
                    start - timedelta(seconds=3),
                )
                await asyncio.sleep(6)  # the event goes on
                end = datetime.now(UTC)
                with_live = replace(with_live, end=end, clip_to=end + timedelta(seconds=1))
                without = replace(without, end=end, clip_to=end + timedelta(seconds=1))
                for action in (with_live, without):
                    await store_event(box, action)
                ready = box.bus.subscribe(ClipReady)
                # The tracker ends an event when the merge gap (= post-roll) has passed: at clip_to.
                await asyncio.sleep((with_live.clip_to - datetime.now(UTC)).total_seconds())
                service = box.service()
                rendition = asyncio.wrap_future(live.close(with_live.event_id, with_live.clip_to))
                tasks = [
                    asyncio.create_task(service.on_event_ended(with_live, rendition)),
                    asyncio.create_task(service.on_event_ended(without)),
                ]
                latency: dict[str, float] = {}
                async with asyncio.timeout(60):
                    while len(latency) < 2:
                        message = await ready.get()
                        latency[message.event_id] = (datetime.now(UTC) - with_live.clip_to).total_seconds()
                clips = await asyncio.gather(*tasks)
            live.stop()
            thread.join(10)
            made = await rendition
            rows = [await box.events.get(a.event_id) for a in (with_live, without)]
    transcoder.shutdown()
    live_s, after_s = latency[with_live.event_id], latency[without.event_id]
    print(
        f"\n{sub_path or 'no sub'}: rendition ready {live_s:.2f} s after clip_to live, {after_s:.2f} s transcoded after"
    )
    assert all(clips) and made is not None and rows[0] is not None and rows[1] is not None
    assert rows[0].rendition_key == made.key and rows[1].rendition_key is not None
    path = box.store.root / made.key
    assert made.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    duration, codec, tag = check_playable(path)
    got = decode_dimensions(path)
    assert (codec, tag, got) == ("h264", "avc1", (640, 360))
    assert with_live.clip_from - timedelta(seconds=1.2) < made.first_frame_utc <= with_live.clip_from
    assert duration == pytest.approx((with_live.clip_to - made.first_frame_utc).total_seconds(), abs=0.3)
    assert live_s <= 3.0, f"the live rendition came {live_s:.2f} s after clip_to (requirement: 2 s)"


def decode_dimensions(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as container:
        assert isinstance(container, InputContainer)
        ctx = container.streams.video[0].codec_context
        return ctx.width, ctx.height


# ------------------------------------------------------------------------- ClipService ---


def done(value: ClipInfo | Exception | None) -> asyncio.Future[ClipInfo | None]:
    future: asyncio.Future[ClipInfo | None] = asyncio.get_running_loop().create_future()
    if isinstance(value, Exception):
        future.set_exception(value)
    else:
        future.set_result(value)
    return future


async def test_clip_service_records_the_live_rendition_without_transcoding(
    tmp_path: Path, transcoder: Transcoder, sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_transcode(*_args: object, **_kwargs: object) -> ClipInfo:
        raise AssertionError("the clip was transcoded although a live rendition came")

    monkeypatch.setattr(clips, "h264_rendition", no_transcode)
    action = ended(at(60), at(90), at(45), at(105))
    async with recording_box(tmp_path / "box") as box:
        await box.record(sources["hevc"])
        await store_event(box, action)
        with rig(tmp_path, transcoder) as r:
            r.live.store = box.store
            camera = r.camera(sources["hevc"])
            r.live.open(action.event_id, clip_key("cam1", action.event_id, action.start, rendition=True), at(45))
            camera.send_until(106)
            r.settle()
            future = asyncio.wrap_future(r.live.close(action.event_id, action.clip_to))
            camera.send_until(110)
            ready = box.bus.subscribe(ClipReady)
            clip = await box.service().on_event_ended(action, future)
        made = await future
        message = await asyncio.wait_for(ready.get(), 1)
        row = await box.events.get(action.event_id)
    assert clip is not None and made is not None
    assert message.rendition_key == made.key and row is not None and row.rendition_key == made.key
    check_rendition(box.store, made, action.clip_from, action.clip_to)


@pytest.mark.parametrize("live", [None, RuntimeError("the transcode thread broke")], ids=["none", "failed"])
async def test_without_a_live_rendition_the_clip_is_transcoded(
    tmp_path: Path, sources: dict[str, Path], live: Exception | None
) -> None:
    action = ended(at(60), at(90), at(45), at(105))
    async with recording_box(tmp_path) as box:
        await box.record(sources["hevc"])
        await store_event(box, action)
        clip = await box.service().on_event_ended(action, done(live))
        row = await box.events.get(action.event_id)
    key = clip_key("cam1", action.event_id, action.start, rendition=True)
    assert clip is not None and row is not None and row.rendition_key == key
    assert check_playable(box.store.root / key)[1:] == ("h264", "avc1")


async def test_a_live_rendition_without_a_clip_is_deleted(tmp_path: Path) -> None:
    action = ended(at(60), at(90), at(45), at(105))
    async with recording_box(tmp_path) as box:
        await store_event(box, action)
        key = clip_key("cam1", action.event_id, action.start, rendition=True)
        with box.store.open_write(key) as f:
            f.write(b"a rendition of footage that never reached the index")
        box.store.finalize(key)
        made = ClipInfo(key, "0" * 64, 52, 3.0, at(45), "h264")
        service = box.service(wait_timeout_s=0.2, poll_s=0.05)
        assert await service.on_event_ended(action, done(made)) is None
        row = await box.events.get(action.event_id)
    assert not (box.store.root / key).exists()
    assert row is not None and row.rendition_key is None


def test_a_rendition_that_ends_within_its_first_group_of_pictures(
    tmp_path: Path, transcoder: Transcoder, sources: dict[str, Path]
) -> None:
    with rig(tmp_path, transcoder) as r:
        camera = r.opened_after(sources["h264"], 0, 52, 53)  # before the camera sent anything
        future = r.live.close(EVENT, at(52))
        camera.send_until(54)
        info = result(future)
    assert info is not None
    assert check_rendition(r.store, info, at(52), at(52)) == list(range(45, 53))


@pytest.mark.slow
@REALTIME
@pytest.mark.timeout(180)
async def test_the_camera_pipeline_makes_an_h265_cameras_rendition_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The camera side as the daemon assembles it: H.265 main from GStreamer, the simulator's
    shopper on an H.264 sub stream; the event's rendition is the sub stream remuxed, not a transcode."""

    def no_transcode(*_args: object, **_kwargs: object) -> ClipInfo:
        raise AssertionError("the clip was transcoded")

    monkeypatch.setattr(clips, "h264_rendition", no_transcode)
    # The shopper enters 6 s after the simulator starts (4 s into the 20 s loop), leaves at 16 s.
    sim = SimulatorServer([SimCamera("cam1", "store_day_person", phase=18.0)])
    await sim.start()
    try:
        with gst_camera() as gst:
            cfg = parse_config(
                {
                    "appliance": {"data_dir": str(tmp_path / "data")},
                    "console": {"enabled": False},
                    "portal": {"enabled": False},
                    "recording": {"segment_seconds": 4.0, "min_free_gb": 0.1},
                    "cameras": [
                        {
                            "id": "cam1",
                            "name": "cam1",
                            "main_url": gst.url("main265"),
                            "sub_url": sim.url("cam1", "sub"),
                            "events": {"pre_roll_s": 3.0, "post_roll_s": 2.0, "merge_gap_s": 2.0},
                        }
                    ],
                }
            )
            engine = create_engine(cfg.database_url)
            await upgrade(engine)
            sessions = make_sessionmaker(engine)
            bus = EventBus()
            ready = bus.subscribe(ClipReady)
            board = StatusBoard()
            board.register("cam1", "cam1")
            system = await build_cameras(cfg, sessions, board, bus)
            supervisor = Supervisor.from_config(cfg.daemon)
            for name, component, stage in system.components:
                supervisor.add(name, component, stage=stage)
            supervisor.start()
            try:
                message = await asyncio.wait_for(ready.get(), 60)
                at_ready = datetime.now(UTC)
                row = await system.events.get(message.event_id)
            finally:
                await supervisor.stop(cfg.daemon.shutdown_timeout_s)
                await system.finish()
                await engine.dispose()
    finally:
        await sim.stop()
    assert row is not None and row.clip_to is not None and row.rendition_key == message.rendition_key
    late_s = (at_ready - row.clip_to.replace(tzinfo=UTC)).total_seconds()
    print(f"\nClipReady with the live rendition {late_s:.2f} s after clip_to")
    assert late_s <= 3.0
    path = tmp_path / "data" / "footage" / row.rendition_key
    _duration, codec, tag = check_playable(path)
    assert (codec, tag, decode_dimensions(path)) == ("h264", "avc1", (640, 360))
    assert check_playable(tmp_path / "data" / "footage" / message.clip_key)[1:] == ("hevc", "hvc1")

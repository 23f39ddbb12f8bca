"""Fanning one stream out to several consumers, and the packets' wall-clock capture times."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import pytest
from av.container import InputContainer
from av.video.stream import VideoStream

from appliance.cameras.fanout import MAX_CAPTURE_LAG_S, CaptureClock, CapturedPacket, SessionEnded, StreamFanout
from tests.recorder_support import CLIP_FPS, CLIP_GOP, encode_clip

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
TB = Fraction(1, 90_000)
FRAME = 90_000 // CLIP_FPS


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode_clip(tmp_path_factory.mktemp("fanout") / "clip.mp4", 1.0)


@pytest.fixture
def fanout(clip: Path) -> StreamFanout:
    fan = StreamFanout("cam1")
    with av.open(str(clip)) as container:
        assert isinstance(container, InputContainer)
        video: VideoStream = container.streams.video[0]
        fan.begin_session(video)
    # The container is closed now: the parameters must not depend on it.
    assert fan.params is not None and fan.params.template.codec_context.extradata
    return fan


def packet(n: int, *, pts: int | None = None, key: bool | None = None) -> av.Packet[VideoStream]:
    p: av.Packet[VideoStream] = av.Packet(bytes([n % 256]) * 100)  # type: ignore[assignment]
    p.pts = p.dts = n * FRAME if pts is None else pts
    p.duration = FRAME
    p.time_base = TB
    p.is_keyframe = (n % CLIP_GOP == 0) if key is None else key
    return p


def drain(sub: object) -> list[object]:
    items = []
    while (item := sub.get(timeout=0)) is not None:  # type: ignore[attr-defined]
        items.append(item)
    return items


def test_a_batch_consumer_takes_everything_waiting_in_order(fanout: StreamFanout) -> None:
    sub = fanout.subscribe("recorder", max_packets=100)
    assert sub.get_all(timeout=0) == []
    for n in range(5):
        fanout.publish(packet(n), T0 + timedelta(seconds=n / CLIP_FPS))
    fanout.end_session("gone")
    batch = sub.get_all(timeout=0)
    assert [i.pts for i in batch[:5] if isinstance(i, CapturedPacket)] == [n * FRAME for n in range(5)]
    assert isinstance(batch[5], SessionEnded) and len(batch) == 6
    assert sub.backlog == 0 and sub.delivered == 5 and sub.get_all(timeout=0) == []
    # A waiting consumer is woken by the first packet, not by its timeout.
    threading.Timer(0.05, lambda: fanout.publish(packet(5), T0)).start()
    started = datetime.now(UTC)
    assert len(sub.get_all(timeout=5)) == 1
    assert datetime.now(UTC) - started < timedelta(seconds=2)


def test_a_slow_consumer_drops_whole_gops_and_never_slows_the_others(fanout: StreamFanout) -> None:
    fast = fanout.subscribe("recorder", max_packets=1000)
    slow = fanout.subscribe("analyser", max_packets=10)
    for n in range(40):
        fanout.publish(packet(n), T0 + timedelta(seconds=n / CLIP_FPS))
    assert len(drain(fast)) == 40 and fast.dropped == 0
    # The slow one kept its first 10, then lost the rest of that GOP and the whole next one...
    assert slow.backlog == 10 and slow.dropped == 30
    got = drain(slow)
    assert [g.pts // FRAME for g in got] == list(range(10))  # type: ignore[attr-defined]
    # ...and once it has room again it resumes at a keyframe, never mid-GOP.
    for n in range(40, 50):
        fanout.publish(packet(n), T0 + timedelta(seconds=n / CLIP_FPS))
    resumed = drain(slow)
    assert [g.pts // FRAME for g in resumed] == list(range(45, 50))  # type: ignore[attr-defined]
    assert resumed[0].keyframe  # type: ignore[attr-defined]
    assert slow.dropped == 35


def test_publishing_never_blocks_and_session_ends_are_never_dropped(fanout: StreamFanout) -> None:
    stuck = fanout.subscribe("stuck", max_packets=1)
    done = threading.Event()

    def demux() -> None:
        for n in range(5000):
            fanout.publish(packet(n), T0)
        fanout.end_session("camera gone")
        done.set()

    threading.Thread(target=demux, daemon=True).start()
    assert done.wait(10), "publish() blocked on a consumer that does not read"
    items = drain(stuck)
    assert isinstance(items[0], CapturedPacket) and items[-1] == SessionEnded(fanout.session, "camera gone")
    assert stuck.dropped == 4999


def test_unsubscribed_consumers_wake_up_and_get_nothing(fanout: StreamFanout) -> None:
    sub = fanout.subscribe("viewer")
    woke = threading.Event()

    def consume() -> None:
        sub.get(timeout=30)
        woke.set()

    threading.Thread(target=consume, daemon=True).start()
    fanout.unsubscribe(sub)
    assert woke.wait(5)
    fanout.publish(packet(0), T0)
    assert sub.get(timeout=0) is None and fanout.subscriptions == ()


def test_a_first_packet_without_timestamp_is_placed_a_frame_before_the_next(fanout: StreamFanout) -> None:
    sub = fanout.subscribe("recorder")
    first = packet(0)
    first.pts = first.dts = None
    assert fanout.publish(first, T0) is None
    fanout.publish(packet(1), T0 + timedelta(seconds=1 / CLIP_FPS))
    got = drain(sub)
    assert [(g.pts, g.keyframe) for g in got] == [(0, True), (FRAME, False)]  # type: ignore[attr-defined]
    assert fanout.unplaced == 0
    # Without a duration there is nothing to place it by: dropped and counted.
    lost = packet(2)
    lost.pts = lost.dts = None
    lost.duration = 0
    fanout.begin_session(fanout.params.template)  # type: ignore[union-attr]
    fanout.publish(lost, T0)
    assert fanout.unplaced == 1


def test_capture_clock_settles_on_the_least_delayed_packet() -> None:
    clock = CaptureClock(TB)
    # At connect the camera bursts a buffered second (15 frames) that arrives all at once, 1 s late.
    burst_arrival = T0 + timedelta(seconds=1)
    for n in range(15):
        clock.capture_time(n * FRAME, burst_arrival)
    # Then frames arrive live, 50 ms after capture.
    for n in range(15, 60):
        at = clock.capture_time(n * FRAME, T0 + timedelta(seconds=n / CLIP_FPS + 0.05))
    assert abs((at - (T0 + timedelta(seconds=59 / CLIP_FPS))).total_seconds()) < 0.06
    assert clock.resyncs == 0


def test_capture_clock_resyncs_when_camera_time_jumps() -> None:
    clock = CaptureClock(TB)
    clock.capture_time(0, T0)
    # The camera rebooted its clock: timestamps restart near zero ten minutes later.
    later = T0 + timedelta(minutes=10)
    assert clock.capture_time(FRAME, later) == later
    assert clock.resyncs == 1
    assert clock.capture_time(2 * FRAME, later + timedelta(seconds=1 / CLIP_FPS)) == later + timedelta(
        seconds=1 / CLIP_FPS
    )
    # Within the tolerated lag nothing is reset.
    lag = timedelta(seconds=MAX_CAPTURE_LAG_S / 2)
    assert clock.capture_time(3 * FRAME, later + timedelta(seconds=2 / CLIP_FPS) + lag) < later + lag
    assert clock.resyncs == 1

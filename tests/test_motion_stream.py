"""Motion events as the daemon makes them from a simulated camera, without the daemon: the
simulator's encoded sub stream (640×360, 15 fps, a keyframe a second) decoded with PyAV the way
`appliance.cameras.analyser` decodes it, into the motion detector at its own rate and on into the
event tracker, for two passes through each scene's loop.

The stream is joined at a keyframe wherever the loop happens to be, as the daemon joins a running
camera: possibly with someone in view. Joined while the figure was in the picture, the detector
used to learn the figure into its background during calibration and then report the ghost it left
as motion for 20 s and more, so that the night scene's two passes became one event.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import numpy as np
import pytest
from av.container import InputContainer

from appliance.cameras.analyser import (
    CONFIRM_MAX_LAG_S,
    DECODER_OPTIONS,
    INLINE_MAX_LAG_S,
    TICK_S,
    Analyser,
    Analysis,
    _planes,
)
from appliance.cameras.events import EndReason, EventAction, EventEnded, EventSettings, EventStarted, EventTracker
from appliance.cameras.fanout import CapturedPacket, StreamFanout
from appliance.cameras.motion import MotionDetector, MotionResult, analysis_size, chroma_variance, shrink
from appliance.cameras.motion_settings import MotionSettings
from appliance.cameras.pressure import RecordingPressure
from appliance.cameras.tamper import TamperDetector
from appliance.simulator import h264
from appliance.simulator.encode import SUB, EncodedLoop, EncodeSettings, load_or_encode
from appliance.simulator.scenes import SCENES
from tests.simulator_support import cache_dir

STREAM = EncodeSettings(SUB)
"""What the simulator serves as a camera's sub stream (and the daemon analyses)."""
EVENTS = EventSettings(merge_gap_s=3.0, post_roll_s=3.0, pre_roll_s=3.0)
ENTRY_LATENCY_S = 1.0
"""The requirement: an event starts within 1 s of a figure entering."""
DECLARED_WITHIN_S = 0.55
"""The benchmark's target is an event row 0.6 s after a figure enters (p95). Here, in stream time
and without a pipeline, every event is declared within 0.55 s on every grid of analysed frames
(0.33-0.47 s by day, 0.4-0.53 s under IR; before the confirmation overlapped and used every frame:
0.87-1.07 s). The daemon adds a frame (FFmpeg's RTSP demuxer hands a frame over when the next one
arrives), decoding and the database write."""
LAST_SIGHT_S = 0.4
"""The figure's last sliver at the frame edge may be too small to count (two analysed frames)."""
EPOCH = datetime(2025, 3, 1, 20, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Seen:
    """An event, in stream seconds (the stream shows scene time t at t, t + loop, ...)."""

    start: float
    end: float
    reason: EndReason
    declared: float
    """When the tracker started the event (the frame that confirmed it)."""


@dataclass(frozen=True)
class Pass:
    entry: float
    leave: float
    next_entry: float


def _encoded(name: str, factory: pytest.TempPathFactory) -> EncodedLoop:
    """The scene's sub stream, encoded once per test session (about 1.5 s a scene)."""
    return load_or_encode(SCENES[name], STREAM, cache_dir(factory))


def _seconds(t: datetime) -> float:
    return (t - EPOCH).total_seconds()


def stream_events(loop: EncodedLoop, join_s: float, until_s: float) -> list[Seen]:
    """The events the analyser would make of `loop` replayed from `join_s` to `until_s`."""
    return analyse(loop, join_s, until_s)[1]


def analyse(
    loop: EncodedLoop, join_s: float, until_s: float, phase: int = 0
) -> tuple[list[tuple[float, MotionResult]], list[Seen]]:
    """Every analysed frame's (time, result), and the events, of `loop` replayed from `join_s` to
    `until_s`. The detector takes its first frame `phase` frames after the keyframe joined at: the
    daemon's rate gate runs on wall-clock capture times, so its grid of analysed frames may fall on
    any of the stream's frames, not only on those in step with the keyframes."""
    fps = loop.settings.fps
    first = round(join_s * fps)
    assert loop.units[first % len(loop.units)].keyframe, f"no keyframe at {join_s} s to join at"
    decoder = av.CodecContext.create("h264", "r")
    assert isinstance(decoder, av.VideoCodecContext)
    decoder.options = dict(DECODER_OPTIONS)
    decoder.thread_count = 1
    detector = MotionDetector()
    tracker = EventTracker("sim", EVENTS)
    actions: list[EventAction] = []
    analysed = []
    declared: dict[str, float] = {}
    shown = first
    for index in range(first, round(until_s * fps)):
        unit = loop.units[index % len(loop.units)]
        for picture in decoder.decode(av.Packet(h264.join_annexb(list(unit.nals)))):
            t = shown / fps
            shown += 1
            if shown - 1 - first < phase or not detector.wants(t):
                continue
            y, u, v = _planes(picture)
            size = analysis_size(picture.width, picture.height, detector.settings.width)
            result = detector.process(np.ascontiguousarray(shrink(y, *size), np.uint8), chroma_variance(u, v), t)
            analysed.append((t, result))
            boxes = [(b.x0, b.y0, b.x1, b.y1) for b in result.boxes]
            since = None if result.since is None else EPOCH + timedelta(seconds=result.since)
            new = tracker.update(EPOCH + timedelta(seconds=t), result.motion, result.score, boxes, since)
            declared.update((a.event_id, t) for a in new if isinstance(a, EventStarted))
            actions += new
    actions += tracker.close(EPOCH + timedelta(seconds=shown / fps))
    return analysed, [
        Seen(_seconds(a.start), _seconds(a.end), a.reason, declared[a.event_id])
        for a in actions
        if isinstance(a, EventEnded)
    ]


def _until(join_s: float, duration: float) -> float:
    """Two whole loops after the join, ending at a loop boundary (so every pass is complete)."""
    return math.ceil((join_s + 2 * duration) / duration - 1e-9) * duration


def _passes(name: str, join_s: float, until_s: float) -> list[Pass]:
    scene = SCENES[name]
    out = []
    for k in range(math.ceil(until_s / scene.duration)):
        for figure in scene.figures:
            entry, leave = k * scene.duration + figure.enters_at, k * scene.duration + figure.leaves_at
            if leave > join_s and entry < until_s:
                out.append(Pass(entry, leave, entry + scene.duration))
    return out


@pytest.mark.parametrize("name", ["store_night_ir_person", "store_day_person"])
@pytest.mark.parametrize(
    "join_s",
    [
        0.0,  # nobody in view while calibrating
        4.0,  # the figure walks in during calibration (the daemon run that merged two night passes)
        8.0,  # the figure browses in the middle of the picture during calibration
    ],
)
def test_one_event_per_pass_of_the_figure(name: str, join_s: float, tmp_path_factory: pytest.TempPathFactory) -> None:
    loop = _encoded(name, tmp_path_factory)
    until = _until(join_s, SCENES[name].duration)
    passes = _passes(name, join_s, until)
    events = stream_events(loop, join_s, until)

    assert len(events) == len(passes), f"passes {passes}, events {events}"
    settled = join_s + MotionDetector().settings.settle_s
    for seen, p in zip(events, passes, strict=True):
        if p.entry >= settled:
            assert p.entry <= seen.start <= p.entry + ENTRY_LATENCY_S, (p, seen)
        else:  # in view already while the detector calibrated: found while still there
            assert settled <= seen.start < p.leave, (p, seen)
        assert seen.end >= p.leave - LAST_SIGHT_S, f"the event ended before the figure left: {p}, {seen}"
        assert seen.reason is EndReason.QUIET
        assert seen.end + EVENTS.merge_gap_s < p.next_entry, f"the event lasted until the next pass: {p}, {seen}"


PHASES = range(round(STREAM.fps / MotionDetector().settings.fps))
"""Every grid of analysed frames: the first analysed frame 0, 1 or 2 frames after the keyframe."""


@pytest.mark.parametrize("name", ["store_night_ir_person", "store_day_person"])
def test_every_entry_is_an_event_within_half_a_second_on_every_grid(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    loop = _encoded(name, tmp_path_factory)
    until = _until(0.0, SCENES[name].duration)
    passes = _passes(name, 0.0, until)
    for phase in PHASES:
        events = analyse(loop, 0.0, until, phase)[1]
        assert len(events) == len(passes), f"phase {phase}: passes {passes}, events {events}"
        for seen, p in zip(events, passes, strict=True):
            # The start is where the motion began: the first analysed frame after the figure showed
            # (under IR its first sliver at the frame edge, 1/15 s after entering, is too faint).
            first_sight = p.entry + 1 / STREAM.fps + 1 / MotionDetector().settings.fps
            assert p.entry <= seen.start <= first_sight + 1e-6, (phase, p, seen)
            assert seen.declared - p.entry <= DECLARED_WITHIN_S, (phase, p, seen)


@pytest.mark.parametrize("name", ["light_switch", "ir_switch", "night_noise"])
@pytest.mark.parametrize("join_s", [0.0, 4.0, 8.0, 10.0])
def test_switches_and_noise_make_no_motion_at_all(
    name: str, join_s: float, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Not one frame of motion, let alone an event: a segment with a single motion frame is kept by
    the 'motion' retention mode, and its heatmap answers motion searches. Before blobs needed a core
    (`core_ratio`), 1-2 frames a loop were motion in 3 to 6 of these 12 cases, depending on the
    encode (x264 does not encode the loop identically twice): codec blocks in a dark corner under IR
    or night noise, just over the threshold for three analysed frames. The switches themselves were
    always caught by the guards."""
    loop = _encoded(name, tmp_path_factory)
    for phase in PHASES:
        analysed, events = analyse(loop, join_s, _until(join_s, SCENES[name].duration), phase)
        moving = [(round(t, 2), r.score, r.boxes) for t, r in analysed if r.motion]
        assert not moving, f"phase {phase}: motion at {moving}"
        assert events == []


def _publish(loop: EncodedLoop, raw: Path, fanout: StreamFanout, start: datetime) -> Iterator[None]:
    """Publish `loop`'s packets into `fanout`, arriving 1/fps apart from `start`; yields after each."""
    raw.write_bytes(b"".join(h264.join_annexb(list(unit.nals)) for unit in loop.units))
    fps = loop.settings.fps
    with av.open(str(raw), format="h264", options={"framerate": str(fps)}) as container:
        assert isinstance(container, InputContainer)
        video = container.streams.video[0]
        fanout.begin_session(video)
        for n, packet in enumerate(p for p in container.demux(video) if p.size):
            packet.pts = packet.dts = n * (packet.duration or 1)  # a raw H.264 stream has no timestamps
            fanout.publish(packet, start + timedelta(seconds=n / fps))
            yield


def _run_analyser(
    loop: EncodedLoop, raw: Path, *, behind: bool, pressure: RecordingPressure | None = None
) -> tuple[Analyser, list[EventAction]]:
    """The real analyser over `loop`'s packets through a fanout: handed over one at a time (keeping
    up), or all queued before it starts (fallen behind, as on a box short of CPU)."""
    fanout = StreamFanout("cam1", "sub")
    sub = fanout.subscribe("analyser", len(loop.units) + 1)
    emitted: list[Analysis] = []
    analyser = Analyser(
        "cam1", sub, MotionDetector(), TamperDetector(), EventTracker("cam1", EVENTS), emitted.append, pressure
    )
    for _ in _publish(loop, raw, fanout, EPOCH):
        while not behind and (item := sub.get(timeout=0)) is not None:
            analyser._packet(item)  # type: ignore[arg-type]
    while (item := sub.get(timeout=0)) is not None:
        analyser._packet(item)  # type: ignore[arg-type]
    return analyser, [a for e in emitted for a in e.actions]


def _inline_analyser(emit: Callable[[Analysis], None]) -> tuple[Analyser, StreamFanout]:
    fanout = StreamFanout("cam1", "sub")
    analyser = Analyser("cam1", None, MotionDetector(), TamperDetector(), EventTracker("cam1", EVENTS), emit)
    fanout.attach(analyser.offer)
    return analyser, fanout


def test_inline_analysis_in_the_demux_thread_finds_what_the_analysers_thread_finds(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    loop = _encoded("store_day_person", tmp_path_factory)
    threaded, found = _run_analyser(loop, tmp_path / "a.h264", behind=False)
    emitted: list[Analysis] = []
    inline, fanout = _inline_analyser(emitted.append)
    # Arriving as from a live camera: packets of now, not of a recording.
    for _ in _publish(loop, tmp_path / "b.h264", fanout, datetime.now(UTC)):
        pass
    assert inline.frames_decoded == threaded.frames_decoded == len(loop.units)
    assert inline.frames_analysed == threaded.frames_analysed  # the confirmation frames included
    assert inline.packets_skipped == 0
    started = [a.start - EPOCH for a in found if isinstance(a, EventStarted)]
    inline_started = [a.start for e in emitted for a in e.actions if isinstance(a, EventStarted)]
    assert started and len(inline_started) == len(started)
    first = inline_started[0]
    assert [t - first for t in inline_started] == [t - started[0] for t in started]


def _packet_aged(params: CapturedPacket, age_s: float, *, keyframe: bool = False) -> CapturedPacket:
    return dataclasses.replace(params, capture_utc=datetime.now(UTC) - timedelta(seconds=age_s), keyframe=keyframe)


def _key_and_p_frame(loop: EncodedLoop, raw: Path) -> tuple[CapturedPacket, CapturedPacket]:
    seen: list[CapturedPacket] = []
    fanout = StreamFanout("cam1", "sub")
    fanout.attach(lambda item: seen.append(item) if isinstance(item, CapturedPacket) else None)
    for _ in _publish(loop, raw, fanout, datetime.now(UTC)):
        pass
    key = next(p for p in seen if p.keyframe)
    return key, next(p for p in seen if not p.keyframe and p.pts > key.pts)


def test_inline_analysis_that_falls_behind_skips_to_the_next_keyframe(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    key, p_frame = _key_and_p_frame(_encoded("store_day_person", tmp_path_factory), tmp_path / "a.h264")
    analyser, _ = _inline_analyser(lambda a: None)
    analyser.offer(_packet_aged(key, 0.05, keyframe=True))
    # A backlog: each packet read is half a second older than the one before.
    ages = [0.05 + 0.5 * n for n in range(1, 12)]
    for age in ages:
        analyser.offer(_packet_aged(p_frame, age))
    decoded_while_behind = sum(1 for age in ages if age - 0.05 <= INLINE_MAX_LAG_S)
    assert analyser.frames_decoded == 1 + decoded_while_behind
    assert analyser.packets_skipped == len(ages) - decoded_while_behind
    analyser.offer(_packet_aged(p_frame, 0.05))  # caught up, but a P-frame cannot be decoded alone
    assert analyser.frames_decoded == 1 + decoded_while_behind
    analyser.offer(_packet_aged(key, 0.05, keyframe=True))
    assert analyser.frames_decoded == 2 + decoded_while_behind


def test_a_camera_clock_running_slow_is_not_taken_for_a_backlog(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    key, p_frame = _key_and_p_frame(_encoded("store_day_person", tmp_path_factory), tmp_path / "a.h264")
    analyser, _ = _inline_analyser(lambda a: None)
    # A clock 1 % slow makes each packet look 10 ms a second later than the last (the capture
    # clock re-anchors only at 2 s); a backlog grows by tenths of a second per second.
    now = time.monotonic()
    analyser._measure_lag(_packet_aged(key, 0.05), now)
    for second in range(1, 400):
        analyser._measure_lag(_packet_aged(p_frame, 0.05 + 0.01 * second), now + second)
        assert analyser._lag_s <= CONFIRM_MAX_LAG_S
    for tenth in range(1, 60):
        analyser._measure_lag(_packet_aged(p_frame, 4.0 + 0.03 * tenth), now + 400 + 0.1 * tenth)
    assert analyser._lag_s > CONFIRM_MAX_LAG_S


def test_a_failure_of_inline_analysis_leaves_the_stream_running_and_is_raised_by_the_tick_thread(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    loop = _encoded("store_day_person", tmp_path_factory)

    def emit(a: Analysis) -> None:
        raise RuntimeError("the event loop is closed")

    analyser, fanout = _inline_analyser(emit)
    other = fanout.subscribe("recorder", len(loop.units) + 1)
    for _ in _publish(loop, tmp_path / "a.h264", fanout, datetime.now(UTC)):
        pass
    assert other.backlog == len(loop.units)  # the demux thread went on publishing
    failed: list[BaseException] = []

    def ticks() -> None:
        try:
            analyser.run_ticks()
        except RuntimeError as exc:
            failed.append(exc)

    thread = threading.Thread(target=ticks)
    thread.start()
    thread.join(timeout=2 * TICK_S + 1)
    assert not thread.is_alive()
    assert [str(e) for e in failed] == ["the event loop is closed"]


def test_inline_analysis_ends_the_event_of_a_camera_that_went_silent(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    loop = _encoded("store_day_person", tmp_path_factory)
    entry = SCENES["store_day_person"].figures[0].enters_at
    emitted: list[Analysis] = []
    analyser, fanout = _inline_analyser(emitted.append)
    start = datetime.now(UTC) - timedelta(seconds=entry + 1.5)
    publishing = _publish(loop, tmp_path / "a.h264", fanout, start)
    # Up to a second and a half after the figure entered, as if the camera then lost power.
    for n, _ in enumerate(publishing):
        if n >= (entry + 1.5) * loop.settings.fps:
            break
    publishing.close()
    assert any(isinstance(a, EventStarted) for e in emitted for a in e.actions)
    thread = threading.Thread(target=analyser.run_ticks)
    thread.start()
    try:
        deadline = time.monotonic() + EVENTS.post_roll_s + EVENTS.merge_gap_s + 3 * TICK_S
        while not any(isinstance(a, EventEnded) for e in emitted for a in e.actions):
            assert time.monotonic() < deadline, "the event did not end"
            time.sleep(0.1)
    finally:
        analyser.stop()
        thread.join(timeout=2 * TICK_S)


def test_an_analyser_that_fell_behind_skips_the_confirmation_frames_but_still_finds_the_entries(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    loop = _encoded("store_day_person", tmp_path_factory)
    keeping_up, found = _run_analyser(loop, tmp_path / "a.h264", behind=False)
    behind, found_behind = _run_analyser(loop, tmp_path / "b.h264", behind=True)
    seconds = len(loop.units) / loop.settings.fps
    assert behind.frames_decoded == keeping_up.frames_decoded == len(loop.units)
    # Behind: the regular 5 fps only; keeping up: every frame of each run being confirmed on top.
    assert behind.frames_analysed == pytest.approx(seconds * MotionSettings().fps, abs=2)
    assert keeping_up.frames_analysed >= behind.frames_analysed + 3
    started = [a for a in found if isinstance(a, EventStarted)]
    assert started and len([a for a in found_behind if isinstance(a, EventStarted)]) == len(started)

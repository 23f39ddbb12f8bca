"""Decoding the analysed stream and running the detectors on it, in a thread of its own.

Everything here blocks (H.264 decoding, OpenCV, JPEG encoding), so it never runs on the event
loop: the thread takes packets from the analysed stream's fanout subscription, decodes every one
(a P-frame needs the frames before it), and hands the detectors only the frames they are due at
their own rate, as a luma plane shrunk to the analysis width. The state machines (motion
persistence, events, tamper) are pure and cheap, so they run here too; what comes out of a
frame — the motion verdict, event actions, a JPEG of the peak frame — goes to the event loop as
one `Analysis` through `emit`.

Frames are stamped with their wall-clock capture time from the fanout, so event times line up
with the recorded segments of the main stream.

Two ways to drive it:

* `run`, a thread of its own fed by a fanout subscription: for a camera analysed on its main
  stream, whose demux thread must never wait for decoding (the recorder depends on it).
* inline (`offer` from the fanout's demux thread, `run_ticks` in a thread that only keeps time):
  for a sub stream, which nothing else needs promptly. Handing every packet from one thread to
  another cost ~0.15 % of a core per camera (a wake-up and a cold cache per packet, measured
  at 8 cameras), a sixth of what decoding the stream costs. Falling behind then shows as the age
  of the packets, not as a queue: past `INLINE_MAX_LAG_S` decoding skips to the next keyframe,
  so the demux thread catches up with the camera instead of its socket filling up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

import av
import cv2
import numpy as np

from appliance.cameras.events import EventAction, EventStarted, EventTracker, PeakChanged
from appliance.cameras.fanout import CapturedPacket, Item, SessionEnded, StreamParams, Subscription
from appliance.cameras.motion import Luma, MotionDetector, MotionResult, analysis_size, chroma_variance, shrink
from appliance.cameras.pressure import RecordingPressure
from appliance.cameras.snapshots import jpeg_snapshot, thumbnail
from appliance.cameras.tamper import TamperDetector, TamperEvent

log = logging.getLogger(__name__)

DECODER_OPTIONS: Final = {"skip_loop_filter": "all"}
"""The deblocking filter is ~20 % of decoding; motion analysis does not mind blockier frames
(measured in ../shared/test-peers.md). Snapshots are taken from the same frames and stay fine
for an alert thumbnail."""
CONFIRM_MAX_BACKLOG: Final = 2
"""Packets waiting in the analyser's queue above which the extra confirmation frames (motion's
`confirm_fps`) are skipped: an analyser that falls behind is short of CPU, and analysing more
frames would only make it fall further behind (at 32+ cameras on two cores). Events then take a
little longer to confirm instead of every camera's analysis lagging by seconds."""
QUEUE_PACKETS: Final = 30
"""The analyser's queue (2 s of a 15 fps stream). A box short of CPU drops analysis, not
recording: when the queue is full, the fanout drops packets up to the next keyframe, so analysis
skips ahead to the present (and saves the decoding of what it skipped) instead of lagging by the
fanout's default 20 s, which would make every alert late and starve the recorders too."""
CONFIRM_MAX_LAG_S: Final = 0.2
"""Inline, the age of a packet above which the extra confirmation frames are skipped (the
counterpart of `CONFIRM_MAX_BACKLOG`: three packets of a 15 fps stream)."""
INLINE_MAX_LAG_S: Final = 2.0
"""Inline, the age of a packet above which decoding skips to the next keyframe (the counterpart
of `QUEUE_PACKETS`)."""
LAG_FLOOR_RISE: Final = 0.05
"""Seconds per second by which the lag's zero may rise. A packet's age is measured against the
capture clock (fanout.py), which a camera's slow clock also makes look late, by a few ms an hour:
ages are counted from the least age seen lately, a floor that follows such drift but not a backlog
(falling behind on a short CPU grows the age by tenths of a second per second)."""
TICK_S: Final = 1.0
"""How often the event tracker is told the time when no frame arrives (to end events of a
camera that went silent)."""


@dataclass(frozen=True)
class Analysis:
    """What one analysed frame (or a tick without a frame) produced: sent only when it holds an
    action, a tamper event or motion."""

    t: datetime
    result: MotionResult | None
    actions: list[EventAction] = field(default_factory=list)
    tamper: list[TamperEvent] = field(default_factory=list)
    snapshot: bytes | None = None
    """JPEG of this frame with the motion boxes drawn, when an action asks for it."""
    thumbnail: bytes | None = None


def _planes(frame: av.VideoFrame) -> tuple[Luma, Luma, Luma]:
    """The Y, U and V planes of a yuv420p frame without copying or converting (line padding cut)."""
    out = []
    for i, plane in enumerate(frame.planes):
        h = frame.height if i == 0 else (frame.height + 1) // 2
        w = frame.width if i == 0 else (frame.width + 1) // 2
        arr = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)[:h, :w]
        out.append(arr)
    return out[0], out[1], out[2]


class Analyser:
    """One camera's analysis thread: decode, detect, track events; results go to `emit`."""

    def __init__(
        self,
        camera_id: str,
        subscription: Subscription | None,
        motion: MotionDetector,
        tamper: TamperDetector,
        tracker: EventTracker,
        emit: Callable[[Analysis], None],
        pressure: RecordingPressure | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.subscription = subscription
        self.motion = motion
        self.tamper = tamper
        self.tracker = tracker
        self.emit = emit
        self.pressure = pressure
        self.packets_skipped = 0
        """Packets passed over undecoded while the recorders were behind."""
        self.frames_decoded = 0
        self.frames_analysed = 0
        self.decode_errors = 0
        self._stop = threading.Event()
        self._decoder: av.VideoCodecContext | None = None
        self._session: int | None = None
        self._width = motion.settings.width
        self._lag_s = 0.0
        """Inline: how much older than lately the packet being analysed is."""
        self._lag_floor = float("inf")
        self._lag_at = time.monotonic()
        self._lag_session: int | None = None
        self._inline = threading.Lock()
        self._last_input = time.monotonic()
        self._failure: BaseException | None = None

    def stop(self) -> None:
        self._stop.set()
        if self.subscription is not None:
            self.subscription.wake()

    def run(self) -> None:
        """The thread's body when fed by `subscription`: until `stop()`."""
        if self.subscription is None:
            raise RuntimeError("run() needs a subscription; inline analysis runs run_ticks()")
        _one_opencv_thread()
        while not self._stop.is_set():
            item = self.subscription.get(timeout=TICK_S)
            if item is None:
                self._tick()
            else:
                self._item(item)
        self._close()

    def offer(self, item: Item) -> None:
        """Inline: analyse a packet now, in the calling (demux) thread. Never raises: a failure
        stops the analysis and `run_ticks` raises it, so the camera's stream goes on."""
        with self._inline:
            if self._stop.is_set():
                return
            now = time.monotonic()
            self._last_input = now
            try:
                if isinstance(item, CapturedPacket):
                    self._measure_lag(item, now)
                    if self._lag_s > INLINE_MAX_LAG_S:
                        self._skip()
                        return
                self._item(item)
            except Exception as exc:
                self._failure = exc
                self._stop.set()

    def run_ticks(self) -> None:
        """Inline: the body of a thread that tells the event tracker the time while no packet
        comes (a camera gone silent), until `stop()`; raises what failed in `offer`."""
        _one_opencv_thread()
        while not self._stop.wait(TICK_S):
            with self._inline:
                if time.monotonic() - self._last_input >= TICK_S and not self._stop.is_set():
                    self._tick()
        with self._inline:
            self._close()
        if self._failure is not None:
            raise self._failure

    def _measure_lag(self, cp: CapturedPacket, now: float) -> None:
        age = (datetime.now(UTC) - cp.capture_utc).total_seconds()
        if cp.session != self._lag_session:
            self._lag_session = cp.session
            self._lag_floor = age  # a new connection, a new anchor of the capture clock
        self._lag_floor = min(age, self._lag_floor + LAG_FLOOR_RISE * (now - self._lag_at))
        self._lag_at = now
        self._lag_s = age - self._lag_floor

    def _item(self, item: Item) -> None:
        if isinstance(item, SessionEnded):
            self._decoder = None
            self._tick()
        else:
            self._packet(item)

    def _close(self) -> None:
        actions = self.tracker.close(datetime.now(UTC))
        if actions:
            self.emit(Analysis(datetime.now(UTC), None, actions))

    def _confirm_ok(self) -> bool:
        """Whether there is time for motion's extra confirmation frames."""
        if self.subscription is not None:
            return self.subscription.backlog <= CONFIRM_MAX_BACKLOG
        return self._lag_s <= CONFIRM_MAX_LAG_S

    def _skip(self) -> None:
        """Pass a packet over undecoded; decoding resumes at the next keyframe."""
        self.packets_skipped += 1
        self._decoder = None

    def _tick(self) -> None:
        now = datetime.now(UTC)
        actions = self.tracker.tick(now)
        if actions:
            self.emit(Analysis(now, None, actions))

    def _open_decoder(self, params: StreamParams) -> av.VideoCodecContext:
        ctx = av.CodecContext.create(params.codec, "r")
        assert isinstance(ctx, av.VideoCodecContext)
        if params.extradata:
            ctx.extradata = params.extradata
        ctx.options = dict(DECODER_OPTIONS)
        ctx.thread_count = 1
        return ctx

    def _packet(self, cp: CapturedPacket) -> None:
        if self.pressure is not None and self.pressure.active:
            # Recording first: nothing decoded until the next keyframe after the pressure ends.
            self._skip()
            return
        if self._decoder is None or self._session != cp.session:
            if not cp.keyframe:
                return  # nothing decodes before the first keyframe of a connection
            self._decoder = self._open_decoder(cp.params)
            self._session = cp.session
        try:
            frames = self._decoder.decode(cp.packet)
        except av.error.FFmpegError:
            self.decode_errors += 1
            return
        for frame in frames:
            self.frames_decoded += 1
            self._frame(frame, cp.capture_utc)

    def _frame(self, frame: av.VideoFrame, t: datetime) -> None:
        ts = t.timestamp()
        want_motion = self.motion.wants(ts, confirm=self._confirm_ok())
        want_tamper = self.tamper.wants(ts)
        if not (want_motion or want_tamper):
            return
        if frame.format.name not in ("yuv420p", "yuvj420p"):
            frame = frame.reformat(format="yuv420p")
        y, u, v = _planes(frame)
        small: Luma = np.ascontiguousarray(shrink(y, *analysis_size(frame.width, frame.height, self._width)), np.uint8)
        tamper = self.tamper.process(small, ts) if want_tamper else []
        result: MotionResult | None = None
        actions: list[EventAction] = []
        boxes: tuple[tuple[float, float, float, float], ...] = ()
        if want_motion:
            self.frames_analysed += 1
            result = self.motion.process(small, chroma_variance(u, v), ts)
            boxes = tuple((b.x0, b.y0, b.x1, b.y1) for b in result.boxes)
            since = None if result.since is None else t - timedelta(seconds=ts - result.since)
            actions = self.tracker.update(t, result.motion, result.score, boxes, since)
        if not (actions or tamper or (result is not None and result.motion)):
            # The loop keeps only frames with motion (for the segments' heatmaps): handing it the
            # still ones too would wake it five times a second per camera for nothing.
            return
        snapshot = thumb = None
        if any(isinstance(a, EventStarted | PeakChanged) for a in actions) or any(e.started for e in tamper):
            # Only for the rare frames that need a picture: the colour conversion costs more
            # than decoding the frame.
            bgr: Luma = np.asarray(frame.to_ndarray(format="bgr24"), np.uint8)
            snapshot = jpeg_snapshot(bgr, boxes=result.boxes if result is not None else ())
            thumb = thumbnail(bgr)
        self.emit(Analysis(t, result, actions, tamper, snapshot, thumb))


def _one_opencv_thread() -> None:
    # Each camera already has a thread of its own; OpenCV's worker pool on top of that only
    # spins (sched_yield) waiting for work on frames this small (measured: 10,000 yields/s
    # with 8 cameras).
    cv2.setNumThreads(1)

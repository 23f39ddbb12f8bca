"""H.264 renditions of an H.265 camera's events, made while the event happens.

Desktop Chromium cannot play H.265, so the clip of an H.265 camera (the evidence, remuxed from
the main stream by clips.py) comes with an H.264 rendition for alerts and browsers. Transcoding
the finished clip took about 5 s for a 25 s event on the appliance, after `clip_to`; made here
while the event is open, only the tail is left at `clip_to`:

* the analysed stream (the sub stream, or the main stream when there is none) is kept in a ring
  of packets covering the pre-roll;
* `open` starts an event's rendition from the ring, at the keyframe at or before `clip_from`, and
  the live packets follow; `close` sets `clip_to`, and the rendition is published when a packet
  past it arrives (or `FINISH_GRACE_S` later if the camera went silent);
* an H.264 source is remuxed: packets copied, no transcode at all;
* an H.265 source is transcoded to H.264 at most `RENDITION_WIDTH` px wide by `Transcoder`, one
  thread for the whole process, so renditions never take more than one core whatever the number
  of cameras (when it falls behind, renditions are late rather than the cameras starved).

`LiveRenditions.open` / `close` are called on the event loop; the packets are handled in a thread
of the camera's own (`run`), the transcodes in the Transcoder's. What `close` returns resolves to
the published rendition (ClipService records it with the event) or None, when the source had no
picture in the range: ClipService then transcodes the clip as before.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Final, Protocol, TypeVar

import av

from appliance.cameras.clips import (
    RENDITION_THREADS,
    RENDITION_WIDTH,
    ClipInfo,
    ClipMuxer,
    ClipPacket,
    NoFootage,
    RenditionEncoder,
    publish,
    same_stream,
)
from appliance.cameras.fanout import CapturedPacket, Clock, StreamParams, Subscription, VideoPacket, utc_now
from appliance.storage.footage import FootageStore

log = logging.getLogger(__name__)

RING_MARGIN_S: Final = 2.0
"""The ring holds the pre-roll and this much more: an event is opened when the detector confirms
it, a fraction of a second after its start, and `clip_from` is the start minus the pre-roll."""
FINISH_GRACE_S: Final = 5.0
"""A rendition whose `clip_to` passed this long ago without a later packet (the camera went
silent) is published with what it has."""
POLL_S: Final = 0.5
TIME_BASE: Final = Fraction(1, 90_000)
"""Transcoded renditions are timed on the packets' wall-clock capture times, at 90 kHz."""
FALLBACK_FRAME_S: Final = 1 / 15
"""Frame duration assumed until the stream gives one."""

_T = TypeVar("_T")


class Transcoder:
    """The one thread that transcodes live renditions, for every camera of the process."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rendition-transcode")

    def submit(self, fn: Callable[[], _T]) -> concurrent.futures.Future[_T]:
        return self._pool.submit(fn)

    def shutdown(self) -> None:
        """Drop the work not started; the call running finishes."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Writer(Protocol):
    """Packets of one rendition in, the published file out. Blocking."""

    def write(self, cp: CapturedPacket) -> None: ...

    def finish(self) -> ClipInfo: ...

    def abort(self) -> None: ...


class _RemuxWriter:
    """An H.264 source's packets, copied."""

    def __init__(self, store: FootageStore, key: str, scratch_dir: Path | None) -> None:
        self.store, self.key = store, key
        self._tmp = tempfile.TemporaryDirectory(prefix="rendition-", dir=scratch_dir)
        self._muxer: ClipMuxer | None = None

    def write(self, cp: CapturedPacket) -> None:
        # A new packet sharing the bytes: the fanout's packet is read by other consumers.
        packet: VideoPacket = av.Packet(cp.packet)  # type: ignore[arg-type,assignment]
        packet.pts, packet.dts, packet.duration = cp.pts, cp.dts if cp.dts is not None else cp.pts, cp.duration or 0
        packet.time_base, packet.is_keyframe = cp.time_base, cp.keyframe
        item = ClipPacket(packet, cp.params, cp.session, cp.time_base, cp.capture_utc, cp.capture_utc)
        self._muxer = self._muxer or ClipMuxer(Path(self._tmp.name) / "rendition.mp4", item)
        self._muxer.write(item)

    def finish(self) -> ClipInfo:
        try:
            if self._muxer is None:
                raise NoFootage(f"rendition {self.key}: no picture")
            self._muxer.close()
            sha256, size = publish(self.store, Path(self._tmp.name) / "rendition.mp4", self.key)
            return ClipInfo(self.key, sha256, size, self._muxer.duration_s, self._muxer.first_frame_utc, "h264")
        finally:
            self._tmp.cleanup()

    def abort(self) -> None:
        if self._muxer is not None:
            with contextlib.suppress(Exception):
                self._muxer.close()
        self._tmp.cleanup()


class _TranscodeWriter:
    """An H.265 source's packets, decoded and encoded as H.264 (in the Transcoder's thread)."""

    def __init__(self, store: FootageStore, key: str, width: int, scratch_dir: Path | None) -> None:
        self.store, self.key, self.width = store, key, width
        self._tmp = tempfile.TemporaryDirectory(prefix="rendition-", dir=scratch_dir)
        self._encoder: RenditionEncoder | None = None
        self._decoder: av.VideoCodecContext | None = None
        self._session: int | None = None
        self._last_pts = -1
        self._frame_ticks = round(FALLBACK_FRAME_S / TIME_BASE)

    def _decoder_for(self, cp: CapturedPacket) -> av.VideoCodecContext:
        if self._decoder is None or self._session != cp.session:
            ctx = av.CodecContext.create(cp.params.codec, "r")
            assert isinstance(ctx, av.VideoCodecContext)
            if cp.params.extradata:
                ctx.extradata = cp.params.extradata
            ctx.thread_count = RENDITION_THREADS
            self._decoder, self._session = ctx, cp.session
        return self._decoder

    def write(self, cp: CapturedPacket) -> None:
        decoder = self._decoder_for(cp)
        encoder = self._encoder or RenditionEncoder(
            Path(self._tmp.name) / "rendition.mp4", cp.capture_utc, TIME_BASE, width=self.width
        )
        self._encoder = encoder
        # Timed by capture time, which runs on across reconnects; the decoder hands it through.
        pts = max(self._last_pts + 1, round((cp.capture_utc - encoder.first_frame_utc).total_seconds() / TIME_BASE))
        if cp.duration:
            self._frame_ticks = max(1, round(cp.duration * cp.time_base / TIME_BASE))
        packet = av.Packet(cp.packet)  # type: ignore[arg-type]
        packet.pts = packet.dts = pts
        packet.time_base = TIME_BASE
        self._last_pts = pts
        for frame in decoder.decode(packet):
            if frame.pts is not None:
                encoder.add(frame, frame.pts, self._frame_ticks)

    def finish(self) -> ClipInfo:
        try:
            encoder = self._encoder
            if encoder is None:
                raise NoFootage(f"rendition {self.key}: no picture")
            if self._decoder is not None:
                for frame in self._decoder.decode(None):
                    if frame.pts is not None:
                        encoder.add(frame, frame.pts, self._frame_ticks)
            duration = encoder.close()
            if not encoder.frames:
                raise NoFootage(f"rendition {self.key}: no picture could be decoded")
            sha256, size = publish(self.store, encoder.path, self.key)
            return ClipInfo(self.key, sha256, size, duration, encoder.first_frame_utc, "h264")
        finally:
            self._tmp.cleanup()

    def abort(self) -> None:
        if self._encoder is not None:
            with contextlib.suppress(Exception):
                self._encoder.close()
        self._tmp.cleanup()


class _Queued:
    """A writer whose every call runs in the Transcoder's thread, in order."""

    def __init__(self, writer: _TranscodeWriter, transcoder: Transcoder) -> None:
        self._writer, self._transcoder = writer, transcoder
        self._failed: BaseException | None = None

    def _guarded(self, cp: CapturedPacket) -> None:
        if self._failed is None:
            try:
                self._writer.write(cp)
            except Exception as exc:  # a broken picture must not cost the rest of the queue
                self._failed = exc

    def _finish(self) -> ClipInfo:
        if self._failed is not None:
            self._writer.abort()
            raise RuntimeError(f"transcoding the rendition failed: {self._failed}") from self._failed
        return self._writer.finish()

    def write(self, cp: CapturedPacket) -> None:
        self._transcoder.submit(lambda: self._guarded(cp))

    def finish_later(self) -> concurrent.futures.Future[ClipInfo]:
        return self._transcoder.submit(self._finish)

    def abort(self) -> None:
        self._transcoder.submit(self._writer.abort)


@dataclass
class _Job:
    event_id: str
    key: str
    clip_from: datetime
    opened: float
    """time.monotonic() of `open`."""
    writer: _Writer | _Queued | None = None
    """Made at the first keyframe, when the source's codec is known."""
    params: StreamParams | None = None
    clip_to: datetime | None = None
    ended: bool = False
    result: concurrent.futures.Future[ClipInfo | None] = field(default_factory=concurrent.futures.Future)
    held: deque[CapturedPacket] = field(default_factory=deque)
    """Packets not written yet: they may lie past the `clip_to` still to come (see `hold_s`)."""


class LiveRenditions:
    """One camera's live renditions: a ring of the analysed stream's packets and the renditions
    of its open events (see the module docstring)."""

    def __init__(
        self,
        camera_id: str,
        subscription: Subscription,
        store: FootageStore,
        transcoder: Transcoder,
        *,
        pre_roll_s: float,
        hold_s: float = 0.0,
        max_open_s: float = 3600.0,
        width: int = RENDITION_WIDTH,
        scratch_dir: Path | None = None,
        wanted: Callable[[], bool] = lambda: True,
        clock: Clock = utc_now,
    ) -> None:
        """`hold_s`: how long packets wait before they are written, because an event's `clip_to`
        may lie that far before the moment its `close` comes (the event tracker's merge gap minus
        its post-roll, when the gap is longer). `max_open_s`: a rendition not closed within this
        is dropped (its event was lost). `wanted()`: whether renditions are needed at all (the
        camera's main stream is H.265); read for every packet, so a camera switched to H.265
        gets them from its next packet on. `clock`: the wall clock the grace is measured on."""
        self.camera_id = camera_id
        self.subscription = subscription
        self.store = store
        self.transcoder = transcoder
        self.width = width
        self.scratch_dir = scratch_dir
        self.wanted = wanted
        self.max_open_s = max_open_s
        self.clock = clock
        self._horizon = timedelta(seconds=pre_roll_s + RING_MARGIN_S)
        self._hold = timedelta(seconds=hold_s)
        self._gops: deque[list[CapturedPacket]] = deque()
        self._jobs: dict[str, _Job] = {}
        self._commands: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stopped = False

    # ---------------------------------------------------------------- event loop side ---

    def open(self, event_id: str, key: str, clip_from: datetime) -> None:
        """Start the rendition of an event, published as `key` once closed."""
        self._command(lambda: self._open(event_id, key, clip_from))

    def close(self, event_id: str, clip_to: datetime) -> concurrent.futures.Future[ClipInfo | None]:
        """The event ended: its rendition, once the footage reaches `clip_to` (None if it was
        never opened, or the stream had no picture in its range)."""
        future: concurrent.futures.Future[ClipInfo | None] = concurrent.futures.Future()
        if not self._command(lambda: self._close(event_id, clip_to, future)):
            future.set_result(None)
        return future

    def stop(self) -> None:
        self._stop.set()
        self.subscription.wake()

    def _command(self, command: Callable[[], None]) -> bool:
        """Queue a command for the packet thread; False once it has ended."""
        with self._lock:
            if self._stopped:
                return False
            self._commands.append(command)
        self.subscription.wake()
        return True

    # ------------------------------------------------------------------ packet thread ---

    def run(self) -> None:
        """The thread's body, until `stop()`. Then renditions whose `clip_to` was set are
        published with what they have, the others dropped."""
        try:
            while not self._stop.is_set():
                item = self.subscription.get(timeout=POLL_S)
                self._run_commands()
                if isinstance(item, CapturedPacket):
                    self._packet(item)
                self._expire()
        finally:
            with self._lock:
                self._stopped = True
            self._run_commands()
            for job in list(self._jobs.values()):
                self._end(job, publish_it=job.clip_to is not None)
                self._jobs.pop(job.event_id, None)

    def _run_commands(self) -> None:
        while True:
            with self._lock:
                if not self._commands:
                    return
                command = self._commands.popleft()
            command()

    def _open(self, event_id: str, key: str, clip_from: datetime) -> None:
        if not self.wanted() or event_id in self._jobs:
            return
        job = self._jobs[event_id] = _Job(event_id, key, clip_from, time.monotonic())
        packets = [cp for gop in self._gops for cp in gop]
        starts = [i for i, cp in enumerate(packets) if cp.keyframe and cp.capture_utc <= clip_from]
        for cp in packets[starts[-1] if starts else 0 :]:
            self._feed(job, cp)

    def _close(self, event_id: str, clip_to: datetime, future: concurrent.futures.Future[ClipInfo | None]) -> None:
        job = self._jobs.get(event_id)
        if job is None:
            future.set_result(None)
            return
        job.clip_to = clip_to
        _chain(job.result, future)
        if job.ended:
            del self._jobs[event_id]
            return
        self._write_held(job)
        if job.held or (self._gops and self._gops[-1][-1].capture_utc > clip_to):
            self._end(job, publish_it=True)

    def _packet(self, cp: CapturedPacket) -> None:
        if not self.wanted():
            self._gops.clear()
            return
        if cp.keyframe or not self._gops:
            self._gops.append([cp])
        else:
            self._gops[-1].append(cp)
        while len(self._gops) > 1 and self._gops[1][0].capture_utc <= cp.capture_utc - self._horizon:
            self._gops.popleft()
        for job in list(self._jobs.values()):
            self._feed(job, cp)

    def _feed(self, job: _Job, cp: CapturedPacket) -> None:
        if job.ended:
            return
        if job.clip_to is not None and cp.capture_utc > job.clip_to:
            self._end(job, publish_it=True)
            return
        if job.params is None:
            # Find the start: the last keyframe at or before clip_from, or the first one after it.
            if cp.keyframe and cp.capture_utc <= job.clip_from:
                job.held = deque([cp])
                return
            if not (job.held or cp.keyframe):
                return  # nothing decodes before a keyframe
            if cp.capture_utc <= job.clip_from:
                job.held.append(cp)
                return
            self._start(job, job.held[0] if job.held else cp)
        assert job.params is not None
        if not same_stream(job.params, cp.params):
            log.warning(
                "rendition of event %s cut short: the camera's stream changed from %s to %s",
                job.event_id,
                job.params,
                cp.params,
                extra={"camera": self.camera_id},
            )
            self._end(job, publish_it=True)
            return
        job.held.append(cp)
        hold_until = cp.capture_utc - self._hold
        while job.held and job.held[0].capture_utc <= hold_until and not job.ended:
            self._write(job, job.held.popleft())

    def _start(self, job: _Job, first: CapturedPacket) -> None:
        """The rendition's first packet is known: remux an H.264 source, transcode anything else."""
        job.params = first.params
        if first.params.codec == "h264":
            job.writer = _RemuxWriter(self.store, job.key, self.scratch_dir)
        else:
            job.writer = _Queued(_TranscodeWriter(self.store, job.key, self.width, self.scratch_dir), self.transcoder)

    def _write(self, job: _Job, cp: CapturedPacket) -> None:
        assert job.writer is not None
        try:
            job.writer.write(cp)
        except Exception:
            log.exception("rendition of event %s failed", job.event_id, extra={"camera": self.camera_id})
            self._end(job, publish_it=False)

    def _write_held(self, job: _Job) -> None:
        """Write the held packets up to `clip_to`, once it is known."""
        if job.writer is None and job.held:
            self._start(job, job.held[0])
        while not job.ended and job.held and job.clip_to is not None and job.held[0].capture_utc <= job.clip_to:
            self._write(job, job.held.popleft())

    def _expire(self) -> None:
        now = self.clock()
        for job in list(self._jobs.values()):
            if job.ended:
                continue
            if job.clip_to is not None and now > job.clip_to + timedelta(seconds=FINISH_GRACE_S):
                self._end(job, publish_it=True)
            elif job.clip_to is None and time.monotonic() - job.opened > self.max_open_s:
                log.warning(
                    "rendition of event %s dropped: the event was not closed within %.0f s",
                    job.event_id,
                    self.max_open_s,
                    extra={"camera": self.camera_id},
                )
                self._end(job, publish_it=False)
                del self._jobs[job.event_id]

    def _end(self, job: _Job, *, publish_it: bool) -> None:
        """Publish (or drop) the rendition; its result resolves when that is done."""
        if job.ended:
            return
        if publish_it:
            self._write_held(job)
            if job.ended:  # writing failed
                return
        job.ended = True
        job.held.clear()
        if job.clip_to is not None:
            self._jobs.pop(job.event_id, None)
        writer = job.writer
        if writer is None:
            job.result.set_result(None)
        elif not publish_it:
            writer.abort()
            job.result.set_result(None)
        elif isinstance(writer, _Queued):
            _chain(writer.finish_later(), job.result, none_on=NoFootage)
        else:
            try:
                job.result.set_result(writer.finish())
            except NoFootage:
                job.result.set_result(None)
            except Exception as exc:
                job.result.set_exception(exc)


def _chain(
    source: concurrent.futures.Future[ClipInfo] | concurrent.futures.Future[ClipInfo | None],
    target: concurrent.futures.Future[ClipInfo | None],
    *,
    none_on: type[BaseException] | None = None,
) -> None:
    """Resolve `target` as `source` resolves (with None for a `none_on` exception)."""

    def done(f: concurrent.futures.Future[ClipInfo] | concurrent.futures.Future[ClipInfo | None]) -> None:
        if target.done():
            return
        if f.cancelled():
            target.set_result(None)
        elif (exc := f.exception()) is not None:
            if none_on is not None and isinstance(exc, none_on):
                target.set_result(None)
            else:
                target.set_exception(exc)
        else:
            target.set_result(f.result())

    source.add_done_callback(done)

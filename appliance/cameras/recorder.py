"""Recording a camera's main stream by copy into fragmented MP4 segments, indexed in the database.

Packets come from the stream's fanout (appliance/cameras/fanout.py) and are remuxed, never
re-encoded: recording a camera costs a copy of its bytes. A segment starts at a keyframe and ends
at the first keyframe after `segment_seconds` (about 10 s), so every file plays on its own.

Files are fragmented MP4 (`empty_moov`, a `moof`+`mdat` fragment at every keyframe and at least
every `FRAGMENT_SECONDS`): each fragment is handed to the kernel as soon as it is complete, so a
kill -9 of the daemon loses at most the fragment being written, and reconciliation (reconcile.py)
repairs the partial file at the next start. A power cut can also lose what the kernel had not yet
written back (Linux flushes dirty pages within ~30 s); only finished segments are fsynced, because
an fsync per fragment and camera would wear flash storage for little gain.

H.265 is tagged `hvc1`, the tag Apple players require: the parameter sets live in the header, and
FFmpeg's muxer drops the in-band copies cameras repeat before each keyframe (the slices themselves
are never touched). Browsers without H.265 support need a transcode whatever the tag.

Timestamps in a file start at 0; the UTC start is in the index, in the file's `creation_time` and
(to the second) in its name. Name and creation time are fixed when the file is opened; the index
gets the start as placed by the packets seen last, which after a connect can be up to a GOP earlier
(see fanout's capture clock). Decoding timestamps are forced to increase, and a jump in the
camera's clock is closed up rather than written as a hole.

Threads: muxing and file I/O block, so a `Recorder` runs them in a thread of its own and sends
what happened (segment opened / finished / discarded) to the event loop, where the index is
updated, in order, retrying while the database is unreachable or full. A full footage disk
(DiskFull) ends the current segment at its last complete fragment; recording resumes at a
keyframe once `min_free_bytes` are free again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import av
from av.container import OutputContainer
from av.video.stream import VideoStream
from sqlalchemy.exc import DBAPIError, IntegrityError

from appliance.cameras.fanout import CapturedPacket, Item, SessionEnded, Subscription
from appliance.cameras.pressure import RecordingPressure
from appliance.cameras.reconcile import salvage_partial, segment_info
from appliance.cameras.uncancelled import uncancelled
from appliance.storage.footage import DiskFull, FootageStore, free_key
from appliance.storage.models import SEGMENT_CODECS
from appliance.storage.segments import (
    MAX_SEGMENT_SECONDS,
    NewSegment,
    SegmentHook,
    SegmentIndex,
    SegmentInfo,
    UnknownSegment,
)
from appliance.threads import start_thread

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_SECONDS: Final = 10.0
FRAGMENT_SECONDS: Final = 1.0
"""Longest fragment, even when keyframes are further apart: the most a crash can lose."""
MP4_OPTIONS: Final = {
    # empty_moov: the header carries no sample table, so the file is playable as it grows;
    # default_base_moof: fragments are self-contained (what browsers and MSE expect).
    "movflags": "frag_keyframe+empty_moov+default_base_moof",
    "frag_duration": str(int(FRAGMENT_SECONDS * 1_000_000)),
}
HEVC_TAG: Final = "hvc1"
MAX_TIMESTAMP_JUMP_S: Final = 2.0
"""A step between packets larger than this (or backwards) is a discontinuity in the camera's
clock, closed up to one frame in the file rather than written as a pause."""
FALLBACK_FRAME_S: Final = 1 / 25
"""Frame duration assumed when the stream gives none (only for the first packets)."""
MIN_FREE_BYTES: Final = 64 * 1024 * 1024
"""A new segment is opened only with this much free: stopping short of a completely full disk
leaves room for the database and the logs (and for retention to act)."""
DISK_FULL_RETRY_S: Final = 10.0
"""After the disk filled, how often free space is checked again (at the next keyframe)."""
IDLE_FINISH_S: Final = 15.0
"""A segment is finished when no packet arrived for this long (a camera that stalls silently)."""
POLL_S: Final = 1.0
BEHIND_S: Final = 3.0
"""A batch whose oldest packet was captured this long ago means the recording thread was kept from
running (it takes a batch every quarter second): it raises the recording pressure, so that analysis
gives way (pressure.py). By capture time, not batch size: the burst of a GOP a camera sends at
connect is big but not late."""
BATCH_S: Final = 0.25
"""The recording thread takes its packets in batches this far apart rather than one by one: with
dozens of cameras, a thread woken for every packet costs more in thread switching (and contention
for Python's GIL) than the muxing itself. A fragment is 1 s, so footage is no later on disk."""
DB_RETRY_S: Final = 1.0
DB_RETRY_MAX_S: Final = 30.0
SHUTDOWN_DB_ATTEMPTS: Final = 3
"""At shutdown, index updates are tried this often; reconciliation catches up what is left."""
SHUTDOWN_DB_RETRY_S: Final = 0.2
"""Pause between those tries."""


class UnsupportedStream(Exception):
    """The camera sends something other than H.264/H.265 video; the message says what to change."""


def creation_time(moment: datetime) -> str:
    """MP4 `creation_time` metadata: UTC, the way FFmpeg writes and reads it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _HashingSink(io.RawIOBase):
    """Passes writes to the store's writer and hashes them. Not seekable, so FFmpeg writes strictly
    in order and the running hash is the hash of the file."""

    def __init__(self, raw: io.RawIOBase) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        written = self._raw.write(data) or 0
        self.sha256.update(memoryview(data)[:written])
        return written

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class SegmentWriter:
    """One segment file: packets of one connection in, a published file and its SegmentInfo out.

    Blocking (muxing and file I/O); used by one thread.
    """

    def __init__(self, store: FootageStore, camera_id: str, first: CapturedPacket) -> None:
        params = first.params
        if params.codec not in SEGMENT_CODECS:
            raise UnsupportedStream(
                f"camera {camera_id!r} sends {params.codec} video; only H.264 and H.265 are recorded: "
                "set its main stream's encoding to H.264 (or H.265) in the camera's settings"
            )
        self.store = store
        self.session = first.session
        self.key = free_key(store, camera_id, first.capture_utc)
        self.new = NewSegment(camera_id, self.key, first.capture_utc, params.codec, params.width, params.height)
        self.time_base = first.time_base
        self._base = first.dts if first.dts is not None else first.pts
        self._last_dts: int | None = None
        self._first: int | None = None
        self._end = 0
        self._start_utc = first.capture_utc
        self._frame = max(1, first.duration or round(FALLBACK_FRAME_S / self.time_base))
        self._max_step = round(MAX_TIMESTAMP_JUMP_S / self.time_base)
        self._sink = _HashingSink(store.open_write(self.key))
        try:
            self._out: OutputContainer = av.open(self._sink, "w", format="mp4", options=MP4_OPTIONS)
            self._out.metadata["creation_time"] = creation_time(first.capture_utc)
            self._stream: VideoStream = self._out.add_stream_from_template(params.template, opaque=True)
            if params.codec == "hevc":
                self._stream.codec_tag = HEVC_TAG
        except BaseException:
            self._sink.close()
            store.abort(self.key)
            raise

    def elapsed_s(self, cp: CapturedPacket) -> float:
        """Media time from the segment's start to this packet (before any discontinuity fix)."""
        return float((cp.pts - self._base) * self.time_base)

    def write(self, cp: CapturedPacket) -> None:
        dts = (cp.dts if cp.dts is not None else cp.pts) - self._base
        pts = cp.pts - self._base
        if self._last_dts is not None:
            step = dts - self._last_dts
            if step <= 0 or step > self._max_step:
                # Close a clock jump up to one frame, or nudge a repeated timestamp forward.
                shift = (self._last_dts + (self._frame if abs(step) > self._frame else 1)) - dts
                self._base -= shift
                dts, pts = dts + shift, pts + shift
            else:
                self._frame = cp.duration or step
        # A new packet sharing the bytes (any buffer works, the stub says bytes): the shared packet
        # itself is never modified, other consumers read it.
        out = av.Packet(cp.packet)  # type: ignore[arg-type]
        out.stream = self._stream
        out.time_base = cp.time_base
        out.dts, out.pts = dts, max(pts, dts)
        out.duration = cp.duration or self._frame
        out.is_keyframe = cp.keyframe
        self._out.mux(out)
        self._last_dts = dts
        # Presentation starts at the earliest pts (with B-frames, later than the first dts).
        self._first = out.pts if self._first is None else min(self._first, out.pts)
        self._end = max(self._end, out.pts + out.duration)
        # The wall-clock anchor settles during the first seconds after a connect (see fanout), so
        # the latest packet places the segment best.
        self._start_utc = cp.capture_utc - timedelta(seconds=float((out.pts - self._first) * self.time_base))

    @property
    def duration_s(self) -> float:
        return float((self._end - (self._first or 0)) * self.time_base)

    def close(self) -> SegmentInfo:
        """Write the last fragment, publish the file; its SegmentInfo."""
        self._out.close()
        self._sink.close()
        size = self.store.finalize(self.key)
        duration = self.duration_s
        return SegmentInfo(
            camera_id=self.new.camera_id,
            key=self.key,
            start_utc=self._start_utc,
            end_utc=self._start_utc + timedelta(seconds=duration),
            duration_s=duration,
            size_bytes=size,
            sha256=self._sink.sha256.hexdigest(),
            codec=self.new.codec,
            width=self.new.width,
            height=self.new.height,
        )

    def abandon(self) -> SegmentInfo | None:
        """After a failure (full disk): keep what was written up to the last complete fragment,
        published; None if that is nothing (the partial file is removed)."""
        with contextlib.suppress(Exception):
            self._out.close()
        self._sink.close()
        salvaged = salvage_partial(self.store, self.key)
        if salvaged is None:
            self.store.abort(self.key)
            return None
        return segment_info(
            self.new.camera_id, self.key, self._start_utc, salvaged.probe, salvaged.size_bytes, salvaged.sha256
        )


def _waited(items: list[Item]) -> float:
    """Seconds since the oldest packet of a batch was captured (0 for a batch without packets)."""
    oldest = next((i.capture_utc for i in items if isinstance(i, CapturedPacket)), None)
    return 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()


# What the recording thread tells the event loop, in order.
@dataclass(frozen=True)
class _Opened:
    segment: NewSegment


@dataclass(frozen=True)
class _Finished:
    info: SegmentInfo


@dataclass(frozen=True)
class _Discarded:
    key: str


@dataclass(frozen=True)
class _Ended:
    error: BaseException | None


_Event = _Opened | _Finished | _Discarded | _Ended


@dataclass
class RecorderStatus:
    """For the console and /metrics. Written by the recording thread; read anywhere."""

    state: str = "starting"
    """starting | waiting_keyframe | recording | disk_full | unsupported | stopped"""
    current_key: str | None = None
    segments: int = 0
    packets: int = 0
    """Packets handled: written, or passed over (waiting for a keyframe, disk full)."""
    bytes_written: int = 0
    last_error: str | None = None


class Recorder:
    """Records one camera's main stream from its fanout subscription, until stopped or cancelled."""

    def __init__(
        self,
        camera_id: str,
        subscription: Subscription,
        store: FootageStore,
        index: SegmentIndex,
        *,
        segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
        min_free_bytes: int = MIN_FREE_BYTES,
        disk_retry_s: float = DISK_FULL_RETRY_S,
        on_segment_finalised: SegmentHook | None = None,
        pressure: RecordingPressure | None = None,
    ) -> None:
        if not 0 < segment_seconds <= MAX_SEGMENT_SECONDS:
            raise ValueError(f"segment_seconds must be in (0, {MAX_SEGMENT_SECONDS:.0f}], got {segment_seconds}")
        self.camera_id = camera_id
        self.subscription = subscription
        self.store = store
        self.index = index
        self.segment_seconds = segment_seconds
        self.min_free_bytes = min_free_bytes
        self.disk_retry_s = disk_retry_s
        self.on_segment_finalised = on_segment_finalised
        self.pressure = pressure
        self.status = RecorderStatus()
        self._stop = threading.Event()
        self._events: asyncio.Queue[_Event] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Recording thread only:
        self._writer: SegmentWriter | None = None
        self._seen_drops = 0
        self._last_packet = time.monotonic()
        self._retry_at = 0.0
        self._unsupported_session: int | None = None

    def stop(self) -> None:
        """Finish the current segment and end `run()`."""
        self._stop.set()
        self.subscription.wake()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        start_thread(self._thread_main, f"recorder-{self.camera_id}")
        ended: _Ended | None = None
        try:
            while True:
                event = await self._events.get()
                if isinstance(event, _Ended):
                    ended = event
                    break
                # A write cancelled half-way would lose the row or its chain entry.
                await uncancelled(self._apply(event))
        finally:
            # Also on cancellation: the thread finishes its segment, and its row is completed.
            self.stop()
            ended = ended or await self._drain()
        if ended.error is not None:
            raise RuntimeError(f"the recorder of camera {self.camera_id!r} failed: {ended.error}") from ended.error

    async def _drain(self) -> _Ended:
        """What the stopping thread still sends, up to its last word (awaited here rather than
        joined in the default executor, whose few workers every camera would queue for)."""
        while True:
            event = await self._events.get()
            if isinstance(event, _Ended):
                return event
            await self._apply(event)

    # -------------------------------------------------------------------- event loop side ---

    async def _apply(self, event: _Event) -> None:
        delay = DB_RETRY_S
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._apply_once(event)
                return
            except IntegrityError as exc:
                # Not transient: a row with this key already exists. The file stays; reconciliation
                # reports it at the next start.
                log.error("segment not indexed: %s", exc.orig, extra={"camera": self.camera_id, "event": repr(event)})
                return
            except (DBAPIError, OSError) as exc:
                if self._stop.is_set() and attempt >= SHUTDOWN_DB_ATTEMPTS:
                    log.error(
                        "segment index update abandoned; reconciliation will redo it at the next start",
                        extra={"camera": self.camera_id, "error": str(exc)},
                    )
                    return
                # Short and fixed while stopping: the shutdown budget is seconds.
                pause = SHUTDOWN_DB_RETRY_S if self._stop.is_set() else delay
                log.warning(
                    "footage index update failed; retrying",
                    extra={"camera": self.camera_id, "error": str(exc), "retry_in_s": pause},
                )
                await asyncio.sleep(pause)
                delay = min(delay * 2, DB_RETRY_MAX_S)

    async def _apply_once(self, event: _Event) -> None:
        if isinstance(event, _Opened):
            await self.index.add(event.segment)
        elif isinstance(event, _Finished):
            try:
                await self.index.finalize(event.info)
            except UnknownSegment:
                await self.index.add_complete(event.info)  # its "opened" row never made it
            await self._hook(event.info)
        elif isinstance(event, _Discarded):
            await self.index.delete(event.key)

    async def _hook(self, info: SegmentInfo) -> None:
        if self.on_segment_finalised is None:
            return
        try:
            await self.on_segment_finalised(info)
        except Exception:
            log.exception("on_segment_finalised failed", extra={"camera": self.camera_id, "key": info.key})

    # ------------------------------------------------------------------- recording thread ---

    def _emit(self, event: _Event) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._events.put_nowait, event)

    def _thread_main(self) -> None:
        error: BaseException | None = None
        try:
            while not self._stop.is_set():
                items = self.subscription.get_all(timeout=POLL_S)
                if self.pressure is not None and _waited(items) > BEHIND_S:
                    self.pressure.recorder_behind()
                if not items and time.monotonic() - self._last_packet > IDLE_FINISH_S:
                    self._finish()
                self._take(items)
                self._stop.wait(BATCH_S)
            # What the stream delivered before it stopped is footage too.
            self._take(self.subscription.get_all(timeout=0))
        except BaseException as exc:
            error = exc
            log.exception("recording thread failed", extra={"camera": self.camera_id})
        finally:
            with contextlib.suppress(Exception):
                self._finish()
            self.status.state = "stopped"
            self._emit(_Ended(error))

    def _take(self, items: list[Item]) -> None:
        for item in items:
            if isinstance(item, SessionEnded):
                self._finish()
            else:
                self._last_packet = time.monotonic()
                self._packet(item)
                self.status.packets += 1

    def _packet(self, cp: CapturedPacket) -> None:
        writer = self._writer
        dropped = self.subscription.dropped
        gap = dropped != self._seen_drops
        self._seen_drops = dropped
        if writer is not None:
            elapsed = writer.elapsed_s(cp)
            # A gap (this consumer fell behind, or a new connection) starts a new file rather than
            # closing the hole in time; so does a long enough segment reaching a keyframe.
            if gap or cp.session != writer.session or (cp.keyframe and elapsed >= self.segment_seconds):
                self._finish()
            elif elapsed >= MAX_SEGMENT_SECONDS:
                log.warning(
                    "camera sent no keyframe for an hour; cutting the segment mid-GOP", extra={"camera": self.camera_id}
                )
                self._finish()
                self._start(cp)
        if self._writer is None:
            if not cp.keyframe:
                if self.status.state in ("starting", "recording"):
                    self.status.state = "waiting_keyframe"
                return
            self._start(cp)
        if self._writer is not None:
            try:
                self._writer.write(cp)
            except DiskFull as exc:
                self._disk_full(exc)
                self._abandon()
            except Exception as exc:
                # One bad packet or I/O error costs this segment's tail, never the recorder.
                self._failed("writing a segment failed", exc)
                self._abandon()

    def _start(self, cp: CapturedPacket) -> None:
        if cp.session == self._unsupported_session:
            return
        now = time.monotonic()
        if now < self._retry_at:
            return
        try:
            free = self.store.free_bytes()
            if free < self.min_free_bytes:
                raise DiskFull(
                    28,
                    f"only {free / 2**20:.1f} MiB free on the footage disk (recording needs "
                    f"{self.min_free_bytes / 2**20:.0f} MiB): recording pauses until retention or a person "
                    "frees space",
                )
            self._writer = SegmentWriter(self.store, self.camera_id, cp)
        except DiskFull as exc:
            self._disk_full(exc)
            return
        except UnsupportedStream as exc:
            self._unsupported_session = cp.session
            self.status.state, self.status.last_error = "unsupported", str(exc)
            log.error("camera stream cannot be recorded: %s", exc, extra={"camera": self.camera_id})
            return
        except Exception as exc:
            self._failed("opening a segment failed", exc)
            self._retry_at = now + self.disk_retry_s
            return
        if self.status.state == "disk_full":
            log.info("footage disk has room again; recording resumes", extra={"camera": self.camera_id})
            self.status.last_error = None
        self.status.state, self.status.current_key = "recording", self._writer.key
        self._emit(_Opened(self._writer.new))

    def _disk_full(self, exc: DiskFull) -> None:
        self._retry_at = time.monotonic() + self.disk_retry_s
        if self.status.state != "disk_full":
            log.error("recording paused: %s", exc, extra={"camera": self.camera_id})
        self.status.state, self.status.last_error = "disk_full", str(exc)

    def _finish(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self.status.current_key = None
        try:
            info = writer.close()
        except Exception as exc:
            if isinstance(exc, DiskFull):
                self._disk_full(exc)
            else:
                self._failed("finishing a segment failed", exc)
            self._writer = writer
            self._abandon()
            return
        self._finished(info)

    def _failed(self, what: str, exc: Exception) -> None:
        log.error("%s: %s", what, exc, exc_info=exc, extra={"camera": self.camera_id})
        self.status.last_error = f"{what}: {exc}"

    def _abandon(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self.status.current_key = None
        try:
            info = writer.abandon()
        except Exception:
            # The partial stays for reconciliation at the next start; its row too.
            log.exception("could not salvage a segment after a write failure", extra={"key": writer.key})
            return
        if info is None:
            self._emit(_Discarded(writer.key))
        else:
            self._finished(info)

    def _finished(self, info: SegmentInfo) -> None:
        self.status.segments += 1
        self.status.bytes_written += info.size_bytes
        self._emit(_Finished(info))

"""Event clips: one MP4 per event, cut from the recorded segments by copy, hashed and recorded.

`build_clip` remuxes the packets from the last keyframe at or before `clip_from` up to `clip_to`
out of consecutive segments (the newest may still be being written: its partial file is read up
to its last complete fragment) into one MP4 with the index in front (`faststart`), so a browser
starts playing before the whole file has arrived. Timestamps run from 0 without gaps, whatever
the segments' own timelines; the file's `creation_time` is the first frame's UTC time. H.265 keeps
its `hvc1` tag (what Apple players need), and browsers that cannot play H.265 at all (desktop
Chromium) get an H.264 rendition of the event: made while the event happens (renditions.py), or
when that failed by `h264_rendition` from the finished clip; the H.265 clip stays the evidence.

`ClipService` does this for each ended event: it waits until the footage reaches `clip_to`
(reading the partial segment is what makes a clip ready about a fragment after `clip_to` rather
than a whole segment later), builds the clip in a worker thread, adds it to the evidence chain,
stores it with the event (with the rendition of an H.265 clip) and publishes `ClipReady`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import tempfile
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Final

import av
from av.container import InputContainer, OutputContainer
from av.video.stream import VideoStream

from appliance.bus import EventBus
from appliance.cameras.demux import open_for_demux
from appliance.cameras.events import EventEnded
from appliance.cameras.fanout import StreamParams, VideoPacket
from appliance.cameras.messages import ClipReady
from appliance.cameras.reconcile import HASH_CHUNK_BYTES, playable_end
from appliance.cameras.recorder import FALLBACK_FRAME_S, HEVC_TAG, creation_time
from appliance.evidence.ledger import EvidenceLedger
from appliance.storage.events import EventStore
from appliance.storage.footage import PARTIAL_SUFFIX, FootageStore, clip_key
from appliance.storage.models import SEGMENT_COMPLETE, Segment
from appliance.storage.segments import SegmentIndex

log = logging.getLogger(__name__)

CLIP_MP4_OPTIONS: Final = {"movflags": "+faststart"}
"""The index (`moov`) before the media: playback starts before the download ends. FFmpeg moves it
there in a second pass over the finished file, which is why clips are muxed into a scratch file."""
RENDITION_WIDTH: Final = 640
"""H.264 renditions are at most this wide: enough to see what happened in an alert or a browser,
cheap to encode; the full-resolution H.265 clip is the evidence and the export."""
RENDITION_THREADS: Final = 1
"""One core for decoding and one for encoding at most, so a transcode never starves the camera
pipelines on a two-core box; ClipService also runs one transcode at a time."""
RENDITION_X264_OPTIONS: Final = {"preset": "veryfast", "crf": "28"}
"""veryfast: far better compression than ultrafast, and at 640 px encoding costs little next to
decoding the H.265 source (~15 % of the transcode); crf 28: small files, faces still recognisable."""
RENDITION_SCALER: Final = "AREA"
"""Averages the source pixels (no aliasing when shrinking 3×), at the cost of a bilinear scaler."""
SHORT_CLIP_WARNING_S: Final = 1.0
"""How much footage may be missing at a clip's end before the log says so: at a stop, the events
still open end with the last recorder batch (a quarter of a second), which is not worth a line
per camera; a camera that dropped mid-event is."""
FOOTAGE_POLL_S: Final = 0.25
"""How often ClipService looks whether the footage has reached `clip_to`; the clip is ready at
most this much later than it could be."""
CLIP_WAIT_TIMEOUT_S: Final = 30.0
"""How long after `clip_to` ClipService waits for the footage before it builds what exists (or
gives up if nothing does). Longer than the recorder's idle cut (15 s), so footage of a camera that
stalled silently is published before the wait ends."""


class NoFootage(Exception):
    """The sources hold no decodable picture in the requested range."""


@dataclass(frozen=True)
class ClipInfo:
    key: str
    sha256: str
    size: int
    duration_s: float
    first_frame_utc: datetime
    """UTC time of the clip's first frame (a keyframe, at or before `clip_from` when footage exists
    that early). Also the file's `creation_time`, to the second (all MP4 keeps)."""
    codec: str
    """"h264" or "hevc"."""

    @property
    def end_utc(self) -> datetime:
        return self.first_frame_utc + timedelta(seconds=self.duration_s)


# ----------------------------------------------------------------------- reading footage ---


class _Window(io.RawIOBase):
    """A read-only view of the first `limit` bytes of a file: the complete fragments of a segment
    still being written, so the demuxer never meets the half-written one."""

    def __init__(self, f: BinaryIO, limit: int) -> None:
        self._f = f
        self._limit = limit
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._limit - self._pos)
        if wanted <= 0:
            return 0
        self._f.seek(self._pos)
        got = self._f.readinto(view[:wanted])  # type: ignore[attr-defined]
        self._pos += got
        return int(got)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._limit}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


@contextlib.contextmanager
def open_source(store: FootageStore, source: str) -> Iterator[BinaryIO]:
    """A segment for reading: a published key, or a key + ".part" for a segment being written
    (up to its last complete fragment; the published file if it was finished meanwhile)."""
    if not source.endswith(PARTIAL_SUFFIX):
        with store.open_read(source) as f:
            yield f
        return
    key = source.removesuffix(PARTIAL_SUFFIX)
    try:
        partial = store.open_partial(key)
    except FileNotFoundError:
        partial = None
    if partial is None:
        with store.open_read(key) as f:
            yield f
        return
    with partial:
        end, _fragments = playable_end(partial)
        yield io.BufferedReader(_Window(partial, end))


@dataclass
class ClipPacket:
    """A packet with what muxing it into a clip needs. `source` numbers the segment (or the live
    connection) it came from: each has a timeline of its own."""

    packet: VideoPacket
    params: StreamParams
    source: int
    time_base: Fraction
    t: datetime
    """Presentation time, UTC."""
    t_decode: datetime
    """When the frame is decoded, UTC, on the same clock (earlier than `t` for the frames that
    B-frames are predicted from, later for the B-frames)."""


def same_stream(a: StreamParams, b: StreamParams) -> bool:
    """Whether packets of `a` and `b` can go into one MP4 (one sample entry) or one decoder."""
    return (a.codec, a.width, a.height, a.extradata) == (b.codec, b.width, b.height, b.extradata)


def _demux(store: FootageStore, sources: Sequence[str], starts: Sequence[datetime]) -> Iterator[ClipPacket]:
    """The sources' video packets in order, with their UTC times. Stops before a source whose
    stream differs from the first (the camera's settings changed): one MP4 has one sample entry."""
    first: StreamParams | None = None
    for n, (source, start) in enumerate(zip(sources, starts, strict=True)):
        with open_source(store, source) as f, open_for_demux(f) as container:
            video = container.streams.video[0]
            params = StreamParams(video)
            if first is None:
                first = params
            elif not same_stream(first, params):
                log.warning(
                    "clip cut short: the camera's stream changed from %s to %s at %s",
                    first,
                    params,
                    start.isoformat(),
                    extra={"source": source},
                )
                return
            time_base = video.time_base or params.time_base
            origin: tuple[int, int] | None = None
            for packet in container.demux(video):
                if packet.size == 0 or packet.pts is None:
                    continue
                dts = packet.dts if packet.dts is not None else packet.pts
                # The segment's UTC start is its first (key)frame's presentation, which is also
                # its first decoding slot.
                origin = origin or (packet.pts, dts)
                yield ClipPacket(
                    packet,
                    params,
                    n,
                    time_base,
                    start + timedelta(seconds=float((packet.pts - origin[0]) * time_base)),
                    start + timedelta(seconds=float((dts - origin[1]) * time_base)),
                )


def _select(items: Iterator[ClipPacket], clip_from: datetime, clip_to: datetime) -> Iterator[ClipPacket]:
    """From the last keyframe at or before `clip_from` (or the first one after it, if the footage
    starts later) to the last packet decoded at or before `clip_to`, plus the B-frames decoded
    after that but shown before it (without them the last frames would have holes)."""
    held: list[ClipPacket] = []  # the group of pictures that holds clip_from, kept until the next keyframe
    latest: datetime | None = None  # the newest picture chosen; None until the start is found
    for item in items:
        beyond = item.t_decode > clip_to
        if latest is None:
            if not beyond and not (item.packet.is_keyframe and item.t > clip_from):
                if item.packet.is_keyframe:
                    held = [item]
                elif held:
                    held.append(item)
                continue
            if beyond and not any(i.t >= clip_from for i in held):
                return  # a gap in the footage covers the whole range
            yield from held
            latest = max((i.t for i in held), default=item.t)
        if beyond and item.t >= latest:
            return
        yield item
        latest = max(latest, item.t)
    if latest is None and any(i.t >= clip_from for i in held):
        yield from held  # the footage ends within the group that holds clip_from


# ------------------------------------------------------------------------------- writing ---


def _parse_creation_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


class ClipMuxer:
    """Packets of consecutive segments (or live connections) into one faststart MP4, with
    timestamps continuous from 0. Blocking."""

    def __init__(self, path: Path, first: ClipPacket) -> None:
        self.first_frame_utc = first.t
        self.codec = first.params.codec
        self.time_base = first.time_base
        self._out: OutputContainer = av.open(str(path), "w", format="mp4", options=CLIP_MP4_OPTIONS)
        self._out.metadata["creation_time"] = creation_time(first.t)
        self._stream: VideoStream = self._out.add_stream_from_template(first.params.template, opaque=True)
        if self.codec == "hevc":
            self._stream.codec_tag = HEVC_TAG
        self._source = -1
        self._origin = 0  # decoding timestamp, in the source's time base, mapped to _offset
        self._offset = 0  # in the clip's time base
        # The first frame is presented at 0; with B-frames it is decoded a little earlier, at a
        # negative time, which the muxer turns into an edit list.
        packet = first.packet
        delay = packet.pts - packet.dts if packet.pts is not None and packet.dts is not None else 0
        self._next_dts = -round(delay * first.time_base / self.time_base)
        self._last_dts: int | None = None
        self._first_pts: int | None = None
        self._end = 0
        self._frame = max(1, round(Fraction(FALLBACK_FRAME_S) / self.time_base))

    def _ticks(self, value: int, time_base: Fraction) -> int:
        return round(value * time_base / self.time_base)

    def write(self, item: ClipPacket) -> None:
        packet = item.packet
        dts = packet.dts if packet.dts is not None else packet.pts
        assert dts is not None and packet.pts is not None
        if item.source != self._source:
            # Each segment's timeline starts anew; continue the clip's where the last one ended.
            self._source, self._origin, self._offset = item.source, dts, self._next_dts
        out_dts = self._offset + self._ticks(dts - self._origin, item.time_base)
        out_pts = self._offset + self._ticks(packet.pts - self._origin, item.time_base)
        if self._last_dts is not None and out_dts <= self._last_dts:
            out_dts = self._last_dts + 1
        duration = self._ticks(packet.duration or 0, item.time_base) or self._frame
        self._frame = duration
        packet.stream = self._stream
        packet.time_base = self.time_base
        packet.dts, packet.pts, packet.duration = out_dts, max(out_pts, out_dts), duration
        self._out.mux(packet)
        self._last_dts = out_dts
        self._next_dts = out_dts + duration
        self._first_pts = out_pts if self._first_pts is None else min(self._first_pts, out_pts)
        self._end = max(self._end, out_pts + duration)

    @property
    def duration_s(self) -> float:
        return float((self._end - (self._first_pts or 0)) * self.time_base)

    def close(self) -> None:
        self._out.close()


def publish(store: FootageStore, path: Path, key: str) -> tuple[str, int]:
    """Copy a scratch file into the store under `key` (partial, then finalised); (sha256, size)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as src, store.open_write(key) as dst:
            while chunk := src.read(HASH_CHUNK_BYTES):
                dst.write(chunk)
                digest.update(chunk)
        size = store.finalize(key)
    except BaseException:
        store.abort(key)
        raise
    return digest.hexdigest(), size


def build_clip(
    store: FootageStore,
    sources: Sequence[str],
    source_starts: Sequence[datetime],
    clip_from: datetime,
    clip_to: datetime,
    out_key: str,
    *,
    scratch_dir: Path | None = None,
) -> ClipInfo:
    """Blocking: remux [clip_from, clip_to] of the segments `sources` (keys in time order; the last
    may be a key + ".part", a segment being written) starting at `source_starts` (UTC) into one
    faststart MP4 published as `out_key`. NoFootage if no picture falls in the range.

    `scratch_dir` holds the clip while it is muxed (faststart rewrites the file); on the box, put
    it on the footage disk rather than a RAM /tmp."""
    if len(sources) != len(source_starts):
        raise ValueError(f"{len(sources)} sources but {len(source_starts)} start times")
    if clip_to <= clip_from:
        raise ValueError(f"the clip ends ({clip_to.isoformat()}) before it starts ({clip_from.isoformat()})")
    with tempfile.TemporaryDirectory(prefix="clip-", dir=scratch_dir) as tmp:
        path = Path(tmp) / "clip.mp4"
        remux: ClipMuxer | None = None
        try:
            for item in _select(_demux(store, sources, source_starts), clip_from, clip_to):
                remux = remux or ClipMuxer(path, item)
                remux.write(item)
        finally:
            if remux is not None:
                remux.close()
        if remux is None:
            raise NoFootage(
                f"no picture between {clip_from.isoformat()} and {clip_to.isoformat()} in {len(sources)} segment(s)"
            )
        sha256, size = publish(store, path, out_key)
    return ClipInfo(out_key, sha256, size, remux.duration_s, remux.first_frame_utc, remux.codec)


def footage_end(store: FootageStore, source: str, start_utc: datetime) -> datetime | None:
    """Blocking: the UTC time up to which a segment (or a key + ".part") holds pictures; None if
    it holds none yet. Demuxes without decoding: milliseconds for a 10 s segment."""
    try:
        with open_source(store, source) as f, open_for_demux(f) as container:
            video = container.streams.video[0]
            time_base = video.time_base
            assert time_base is not None
            origin: int | None = None
            end = 0
            for packet in container.demux(video):
                if packet.size == 0 or packet.pts is None:
                    continue
                origin = packet.pts if origin is None else origin
                end = max(end, packet.pts + (packet.duration or 0))
    except (FileNotFoundError, av.error.InvalidDataError):
        return None  # gone meanwhile, or nothing but a header yet
    if origin is None:
        return None
    return start_utc + timedelta(seconds=float((end - origin) * time_base))


# --------------------------------------------------------------------------- rendition ---


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


class RenditionEncoder:
    """Decoded pictures into a faststart H.264 MP4 at most `width` px wide (blocking): what browsers
    without H.265 play. Opened at the first picture, whose size sets the output's."""

    def __init__(
        self,
        path: Path,
        first_frame_utc: datetime,
        time_base: Fraction,
        rate: Fraction | None = None,
        width: int = RENDITION_WIDTH,
        threads: int = RENDITION_THREADS,
    ) -> None:
        self.path = path
        self.first_frame_utc = first_frame_utc
        self.time_base = time_base
        self.frames = 0
        self._rate = rate
        self._width = width
        self._threads = threads
        self._out: OutputContainer | None = None
        self._stream: VideoStream | None = None
        self._size = (0, 0)
        self._end = 0

    def _open(self, in_w: int, in_h: int) -> None:
        out_w = _even(min(self._width, in_w))
        self._size = (out_w, _even(in_h * out_w / in_w))
        out = av.open(str(self.path), "w", format="mp4", options=CLIP_MP4_OPTIONS)
        out.metadata["creation_time"] = creation_time(self.first_frame_utc)
        stream = out.add_stream("libx264", rate=self._rate)
        stream.width, stream.height = self._size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = self.time_base
        stream.codec_context.thread_count = self._threads
        stream.codec_context.options = {**RENDITION_X264_OPTIONS, "threads": str(self._threads)}
        self._out, self._stream = out, stream

    def add(self, frame: av.VideoFrame, pts: int, duration: int) -> None:
        """A picture shown at `pts` for `duration` (in `time_base`, from the first picture's 0)."""
        if self._out is None or self._stream is None:
            self._open(frame.width, frame.height)
        out, stream = self._out, self._stream
        assert out is not None and stream is not None
        width, height = self._size
        scaled = frame.reformat(width=width, height=height, format="yuv420p", interpolation=RENDITION_SCALER)
        scaled.pts, scaled.time_base = pts, self.time_base
        self._end = max(self._end, pts + duration)
        out.mux(stream.encode(scaled))
        self.frames += 1

    @property
    def width(self) -> int:
        return self._size[0]

    def close(self) -> float:
        """Flush and finish the file (moving its index to the front); its duration in seconds."""
        if self._out is not None and self._stream is not None:
            try:
                self._out.mux(self._stream.encode())
            finally:
                self._out.close()
                self._out = None
        return float(self._end * self.time_base)


def h264_rendition(
    store: FootageStore,
    clip_key: str,
    out_key: str,
    width: int = RENDITION_WIDTH,
    threads: int = RENDITION_THREADS,
    *,
    first_frame_utc: datetime | None = None,
    scratch_dir: Path | None = None,
) -> ClipInfo:
    """Blocking: decode a clip and encode it as H.264 (at most `width` px wide, faststart, for
    browsers that cannot play H.265), published as `out_key`. Uses `threads` threads to decode
    and as many to encode. `first_frame_utc` is the clip's (`ClipInfo.first_frame_utc`); without
    it, the clip's `creation_time` is used, which MP4 keeps to the second only."""
    with (
        tempfile.TemporaryDirectory(prefix="rendition-", dir=scratch_dir) as tmp,
        store.open_read(clip_key) as f,
        av.open(f, "r") as src,
    ):
        assert isinstance(src, InputContainer)
        video = src.streams.video[0]
        video.codec_context.thread_count = threads
        time_base = video.time_base
        assert time_base is not None
        first_utc = first_frame_utc or _parse_creation_time(src.metadata.get("creation_time"))
        if first_utc is None:
            raise ValueError(f"clip {clip_key!r} has no creation_time: make clips with build_clip")
        frame_s = 1 / video.average_rate if video.average_rate else Fraction(FALLBACK_FRAME_S)
        frame_ticks = max(1, round(frame_s / time_base))
        encoder = RenditionEncoder(
            Path(tmp) / "rendition.mp4", first_utc, time_base, video.average_rate, width, threads
        )
        origin: int | None = None
        try:
            for frame in src.decode(video):
                if frame.pts is None:
                    continue
                origin = frame.pts if origin is None else origin
                encoder.add(frame, frame.pts - origin, frame.duration or frame_ticks)
        finally:
            duration = encoder.close()
        if not encoder.frames:
            raise NoFootage(f"clip {clip_key!r} holds no picture")
        sha256, size = publish(store, encoder.path, out_key)
    return ClipInfo(out_key, sha256, size, duration, first_utc, "h264")


# ----------------------------------------------------------------------------- service ---


class ClipService:
    """Builds, records and announces the clip of each ended event (see the module docstring)."""

    def __init__(
        self,
        store: FootageStore,
        segment_index: SegmentIndex,
        event_store: EventStore,
        ledger: EvidenceLedger,
        bus: EventBus,
        *,
        wait_timeout_s: float = CLIP_WAIT_TIMEOUT_S,
        poll_s: float = FOOTAGE_POLL_S,
        rendition_width: int = RENDITION_WIDTH,
        scratch_dir: Path | None = None,
    ) -> None:
        self.store = store
        self.index = segment_index
        self.events = event_store
        self.ledger = ledger
        self.bus = bus
        self.wait_timeout_s = wait_timeout_s
        self.poll_s = poll_s
        self.rendition_width = rendition_width
        self.scratch_dir = scratch_dir
        # Transcoding is the one CPU-heavy step here: one at a time, whatever the number of cameras.
        self._transcode = asyncio.Semaphore(1)

    async def on_event_ended(
        self,
        action: EventEnded,
        rendition: Awaitable[ClipInfo | None] | None = None,
        footage_final: asyncio.Event | None = None,
    ) -> ClipInfo | None:
        """Make the event's clip; None (and an error logged) when there is no footage for it or
        building it failed. Never raises, except when cancelled.

        `rendition`: the event's H.264 rendition made live (renditions.py), for an H.265 clip;
        when it gives None or fails, the clip is transcoded instead. Without a clip it is deleted.
        `footage_final`: set once the camera records nothing more (its recorder stopped, or the
        event is from an earlier run): the clip is made from what there is, without waiting."""
        where = {"camera": action.camera_id, "event_id": action.event_id}
        made = False
        try:
            rows, covered = await self._wait_for_footage(action, footage_final)
            if covered is None:
                log.error(
                    "no clip for event %s: no footage from %s to %s arrived within %.0f s; the camera was "
                    "probably disconnected or not recording: check its status and the recorder's log",
                    action.event_id,
                    action.clip_from.isoformat(),
                    action.clip_to.isoformat(),
                    self.wait_timeout_s,
                    extra=where,
                )
                return None
            if (action.clip_to - covered).total_seconds() > SHORT_CLIP_WARNING_S:
                log.warning(
                    "event %s: footage ends at %s, %.1f s before the clip's end; the clip is shorter",
                    action.event_id,
                    covered.isoformat(),
                    (action.clip_to - covered).total_seconds(),
                    extra=where,
                )
            clip = await self._make(action, rows, rendition)
            made = True
            return clip
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("no clip for event %s: making or recording it failed", action.event_id, extra=where)
            return None
        finally:
            if rendition is not None and not made:
                await self.discard_rendition(rendition)

    async def _wait_for_footage(
        self, action: EventEnded, final: asyncio.Event | None
    ) -> tuple[list[Segment], datetime | None]:
        """The segments of the clip's range once footage reaches `clip_to`, or when the wait is
        over; with how far the footage reaches (None: no picture in the range at all)."""
        loop = asyncio.get_running_loop()
        ahead = max(0.0, (action.clip_to - datetime.now(UTC)).total_seconds())
        deadline = loop.time() + ahead + self.wait_timeout_s
        while True:
            # Looked at before the rows are read: rows read after it was set are the last ones.
            last = final is not None and final.is_set()
            rows = await self.index.list_range(action.camera_id, action.clip_from, action.clip_to)
            covered = await self._covered_until(rows)
            if (covered is not None and covered >= action.clip_to) or last or loop.time() >= deadline:
                return rows, covered
            await asyncio.sleep(self.poll_s)

    async def _covered_until(self, rows: Sequence[Segment]) -> datetime | None:
        for row in reversed(rows):
            if row.status == SEGMENT_COMPLETE:
                return row.end_utc
            end = await asyncio.to_thread(footage_end, self.store, row.key + PARTIAL_SUFFIX, row.start_utc)
            if end is not None:
                return end
        return None

    async def _make(
        self, action: EventEnded, rows: Sequence[Segment], live: Awaitable[ClipInfo | None] | None
    ) -> ClipInfo:
        key = clip_key(action.camera_id, action.event_id, action.start)
        # A partial clip left by a crash would block the key; it never was evidence.
        await asyncio.to_thread(self.store.abort, key)
        sources = [row.key if row.status == SEGMENT_COMPLETE else row.key + PARTIAL_SUFFIX for row in rows]
        clip = await asyncio.to_thread(
            build_clip,
            self.store,
            sources,
            [row.start_utc for row in rows],
            action.clip_from,
            action.clip_to,
            key,
            scratch_dir=self.scratch_dir,
        )
        await self.ledger.append(action.camera_id, "clip", clip.key, clip.sha256, clip.size, clip.first_frame_utc)
        await self.events.clip_ready(action.event_id, clip)
        rendition_key = await self._rendition(action, clip, live) if clip.codec == "hevc" else None
        if clip.codec != "hevc" and live is not None:
            await self.discard_rendition(live)
        self.bus.publish(ClipReady(action.event_id, action.camera_id, clip.key, rendition_key, clip.sha256))
        log.info(
            "clip of event %s ready: %.1f s",
            action.event_id,
            clip.duration_s,
            extra={"camera": action.camera_id, "event_id": action.event_id, "key": clip.key},
        )
        return clip

    async def _rendition(
        self, action: EventEnded, clip: ClipInfo, live: Awaitable[ClipInfo | None] | None
    ) -> str | None:
        """The H.264 rendition's key: the one made live, or else a transcode of the clip; None if
        both failed (alerts then carry the H.265 clip)."""
        where = {"camera": action.camera_id, "event_id": action.event_id}
        if live is not None:
            try:
                made = await live
            except Exception:
                log.exception(
                    "the live rendition of event %s failed; transcoding the clip", action.event_id, extra=where
                )
                made = None
            if made is not None:
                await self.events.rendition_ready(action.event_id, made.key)
                return made.key
        key = clip_key(action.camera_id, action.event_id, action.start, rendition=True)
        try:
            await asyncio.to_thread(self.store.abort, key)
            async with self._transcode:
                await asyncio.to_thread(
                    h264_rendition,
                    self.store,
                    clip.key,
                    key,
                    self.rendition_width,
                    first_frame_utc=clip.first_frame_utc,
                    scratch_dir=self.scratch_dir,
                )
            await self.events.rendition_ready(action.event_id, key)
        except Exception:
            log.exception(
                "no H.264 rendition for event %s: browsers without H.265 cannot play its clip",
                action.event_id,
                extra=where,
            )
            return None
        return key

    async def discard_rendition(self, live: Awaitable[ClipInfo | None]) -> None:
        """A live rendition nobody will record: its file goes."""
        with contextlib.suppress(Exception):
            made = await live
            if made is not None:
                await asyncio.to_thread(self.store.delete, made.key)

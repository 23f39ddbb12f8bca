"""Bringing footage files and the footage index back in line at start, and salvaging partial files.

A kill -9, a power cut or a full disk can leave: a partial file (the segment being written), a
published file whose index row was never completed or never added, or a row whose file was
removed behind the appliance's back. `reconcile` settles each case, before the recorders start:

* a partial file is cut after its last complete fragment and published (a fragmented MP4 holds
  `ftyp`, an empty `moov`, then `moof`+`mdat` pairs; FFmpeg flushes a pair at every fragment, so
  only the fragment being written is lost); one with no complete fragment holds no picture and is
  removed, and so is its row;
* a published file the index does not know is indexed (start from its name, duration from its
  packets). Never deleted: a new or lost database must not wipe the archive;
* a row being recorded is completed from its file, or removed if there is no file at all;
* a complete row whose file is gone becomes "missing", kept for the report (the evidence chain
  flags the gap as tampering unless retention recorded the deletion); if the file comes back with
  the same SHA-256 the row is complete again;
* a complete segment the evidence chain does not hold (a crash, or a failed database write,
  between completing the row and appending to the chain) is appended to it, with the SHA-256 the
  recorder computed while writing, so that `appliance footage verify` checks it: a file changed
  since no longer matches. (Files indexed here from a lost database enter the chain with their
  hash as found: from now on, not from their recording.)

Files that cannot be read as H.264/H.265 MP4 are left where they are and reported.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import BinaryIO, Final

import av
import av.error

from appliance.cameras.demux import open_for_demux
from appliance.storage.footage import FootageStore, key_start
from appliance.storage.models import (
    SEGMENT_CODECS,
    SEGMENT_COMPLETE,
    SEGMENT_MISSING,
    SEGMENT_RECORDING,
    utcnow,
)
from appliance.storage.segments import SegmentHook, SegmentIndex, SegmentInfo

log = logging.getLogger(__name__)

HASH_CHUNK_BYTES: Final = 1024 * 1024
_BOX_HEADER: Final = struct.Struct(">I4s")
_BOX_LARGE_SIZE: Final = struct.Struct(">Q")


class UnplayableFile(Exception):
    """The file is not a fragmented MP4 of H.264/H.265 video that FFmpeg can read."""


@dataclass(frozen=True)
class MediaProbe:
    codec: str
    width: int
    height: int
    duration_s: float
    starts_with_keyframe: bool
    packets: int


def playable_end(f: BinaryIO) -> tuple[int, int]:
    """(bytes up to the end of the last complete fragment or trailing box, complete fragments).

    Walks the top-level MP4 boxes; a box that runs past the end of the file, or a `moof` not
    followed by its whole `mdat`, is where a crash cut the writing short.
    """
    size = f.seek(0, 2)
    pos = good = fragments = 0
    moof_pending = False
    while pos + _BOX_HEADER.size <= size:
        f.seek(pos)
        head = f.read(_BOX_HEADER.size + _BOX_LARGE_SIZE.size)
        box_size, kind = _BOX_HEADER.unpack_from(head)
        header = _BOX_HEADER.size
        if box_size == 1 and len(head) >= header + _BOX_LARGE_SIZE.size:
            (box_size,) = _BOX_LARGE_SIZE.unpack_from(head, header)
            header += _BOX_LARGE_SIZE.size
        if box_size < header or pos + box_size > size:
            break  # size 0 ("to the end of the file") is also only ever an unfinished box
        pos += box_size
        if kind == b"moof":
            moof_pending = True
        elif kind == b"mdat" and moof_pending:
            moof_pending = False
            fragments += 1
            good = pos
        elif not moof_pending:
            good = pos
    return good, fragments


def sha256_of(f: BinaryIO) -> str:
    f.seek(0)
    digest = hashlib.sha256()
    while chunk := f.read(HASH_CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


def probe(f: BinaryIO) -> MediaProbe:
    """Codec, size and duration from the file's packets (demuxed, not decoded: milliseconds)."""
    f.seek(0)
    try:
        with open_for_demux(f) as container:
            if not container.streams.video:
                raise UnplayableFile("no video stream")
            video = container.streams.video[0]
            ctx = video.codec_context
            time_base = video.time_base
            if time_base is None:
                raise UnplayableFile("the video stream has no time base")
            first_pts: int | None = None
            end_pts = 0
            packets = 0
            first_key = False
            for packet in container.demux(video):
                if packet.size == 0 or packet.pts is None:
                    continue
                if first_pts is None:
                    first_pts, first_key = packet.pts, packet.is_keyframe
                first_pts = min(first_pts, packet.pts)
                end_pts = max(end_pts, packet.pts + (packet.duration or 0))
                packets += 1
    except av.error.FFmpegError as exc:
        raise UnplayableFile(f"FFmpeg cannot read it: {exc}") from exc
    if first_pts is None:
        raise UnplayableFile("it holds no video packets")
    if ctx.name not in SEGMENT_CODECS:
        raise UnplayableFile(f"its video is {ctx.name}, not H.264 or H.265")
    return MediaProbe(ctx.name, ctx.width, ctx.height, float((end_pts - first_pts) * time_base), first_key, packets)


@dataclass(frozen=True)
class Salvaged:
    probe: MediaProbe
    size_bytes: int
    sha256: str


def salvage_partial(store: FootageStore, key: str) -> Salvaged | None:
    """Blocking: cut a partial file after its last complete fragment and publish it.

    None if it held no complete fragment (the caller removes it); UnplayableFile if what is left
    still cannot be read (it is then left alone).
    """
    with store.open_partial(key) as f:
        end, fragments = playable_end(f)
        if fragments == 0:
            return None
        f.truncate(end)
        found = probe(f)
        sha = sha256_of(f)
    size = store.finalize(key)
    return Salvaged(found, size, sha)


def examine(store: FootageStore, key: str) -> tuple[MediaProbe, int, str]:
    """Blocking: probe and hash a published file; (probe, size, sha256)."""
    with store.open_read(key) as f:
        found = probe(f)
        sha = sha256_of(f)
    return found, store.size(key), sha


def segment_info(camera_id: str, key: str, start: datetime, found: MediaProbe, size: int, sha: str) -> SegmentInfo:
    return SegmentInfo(
        camera_id=camera_id,
        key=key,
        start_utc=start,
        end_utc=start + timedelta(seconds=found.duration_s),
        duration_s=found.duration_s,
        size_bytes=size,
        sha256=sha,
        codec=found.codec,
        width=found.width,
        height=found.height,
    )


@dataclass
class ReconcileReport:
    repaired: list[str] = field(default_factory=list)
    """Partial files cut after their last complete fragment, published and indexed."""
    discarded: list[str] = field(default_factory=list)
    """Partial files with no complete fragment (no picture), removed with their row."""
    completed: list[str] = field(default_factory=list)
    """Rows being recorded whose file had been published: completed."""
    indexed: list[str] = field(default_factory=list)
    """Published files the index did not know: indexed."""
    dropped_rows: list[str] = field(default_factory=list)
    """Rows being recorded with no file at all (nothing was written): removed."""
    missing: list[str] = field(default_factory=list)
    """Complete rows whose file is gone: now "missing"."""
    restored: list[str] = field(default_factory=list)
    """Missing rows whose file is back with the same SHA-256: complete again."""
    rechained: list[str] = field(default_factory=list)
    """Complete segments missing from the evidence chain: appended to it."""
    problems: list[str] = field(default_factory=list)
    """Files left alone, and why."""

    @property
    def changed(self) -> bool:
        return any(
            (
                self.repaired,
                self.discarded,
                self.completed,
                self.indexed,
                self.dropped_rows,
                self.missing,
                self.restored,
                self.rechained,
            )
        )


class _Camera:
    """Reconciliation of one camera's files and rows."""

    def __init__(
        self,
        camera_id: str,
        store: FootageStore,
        index: SegmentIndex,
        report: ReconcileReport,
        on_segment: SegmentHook | None,
        chained: ChainedKeys | None,
    ) -> None:
        self.camera_id = camera_id
        self.store = store
        self.index = index
        self.report = report
        self.on_segment = on_segment
        self.chained = chained

    async def run(self) -> None:
        statuses = await self.index.statuses(self.camera_id)
        partials = await asyncio.to_thread(lambda: list(self.store.partial_keys(self.camera_id)))
        published = await asyncio.to_thread(lambda: set(self.store.iter_keys(self.camera_id)))
        for key in partials:
            if key in published:
                self.report.problems.append(f"{key}: both a partial and a published file; left for a person to check")
            else:
                await self._partial(key, statuses.get(key))
        handled = set(partials)
        for key in sorted(published - statuses.keys() - handled):
            await self._unknown_file(key)
        gone: list[str] = []
        for key, status in statuses.items():
            if key in handled:
                continue
            if key in published:
                if status == SEGMENT_RECORDING:
                    await self._complete_row(key)
                elif status == SEGMENT_MISSING:
                    await self._returned(key)
            elif status == SEGMENT_RECORDING:
                await self.index.delete(key)
                self.report.dropped_rows.append(key)
            elif status == SEGMENT_COMPLETE:
                gone.append(key)
        if gone:
            await self.index.mark_missing(gone, utcnow())
            self.report.missing.extend(gone)
        await self._rechain()

    async def _rechain(self) -> None:
        """Append the complete segments the evidence chain lacks, oldest first."""
        if self.chained is None or self.on_segment is None:
            return
        chained = await self.chained(self.camera_id)
        statuses = await self.index.statuses(self.camera_id)
        for key in sorted(k for k, status in statuses.items() if status == SEGMENT_COMPLETE and k not in chained):
            row = await self.index.get(key)
            if row is None:
                continue
            if await self._hook(SegmentInfo.of_row(row)):
                self.report.rechained.append(key)

    async def _partial(self, key: str, status: str | None) -> None:
        try:
            salvaged = await asyncio.to_thread(salvage_partial, self.store, key)
        except (UnplayableFile, OSError) as exc:
            self.report.problems.append(f"{key} (partial): {exc}; left in place")
            return
        if salvaged is None:
            await asyncio.to_thread(self.store.abort, key)
            if status == SEGMENT_RECORDING:
                await self.index.delete(key)
            self.report.discarded.append(key)
            return
        existing = await self.index.get(key) if status is not None else None
        start = existing.start_utc if existing is not None else key_start(key)
        info = segment_info(self.camera_id, key, start, salvaged.probe, salvaged.size_bytes, salvaged.sha256)
        if status == SEGMENT_RECORDING:
            await self.index.finalize(info)
        elif status is None:
            await self.index.add_complete(info)
        else:
            self.report.problems.append(f"{key}: repaired, but the index already holds a {status} segment there")
            return
        self.report.repaired.append(key)
        await self._hook(info)

    async def _unknown_file(self, key: str) -> None:
        try:
            found, size, sha = await asyncio.to_thread(examine, self.store, key)
        except (UnplayableFile, OSError) as exc:
            self.report.problems.append(f"{key}: {exc}; not indexed, left in place")
            return
        await self.index.add_complete(segment_info(self.camera_id, key, key_start(key), found, size, sha))
        self.report.indexed.append(key)

    async def _complete_row(self, key: str) -> None:
        row = await self.index.get(key)
        assert row is not None
        try:
            found, size, sha = await asyncio.to_thread(examine, self.store, key)
        except (UnplayableFile, OSError) as exc:
            self.report.problems.append(f"{key}: {exc}; its row stays incomplete")
            return
        info = segment_info(self.camera_id, key, row.start_utc, found, size, sha)
        await self.index.finalize(info)
        self.report.completed.append(key)
        await self._hook(info)

    async def _returned(self, key: str) -> None:
        row = await self.index.get(key)
        assert row is not None
        try:
            _found, _size, sha = await asyncio.to_thread(examine, self.store, key)
        except (UnplayableFile, OSError) as exc:
            self.report.problems.append(f"{key}: a missing segment's file is back but unreadable: {exc}")
            return
        if sha != row.sha256:
            self.report.problems.append(f"{key}: a missing segment's file is back with different content")
            return
        await self.index.restore(key)
        self.report.restored.append(key)

    async def _hook(self, info: SegmentInfo) -> bool:
        if self.on_segment is None:
            return False
        try:
            await self.on_segment(info)
        except Exception:
            log.exception("segment hook failed for a reconciled segment", extra={"key": info.key})
            return False
        return True


ChainedKeys = Callable[[str], Awaitable[set[str]]]
"""A camera's keys that the evidence chain holds (`EvidenceLedger.recorded_keys`)."""


async def reconcile(
    store: FootageStore,
    index: SegmentIndex,
    camera_ids: Iterable[str],
    on_segment: SegmentHook | None = None,
    chained: ChainedKeys | None = None,
) -> ReconcileReport:
    """Settle files and index rows of these cameras (the ones this appliance records; others may
    share a PostgreSQL index). Run it before the recorders start. `on_segment` is called for each
    segment the recorder had been writing and that is now complete, as the recorder would have,
    and, given `chained`, for each complete segment whose key it does not return.
    """
    report = ReconcileReport()
    for camera_id in camera_ids:
        await _Camera(camera_id, store, index, report, on_segment, chained).run()
    if report.changed or report.problems:
        log.warning(
            "footage reconciled",
            extra={
                "repaired": len(report.repaired),
                "discarded": len(report.discarded),
                "completed": len(report.completed),
                "indexed": len(report.indexed),
                "dropped_rows": len(report.dropped_rows),
                "missing": len(report.missing),
                "restored": len(report.restored),
                "rechained": len(report.rechained),
                "problems": report.problems,
            },
        )
    return report

"""The footage index: the `segments` table, one row per footage file (by store key).

A row is added when the recorder opens a segment (status "recording") and completed with its end,
size and SHA-256 when the file is published ("complete"). Reconciliation at start completes rows a
crash left behind and indexes files the table does not know; a complete row whose file vanished
becomes "missing" and stays, so that the gap can be reported (the evidence chain tells a deletion
recorded by retention from tampering). Rows are deleted only by whoever deletes the file.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import ColumnElement, SQLColumnExpression, delete, exists, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.storage.models import (
    SEGMENT_CODECS,
    SEGMENT_COMPLETE,
    SEGMENT_MISSING,
    SEGMENT_RECORDING,
    Segment,
    utcnow,
)
from appliance.storage.models_holds import LegalHold

MAX_SEGMENT_SECONDS: Final = 3600.0
"""No segment is longer (the recorder cuts one that would be, keyframe or not): range queries
use it to bound the index scan to segments starting at most this long before the range."""
SHA256_HEX_LENGTH: Final = 64


class UnknownSegment(LookupError):
    """No index row has this key."""


@dataclass(frozen=True)
class NewSegment:
    """A segment as known when its file is opened. Times are aware (stored as UTC)."""

    camera_id: str
    key: str
    start_utc: datetime
    codec: str
    width: int
    height: int
    stream: str = "main"

    def __post_init__(self) -> None:
        if self.codec not in SEGMENT_CODECS:
            raise ValueError(
                f"codec {self.codec!r} cannot be recorded; set the camera's main stream to "
                f"{' or '.join(c.upper() for c in SEGMENT_CODECS)}"
            )


@dataclass(frozen=True)
class SegmentInfo:
    """A finished segment: its published file and what the index records about it."""

    camera_id: str
    key: str
    start_utc: datetime
    end_utc: datetime
    duration_s: float
    size_bytes: int
    sha256: str
    codec: str
    width: int
    height: int
    stream: str = "main"

    def __post_init__(self) -> None:
        if len(self.sha256) != SHA256_HEX_LENGTH:
            raise ValueError(f"sha256 must be {SHA256_HEX_LENGTH} hex digits, got {self.sha256!r}")
        if self.duration_s < 0 or self.size_bytes < 0:
            raise ValueError(f"negative duration or size: {self.duration_s} s, {self.size_bytes} bytes")

    @property
    def new(self) -> NewSegment:
        return NewSegment(self.camera_id, self.key, self.start_utc, self.codec, self.width, self.height, self.stream)

    @classmethod
    def of_row(cls, row: Segment) -> SegmentInfo:
        """A complete row as the recorder reported it (ValueError for a row that is not complete)."""
        if row.end_utc is None or row.duration_s is None or row.size_bytes is None or row.sha256 is None:
            raise ValueError(f"segment {row.key!r} is {row.status}, not complete: it has no end, size or hash yet")
        return cls(
            row.camera_id,
            row.key,
            row.start_utc,
            row.end_utc,
            row.duration_s,
            row.size_bytes,
            row.sha256,
            row.codec,
            row.width,
            row.height,
            row.stream,
        )


def new_row(new: NewSegment) -> Segment:
    """The index row of a segment whose file is being written (status "recording")."""
    return Segment(
        camera_id=new.camera_id,
        stream=new.stream,
        key=new.key,
        start_utc=new.start_utc,
        codec=new.codec,
        width=new.width,
        height=new.height,
        has_motion=False,
        legal_hold=False,
        status=SEGMENT_RECORDING,
        created_at=utcnow(),
    )


def _complete(row: Segment, info: SegmentInfo) -> None:
    # The start too: the recorder places a segment better once it has seen all of it.
    row.start_utc = info.start_utc
    row.end_utc = info.end_utc
    row.duration_s = info.duration_s
    row.size_bytes = info.size_bytes
    row.sha256 = info.sha256
    row.status = SEGMENT_COMPLETE


def under_active_hold(
    camera_id: SQLColumnExpression[str] | str,
    start: SQLColumnExpression[datetime] | datetime,
    end: SQLColumnExpression[datetime | None] | datetime | None,
) -> ColumnElement[bool]:
    """Whether an active legal hold covers footage of `camera_id` from `start` to `end` (None, or a
    NULL column: still being written). As in retention, a hold's range is closed and a segment's
    half-open: a segment that ends where a hold starts holds none of its footage."""
    if end is None:
        reaches: ColumnElement[bool] = true()
    elif isinstance(end, datetime):
        reaches = LegalHold.start_utc < end
    else:
        reaches = or_(LegalHold.start_utc < end, end.is_(None))
    return exists().where(
        LegalHold.released_at.is_(None),
        or_(LegalHold.camera_id.is_(None), LegalHold.camera_id == camera_id),
        LegalHold.end_utc >= start,
        reaches,
    )


async def _hold_if_covered(session: AsyncSession, row: Segment, start: datetime, end: datetime | None) -> None:
    # Footage indexed after a hold was placed over its time (a segment being written then, or a
    # file reconciliation finds) is held like the footage that was there; never unset here, so a
    # hold placed while the row was loaded is not undone.
    if not row.legal_hold and await session.scalar(select(under_active_hold(row.camera_id, start, end))):
        row.legal_hold = True


SegmentHook = Callable[[SegmentInfo], Awaitable[None]]
"""Called with each segment once it is complete and indexed (the evidence chain appends it)."""


class SegmentIndex:
    """Reads and writes of the footage index through a session factory."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def add(self, new: NewSegment) -> Segment:
        """A row for a segment whose file is being written."""
        row = new_row(new)
        async with self._sessions.begin() as session:
            await _hold_if_covered(session, row, new.start_utc, None)
            session.add(row)
        return row

    async def add_complete(self, info: SegmentInfo) -> Segment:
        """A row for a published file that has none (a crash came first, or the index is new)."""
        row = new_row(info.new)
        _complete(row, info)
        async with self._sessions.begin() as session:
            await _hold_if_covered(session, row, info.start_utc, info.end_utc)
            session.add(row)
        return row

    async def finalize(self, info: SegmentInfo) -> Segment:
        """Complete the row of a segment being written, now that its file is published.

        Only a "recording" row is completed: a complete or missing row with the same key is
        evidence about another file and is never overwritten (UnknownSegment)."""
        async with self._sessions.begin() as session:
            row = await session.scalar(
                select(Segment).where(Segment.key == info.key, Segment.status == SEGMENT_RECORDING)
            )
            if row is None:
                raise UnknownSegment(f"no segment {info.key!r} being recorded in the index")
            await _hold_if_covered(session, row, info.start_utc, info.end_utc)
            _complete(row, info)
        return row

    async def restore(self, key: str) -> None:
        """A "missing" segment whose file is back (the caller checked its hash) is complete again."""
        async with self._sessions.begin() as session:
            changed = await session.scalar(
                update(Segment)
                .where(Segment.key == key, Segment.status == SEGMENT_MISSING)
                .values(status=SEGMENT_COMPLETE, missing_since=None)
                .returning(Segment.id)
            )
        if changed is None:
            raise UnknownSegment(f"no missing segment {key!r} in the index")

    async def get(self, key: str) -> Segment | None:
        async with self._sessions() as session:
            return await session.scalar(select(Segment).where(Segment.key == key))

    async def list_range(
        self, camera_id: str, start: datetime, end: datetime, *, include_missing: bool = False
    ) -> builtins.list[Segment]:
        """Segments of the camera overlapping [start, end), oldest first (one being written too)."""
        statuses = [SEGMENT_RECORDING, SEGMENT_COMPLETE] + ([SEGMENT_MISSING] if include_missing else [])
        query = (
            select(Segment)
            .where(
                Segment.camera_id == camera_id,
                Segment.start_utc < end,
                Segment.start_utc >= start - timedelta(seconds=MAX_SEGMENT_SECONDS),
                or_(Segment.end_utc > start, Segment.end_utc.is_(None)),
                Segment.status.in_(statuses),
            )
            .order_by(Segment.start_utc, Segment.id)
        )
        async with self._sessions() as session:
            return builtins.list(await session.scalars(query))

    async def mark_motion(self, key: str, has_motion: bool, heatmap: bytes | None = None) -> None:
        """Record the analyser's verdict for a segment, with its 16×16 motion summary if any."""
        await self._update(key, has_motion=has_motion, motion_heatmap=heatmap)

    async def set_legal_hold(self, key: str, hold: bool) -> None:
        await self._update(key, legal_hold=hold)

    async def delete(self, key: str) -> bool:
        """Remove a row (its file was deleted on purpose); False if there was none."""
        async with self._sessions.begin() as session:
            gone = await session.scalar(delete(Segment).where(Segment.key == key).returning(Segment.id))
        return gone is not None

    async def known_keys(self, camera_id: str | None = None) -> set[str]:
        query = select(Segment.key)
        if camera_id is not None:
            query = query.where(Segment.camera_id == camera_id)
        async with self._sessions() as session:
            return set(await session.scalars(query))

    async def statuses(self, camera_id: str) -> dict[str, str]:
        """Every key of the camera with its status (reconciliation compares them with the files)."""
        async with self._sessions() as session:
            rows = await session.execute(select(Segment.key, Segment.status).where(Segment.camera_id == camera_id))
            return {key: status for key, status in rows}

    async def newest(self, camera_id: str) -> Segment | None:
        query = (
            select(Segment)
            .where(Segment.camera_id == camera_id)
            .order_by(Segment.start_utc.desc(), Segment.id.desc())
            .limit(1)
        )
        async with self._sessions() as session:
            return await session.scalar(query)

    async def with_status(self, status: str, camera_id: str | None = None) -> builtins.list[Segment]:
        query = select(Segment).where(Segment.status == status).order_by(Segment.start_utc)
        if camera_id is not None:
            query = query.where(Segment.camera_id == camera_id)
        async with self._sessions() as session:
            return builtins.list(await session.scalars(query))

    async def mark_missing(self, keys: Iterable[str], at: datetime) -> int:
        """Complete rows whose files are gone become "missing" (kept for the report); how many."""
        keys = builtins.list(keys)
        if not keys:
            return 0
        async with self._sessions.begin() as session:
            changed = await session.scalars(
                update(Segment)
                .where(Segment.key.in_(keys), Segment.status == SEGMENT_COMPLETE)
                .values(status=SEGMENT_MISSING, missing_since=at)
                .returning(Segment.id)
            )
            return len(changed.all())

    async def _update(self, key: str, **values: object) -> None:
        async with self._sessions.begin() as session:
            changed = await session.scalar(
                update(Segment).where(Segment.key == key).values(**values).returning(Segment.id)
            )
        if changed is None:
            raise UnknownSegment(f"no segment {key!r} in the index")

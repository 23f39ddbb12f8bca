"""Legal holds: footage of one camera (or of every camera) over a time range that retention must
not delete while an investigation needs it.

Retention reads only the `legal_hold` flag of each segment (appliance/cameras/retention.py), and
an event clip is kept while a segment it was cut from is flagged. This module keeps the flags in
step with the `legal_holds` table: placing a hold flags the segments it covers in the same
transaction, releasing one clears the flags that no other active hold still covers, and the
footage index flags a segment indexed later inside an active hold (segments.under_active_hold).

A flag set by code without a hold (SegmentIndex.set_legal_hold) is cleared by the release of a
hold covering it, like any flag no active hold covers.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.storage.models import SEGMENT_MISSING, Segment, utcnow
from appliance.storage.models_holds import LegalHold
from appliance.storage.segments import MAX_SEGMENT_SECONDS, under_active_hold


class HoldError(Exception):
    """A hold that cannot be placed or released as asked; the message says what to do instead."""


class UnknownHold(HoldError):
    pass


class HoldReleased(HoldError):
    """The hold was released already, at `released_at` by `released_by`."""

    def __init__(self, hold_id: int, released_at: datetime, released_by: str) -> None:
        super().__init__(
            f"legal hold {hold_id} was already released at {released_at.isoformat()} by {released_by}; "
            "place a new hold if the footage must be kept again"
        )
        # Values, not the row: the session's rollback expires the row before anyone reads it.
        self.hold_id, self.released_at, self.released_by = hold_id, released_at, released_by


@dataclass(frozen=True)
class Placed:
    """A hold just placed: its id and the footage it covers now (segments whose file is gone not counted)."""

    hold: LegalHold
    segments: int
    bytes: int


@dataclass(frozen=True)
class Released:
    """A hold just released: segments retention may delete again, and those other holds still keep."""

    hold: LegalHold
    freed_segments: int
    freed_bytes: int
    still_held: int


def _covered_segments(camera_id: str | None, start: datetime, end: datetime) -> list[ColumnElement[bool]]:
    """Segments overlapping [start, end] (the same overlap as segments.under_active_hold)."""
    where = [
        Segment.start_utc <= end,
        # Bounds the index scan as SegmentIndex.list_range does: no segment is longer.
        Segment.start_utc >= start - timedelta(seconds=MAX_SEGMENT_SECONDS),
        or_(Segment.end_utc > start, Segment.end_utc.is_(None)),
    ]
    if camera_id is not None:
        where.append(Segment.camera_id == camera_id)
    return where


def _present(rows: Iterable[tuple[int | None, str]]) -> tuple[int, int]:
    """How many of (size, status) rows have their file, and their bytes (0 while being written)."""
    present = [size or 0 for size, status in rows if status != SEGMENT_MISSING]
    return len(present), sum(present)


class HoldStore:
    """Places, releases and lists legal holds through a session factory."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def place(self, camera_id: str | None, start: datetime, end: datetime, reason: str, by: str) -> Placed:
        """Hold the footage of `camera_id` (None: every camera) from `start` to `end`, both aware."""
        reason = reason.strip()
        if not reason:
            raise HoldError("a legal hold needs a reason (a case or request number, who asked for it)")
        if end <= start:
            raise HoldError(
                f"a legal hold must end after it starts (from {start.isoformat()} to {end.isoformat()}); "
                "give a later end"
            )
        hold = LegalHold(
            camera_id=camera_id,
            start_utc=start,
            end_utc=end,
            reason=reason,
            created_by=by,
            created_at=utcnow(),
        )
        async with self._sessions.begin() as session:
            session.add(hold)
            rows = await session.execute(
                update(Segment)
                .where(*_covered_segments(camera_id, start, end))
                .values(legal_hold=True)
                .returning(Segment.size_bytes, Segment.status)
            )
            segments, size = _present(rows)
        return Placed(hold, segments, size)

    async def release(self, hold_id: int, by: str) -> Released:
        """Release an active hold; its footage is left held where another active hold covers it."""
        async with self._sessions.begin() as session:
            hold = await session.scalar(
                update(LegalHold)
                .where(LegalHold.id == hold_id, LegalHold.released_at.is_(None))
                .values(released_at=utcnow(), released_by=by)
                .returning(LegalHold)
            )
            if hold is None:
                await self._refuse_release(session, hold_id)
            covered = _covered_segments(hold.camera_id, hold.start_utc, hold.end_utc)
            rows = await session.execute(
                update(Segment)
                .where(
                    *covered,
                    Segment.legal_hold.is_(True),
                    ~under_active_hold(Segment.camera_id, Segment.start_utc, Segment.end_utc),
                )
                .values(legal_hold=False)
                .returning(Segment.size_bytes, Segment.status)
            )
            freed, size = _present(rows)
            still_held = await session.scalar(
                select(func.count())
                .select_from(Segment)
                .where(*covered, Segment.legal_hold.is_(True), Segment.status != SEGMENT_MISSING)
            )
        return Released(hold, freed, size, still_held or 0)

    @staticmethod
    async def _refuse_release(session: AsyncSession, hold_id: int) -> NoReturn:
        hold = await session.get(LegalHold, hold_id)
        if hold is None:
            raise UnknownHold(f"there is no legal hold {hold_id}; `appliance footage holds` lists them")
        assert hold.released_at is not None and hold.released_by is not None  # the update found it released
        raise HoldReleased(hold.id, hold.released_at, hold.released_by)

    async def list(self, active_only: bool = False) -> builtins.list[LegalHold]:
        """Holds, oldest first."""
        query = select(LegalHold).order_by(LegalHold.id)
        if active_only:
            query = query.where(LegalHold.released_at.is_(None))
        async with self._sessions() as session:
            return builtins.list(await session.scalars(query))

"""The events table: one row per motion or camera-health event, written as the event unfolds.

The camera pipeline calls `started` (row with its first snapshot, so the alert can cite a stored
event), `peak` whenever a better frame comes, `ended` with the tracker's final numbers, and the
clip builder `clip_ready` once the clip is published. `ended` alone also makes a complete row, in
case the database was unreachable when the event started. Rows left open by a crash are found
with `open_events` and closed by `close_open` at the next start.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import defer

from appliance.cameras.events import EventEnded, EventStarted, PeakChanged
from appliance.storage.models import EVENT_KINDS, Event, utcnow

if TYPE_CHECKING:
    from appliance.cameras.clips import ClipInfo


class UnknownEvent(LookupError):
    """No row has this event id."""


class DuplicateEvent(ValueError):
    """A row with this event id exists already (the same camera started two events in the same
    millisecond, which happens only when its clock was set back)."""


def boxes_json(boxes: Iterable[Sequence[float]]) -> str:
    return json.dumps([list(box) for box in boxes])


def boxes_from_json(text: str | None) -> list[list[float]]:
    return [] if text is None else [list(box) for box in json.loads(text)]


def _check_kind(kind: str) -> None:
    if kind not in EVENT_KINDS:
        raise ValueError(f"event kind {kind!r} is not one of {', '.join(EVENT_KINDS)}")


class EventStore:
    """Reads and writes of the events table through a session factory."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def started(
        self,
        action: EventStarted,
        kind: str = "motion",
        snapshot: bytes | None = None,
        thumbnail: bytes | None = None,
    ) -> Event:
        _check_kind(kind)
        row = Event(
            id=action.event_id,
            camera_id=action.camera_id,
            kind=kind,
            start_utc=action.start,
            clip_from=action.clip_from,
            armed=action.armed,
            snapshot_jpeg=snapshot,
            thumbnail_jpeg=thumbnail,
            created_at=utcnow(),
        )
        try:
            async with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError as exc:
            raise DuplicateEvent(f"event {action.event_id!r} is stored already") from exc
        return row

    async def peak(self, action: PeakChanged, snapshot: bytes | None, thumbnail: bytes | None) -> None:
        """The event's best frame so far; the JPEGs are replaced only when given."""
        values: dict[str, object] = {
            "peak_at": action.t,
            "peak_score": action.score,
            "peak_boxes": boxes_json(action.boxes),
        }
        if snapshot is not None:
            values["snapshot_jpeg"] = snapshot
        if thumbnail is not None:
            values["thumbnail_jpeg"] = thumbnail
        await self._update(action.event_id, **values)

    async def ended(self, action: EventEnded, kind: str = "motion") -> Event:
        """Close the event with the tracker's final numbers; creates the row if `started` never
        made it to the database (the action carries everything but the JPEGs)."""
        _check_kind(kind)
        async with self._sessions.begin() as session:
            row = await session.get(Event, action.event_id)
            if row is None:
                row = Event(
                    id=action.event_id,
                    camera_id=action.camera_id,
                    kind=kind,
                    start_utc=action.start,
                    clip_from=action.clip_from,
                    armed=action.armed,
                    created_at=utcnow(),
                )
                session.add(row)
            row.end_utc = action.end
            row.clip_to = action.clip_to
            row.end_reason = str(action.reason)
            row.peak_at = action.peak_t
            row.peak_score = action.peak_score
            row.peak_boxes = boxes_json(action.peak_boxes)
        return row

    async def close(self, event_id: str, end: datetime, reason: str) -> None:
        """End an open event that has no tracker behind it (offline, tamper): at `end`, or at its
        start if that is later. UnknownEvent if no open event has this id."""
        async with self._sessions.begin() as session:
            row = await session.scalar(select(Event).where(Event.id == event_id, Event.end_utc.is_(None)))
            if row is None:
                raise UnknownEvent(f"no open event {event_id!r} in the events table")
            row.end_utc = max(end, row.start_utc)
            row.end_reason = reason

    async def clip_ready(self, event_id: str, clip: ClipInfo) -> None:
        await self._update(
            event_id,
            clip_key=clip.key,
            clip_sha256=clip.sha256,
            clip_size=clip.size,
            clip_duration_s=clip.duration_s,
        )

    async def rendition_ready(self, event_id: str, key: str) -> None:
        await self._update(event_id, rendition_key=key)

    async def oldest_clip_end(self, camera_id: str) -> datetime | None:
        """When the oldest event of the camera that still has a clip ended; None when none has."""
        async with self._sessions() as session:
            found = await session.scalar(
                select(func.min(Event.end_utc)).where(Event.camera_id == camera_id, Event.clip_key.is_not(None))
            )
        return found

    async def oldest_clip_from(self, camera_id: str) -> datetime | None:
        """Where the oldest clip of the camera begins (its event's clip_from); None when it has none."""
        async with self._sessions() as session:
            found = await session.scalar(
                select(func.min(Event.clip_from)).where(Event.camera_id == camera_id, Event.clip_key.is_not(None))
            )
        return found

    async def clip_removed(self, event_id: str) -> None:
        """Forget the clip and its rendition once retention deleted their files; the event stays.
        One UPDATE, so the clip fields are never half cleared (the clip_is_complete constraint)."""
        await self._update(
            event_id, clip_key=None, clip_sha256=None, clip_size=None, clip_duration_s=None, rendition_key=None
        )

    async def get(self, event_id: str) -> Event | None:
        async with self._sessions() as session:
            return await session.get(Event, event_id)

    async def list_range(
        self, camera_id: str | None, start: datetime, end: datetime, kinds: Iterable[str] | None = None
    ) -> builtins.list[Event]:
        """Events overlapping [start, end) (open ones too), oldest first. Without the snapshot
        (reading `snapshot_jpeg` raises): a day's list would otherwise load MBs; `get` has it."""
        query = select(Event).where(Event.start_utc < end, or_(Event.end_utc >= start, Event.end_utc.is_(None)))
        if kinds is not None:
            kinds = builtins.list(kinds)
            for kind in kinds:
                _check_kind(kind)
            query = query.where(Event.kind.in_(kinds))
        return await self._list(query, camera_id)

    async def open_events(self, camera_id: str | None = None) -> builtins.list[Event]:
        """Events with no end: after a crash, those the pipeline was tracking when it stopped."""
        return await self._list(select(Event).where(Event.end_utc.is_(None)), camera_id)

    async def without_clip(self, camera_id: str, ended_from: datetime, ended_to: datetime) -> builtins.list[Event]:
        """The camera's motion events that ended in [ended_from, ended_to) and have no clip: it was
        never made (the appliance stopped first, or making it failed), or retention deleted it."""
        query = select(Event).where(
            Event.kind == "motion", Event.clip_key.is_(None), Event.end_utc >= ended_from, Event.end_utc < ended_to
        )
        return await self._list(query, camera_id)

    async def close_open(self, camera_id: str, end: datetime, reason: str) -> builtins.list[str]:
        """End the camera's open events at `end` (or at their start, if later); their clip then
        runs to `end` too. Returns the ids closed, oldest first, e.g. to build their clips."""
        async with self._sessions.begin() as session:
            rows = await session.scalars(
                select(Event).where(Event.camera_id == camera_id, Event.end_utc.is_(None)).order_by(Event.start_utc)
            )
            closed = []
            for row in rows:
                row.end_utc = max(end, row.start_utc)
                row.clip_to = row.clip_to or row.end_utc
                row.end_reason = reason
                closed.append(row.id)
        return closed

    async def _list(self, query: Select[Event], camera_id: str | None) -> builtins.list[Event]:
        if camera_id is not None:
            query = query.where(Event.camera_id == camera_id)
        query = query.options(defer(Event.snapshot_jpeg, raiseload=True)).order_by(Event.start_utc, Event.id)
        async with self._sessions() as session:
            return builtins.list(await session.scalars(query))

    async def _update(self, event_id: str, **values: object) -> None:
        async with self._sessions.begin() as session:
            changed = await session.scalar(
                update(Event).where(Event.id == event_id).values(**values).returning(Event.id)
            )
        if changed is None:
            raise UnknownEvent(f"no event {event_id!r} in the events table")

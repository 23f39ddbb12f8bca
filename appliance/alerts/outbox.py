"""The alert outbox: every alert is a row before it is sent, and its state says how far it got.

One row per alert × channel × part (snapshot, clip, notice), unique on (channel, source, part): an
alert produced twice is stored once, so it can be delivered at most once after a success. The
dispatcher claims a row with one UPDATE ... WHERE state = 'pending' RETURNING (only one claimer
wins), sends it, then records the outcome with an UPDATE conditioned on 'sending'. A crash between
claim and outcome leaves the row 'sending'; `release` makes it pending again at the next start,
so delivery is at least once.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.alerts.channel import AlertPart
from appliance.storage.models import utcnow
from appliance.storage.models_alerts import (
    ALERT_DELIVERED,
    ALERT_FAILED,
    ALERT_PENDING,
    ALERT_SENDING,
    ALERT_STATES,
    ALERT_SUPPRESSED,
    AlertRow,
)

ERROR_MAX_CHARS = 2000
"""A provider's error text is kept up to this length (some answer with a whole HTML page)."""


@dataclass(frozen=True)
class NewAlert:
    channel_id: str
    source: str
    """The event id, or a key of its own for alerts without one ('disk_nearly_full:<time>')."""
    part: AlertPart
    kind: str
    occurred_utc: datetime
    camera_id: str | None = None
    event_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    suppressed: str | None = None
    """Why a rule kept it back (cooldown, paused, ...): stored as suppressed, never sent."""
    not_before: datetime | None = None
    """Held until then (quiet hours); default: due at once."""


@dataclass(frozen=True)
class ChannelCounts:
    channel_id: str
    by_state: dict[str, int]
    last_delivered: datetime | None
    oldest_pending: datetime | None
    """When the oldest alert still waiting happened."""


def payload_of(row: AlertRow) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(row.payload)
    return loaded


class Outbox:
    """Reads and writes of the alert_outbox table."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def add(self, alerts: Sequence[NewAlert], now: datetime | None = None) -> int:
        """Store alerts in one transaction; ones already stored (same channel, source and part) are
        left as they are. Returns how many were new."""
        if not alerts:
            return 0
        now = now or utcnow()
        values = [
            {
                "channel_id": a.channel_id,
                "source": a.source,
                "part": a.part,
                "kind": a.kind,
                "camera_id": a.camera_id,
                "event_id": a.event_id,
                "occurred_utc": a.occurred_utc,
                "created_at": now,
                "state": ALERT_SUPPRESSED if a.suppressed else ALERT_PENDING,
                "attempts": 0,
                "next_attempt_utc": a.not_before or now,
                "last_error": a.suppressed,
                "payload": json.dumps(a.payload, ensure_ascii=False, sort_keys=True),
            }
            for a in alerts
        ]
        async with self._sessions.begin() as session:
            dialect = session.get_bind().dialect.name
            if dialect == "postgresql":
                stmt = pg_insert(AlertRow).values(values).on_conflict_do_nothing()
            elif dialect == "sqlite":
                stmt = sqlite_insert(AlertRow).values(values).on_conflict_do_nothing()  # type: ignore[assignment]
            else:  # pragma: no cover - db.py allows only the two
                raise RuntimeError(f"unsupported database {dialect}")
            result = await session.execute(stmt)
        return max(0, int(getattr(result, "rowcount", 0)))

    # ------------------------------------------------------------------ delivery ---

    async def claim_next(self, channel_id: str, now: datetime) -> AlertRow | None:
        """Claim the channel's newest due alert (after an outage the newest goes first; of one event
        the snapshot before the clip); None when nothing is due."""
        newest = (
            select(AlertRow.id)
            .where(
                AlertRow.channel_id == channel_id,
                AlertRow.state == ALERT_PENDING,
                AlertRow.next_attempt_utc <= now,
            )
            .order_by(AlertRow.occurred_utc.desc(), AlertRow.id)
            .limit(1)
            # PostgreSQL: a row another claimer holds is skipped, not waited for (SQLite has one writer).
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        return await self._claim(AlertRow.id == newest)

    async def claim(self, alert_id: int) -> AlertRow | None:
        """Claim one alert whether due or not (a test alert sent from the command line)."""
        return await self._claim(AlertRow.id == alert_id)

    async def _claim(self, which: Any) -> AlertRow | None:
        stmt = (
            update(AlertRow)
            .where(which, AlertRow.state == ALERT_PENDING)
            .values(state=ALERT_SENDING, attempts=AlertRow.attempts + 1)
            .returning(AlertRow)
            .execution_options(synchronize_session=False)
        )
        async with self._sessions.begin() as session:
            return await session.scalar(stmt)

    async def next_due(self, channel_id: str) -> datetime | None:
        """When the channel's next pending alert is due (None: nothing pending)."""
        async with self._sessions() as session:
            found = await session.scalar(
                select(func.min(AlertRow.next_attempt_utc)).where(
                    AlertRow.channel_id == channel_id, AlertRow.state == ALERT_PENDING
                )
            )
        return found

    async def delivered(self, alert_id: int, now: datetime | None = None) -> bool:
        return await self._finish(alert_id, state=ALERT_DELIVERED, delivered_at=now or utcnow(), last_error=None)

    async def retry_at(self, alert_id: int, when: datetime, error: str) -> bool:
        return await self._finish(alert_id, state=ALERT_PENDING, next_attempt_utc=when, last_error=_cut(error))

    async def failed(self, alert_id: int, error: str) -> bool:
        return await self._finish(alert_id, state=ALERT_FAILED, last_error=_cut(error))

    async def _finish(self, alert_id: int, **values: object) -> bool:
        async with self._sessions.begin() as session:
            changed = await session.scalar(
                update(AlertRow)
                .where(AlertRow.id == alert_id, AlertRow.state == ALERT_SENDING)
                .values(**values)
                .returning(AlertRow.id)
            )
        return changed is not None

    async def release(self, channel_ids: Iterable[str]) -> int:
        """Alerts of these channels claimed by a dispatcher that is gone (the process was killed
        while sending) are pending again: delivered at least once, perhaps twice."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(AlertRow)
                .where(AlertRow.channel_id.in_(list(channel_ids)), AlertRow.state == ALERT_SENDING)
                .values(state=ALERT_PENDING)
            )
        return max(0, int(getattr(result, "rowcount", 0)))

    async def retry_failed(self, alert_id: int | None = None, channel_id: str | None = None) -> list[str]:
        """Failed alerts (one, or all of a channel, or all) pending again, due now; returns the
        channels to wake."""
        query = update(AlertRow).where(AlertRow.state == ALERT_FAILED)
        if alert_id is not None:
            query = query.where(AlertRow.id == alert_id)
        if channel_id is not None:
            query = query.where(AlertRow.channel_id == channel_id)
        async with self._sessions.begin() as session:
            channels = await session.scalars(
                query.values(state=ALERT_PENDING, next_attempt_utc=utcnow(), attempts=0).returning(AlertRow.channel_id)
            )
            return sorted(set(channels))

    # ------------------------------------------------------------------- reading ---

    async def get(self, alert_id: int) -> AlertRow | None:
        async with self._sessions() as session:
            return await session.get(AlertRow, alert_id)

    async def alerted(self, source: str) -> builtins.list[AlertRow]:
        """The snapshot alerts of `source` that were not held back by a rule (any state but
        suppressed): the channels its clip follows to."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(AlertRow).where(
                    AlertRow.source == source, AlertRow.part == "snapshot", AlertRow.state != ALERT_SUPPRESSED
                )
            )
            return builtins.list(rows)

    async def latest(self, part: str, since: datetime, suppressed: bool = False) -> builtins.list[AlertRow]:
        """Alerts of `part` that happened since `since`, oldest first: sent ones (or only the
        suppressed ones); what rules need to remember across a restart."""
        state = AlertRow.state == ALERT_SUPPRESSED if suppressed else AlertRow.state != ALERT_SUPPRESSED
        async with self._sessions() as session:
            rows = await session.scalars(
                select(AlertRow)
                .where(AlertRow.part == part, AlertRow.occurred_utc >= since, state)
                .order_by(AlertRow.occurred_utc, AlertRow.id)
            )
            return builtins.list(rows)

    async def count_suppressed(self, channel_id: str, camera_id: str, after: datetime, reason: str) -> int:
        """Events of the camera after `after` that `reason` kept from the channel."""
        async with self._sessions() as session:
            found = await session.scalar(
                select(func.count()).where(
                    AlertRow.channel_id == channel_id,
                    AlertRow.camera_id == camera_id,
                    AlertRow.state == ALERT_SUPPRESSED,
                    AlertRow.last_error == reason,
                    AlertRow.occurred_utc > after,
                )
            )
        return int(found or 0)

    async def counts(self) -> builtins.list[ChannelCounts]:
        """Per channel: alerts by state, the last delivery, the oldest alert still waiting."""
        async with self._sessions() as session:
            by_state = await session.execute(
                select(AlertRow.channel_id, AlertRow.state, func.count()).group_by(AlertRow.channel_id, AlertRow.state)
            )
            delivered = await session.execute(
                select(AlertRow.channel_id, func.max(AlertRow.delivered_at)).group_by(AlertRow.channel_id)
            )
            waiting = await session.execute(
                select(AlertRow.channel_id, func.min(AlertRow.occurred_utc))
                .where(AlertRow.state.in_((ALERT_PENDING, ALERT_SENDING)))
                .group_by(AlertRow.channel_id)
            )
            counts: dict[str, dict[str, int]] = {}
            for channel, state, n in by_state:
                counts.setdefault(channel, dict.fromkeys(ALERT_STATES, 0))[state] = n
            last: dict[str, datetime | None] = {channel: at for channel, at in delivered}
            oldest: dict[str, datetime | None] = {channel: at for channel, at in waiting}
        return [ChannelCounts(c, counts[c], last.get(c), oldest.get(c)) for c in sorted(counts)]

    async def recent(
        self, *, states: Iterable[str] | None = None, channel_id: str | None = None, limit: int = 50
    ) -> builtins.list[AlertRow]:
        """Newest first (by when they were stored)."""
        query = select(AlertRow).order_by(AlertRow.created_at.desc(), AlertRow.id.desc()).limit(limit)
        if states is not None:
            query = query.where(AlertRow.state.in_(builtins.list(states)))
        if channel_id is not None:
            query = query.where(AlertRow.channel_id == channel_id)
        async with self._sessions() as session:
            return builtins.list(await session.scalars(query))

    async def prune(self, before: datetime) -> int:
        """Forget finished alerts stored before `before` (pending ones are kept whatever their age)."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(AlertRow).where(
                    AlertRow.created_at < before,
                    AlertRow.state.in_((ALERT_DELIVERED, ALERT_FAILED, ALERT_SUPPRESSED)),
                )
            )
        return max(0, int(getattr(result, "rowcount", 0)))


def _cut(text: str) -> str:
    return text if len(text) <= ERROR_MAX_CHARS else text[: ERROR_MAX_CHARS - 1] + "…"

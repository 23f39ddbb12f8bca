"""From bus messages to outbox rows: what happened, for which channel, and whether rules hold it back.

The producer is the only subscriber of the bus on the alert side. For each message it asks every
channel's rules, stores the resulting rows in one transaction and wakes the channels that got a
row to send: the snapshot alert of an event is in the database and on its way within
milliseconds of `EventOpened`. The bus is not durable; the outbox is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from appliance.alerts.channel import AlertPart
from appliance.alerts.composer import SnapshotCache
from appliance.alerts.outbox import NewAlert, Outbox
from appliance.alerts.pauses import Pauses
from appliance.alerts.rules import COOLDOWN, ChannelRules, Debounce, Send
from appliance.alerts.settings import AlertsSection
from appliance.bus import EventBus, Subscription
from appliance.cameras.messages import (
    CameraOffline,
    CameraOnline,
    ClipReady,
    DiskNearlyFull,
    EventOpened,
    RetentionShortened,
    TamperDetected,
)
from appliance.portal.notices import SmsBudgetReached
from appliance.storage.models import utcnow

log = logging.getLogger(__name__)

MESSAGES: Final = (
    EventOpened,
    ClipReady,
    CameraOffline,
    CameraOnline,
    TamperDetected,
    RetentionShortened,
    DiskNearlyFull,
    SmsBudgetReached,
)
DEBOUNCED: Final = ("retention_shortened", "disk_nearly_full")


class Producer:
    def __init__(
        self,
        section: AlertsSection,
        outbox: Outbox,
        pauses: Pauses,
        snapshots: SnapshotCache,
        wake: Callable[[str], None],
        tz: ZoneInfo,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.outbox = outbox
        self.pauses = pauses
        self.snapshots = snapshots
        self.wake = wake
        self.clock = clock
        self.rules = {c.id: ChannelRules(c, tz) for c in section.channels if c.enabled}
        self.debounce = Debounce(timedelta(hours=section.notice_interval_h))

    async def restore(self) -> None:
        """What the rules remember from before a restart: recent motion alerts per channel and
        camera (cooldown, with the events kept back since), recent debounced notices."""
        now = self.clock()
        longest = max((r.settings.cooldown_s for r in self.rules.values()), default=0.0)
        since = now - timedelta(seconds=longest)
        last: dict[tuple[str, str], datetime] = {}
        for row in await self.outbox.latest("snapshot", since):
            if row.camera_id is not None:
                last[(row.channel_id, row.camera_id)] = row.occurred_utc
        held: dict[tuple[str, str], int] = {}
        for row in await self.outbox.latest("snapshot", since, suppressed=True):
            key = (row.channel_id, row.camera_id or "")
            if row.last_error == COOLDOWN and key in last and row.occurred_utc > last[key]:
                held[key] = held.get(key, 0) + 1
        for (channel_id, camera_id), at in last.items():
            if channel_id in self.rules:
                self.rules[channel_id].remember(camera_id, at, held.get((channel_id, camera_id), 0))
        for row in await self.outbox.latest("notice", now - self.debounce.interval):
            if row.kind in DEBOUNCED:
                self.debounce.remember(_debounce_key(row.kind, row.camera_id), row.occurred_utc)
        await self.pauses.load()

    async def run(self, bus: EventBus) -> None:
        messages: Subscription[object] = bus.subscribe(*MESSAGES)
        await self.restore()
        async for message in messages:
            try:
                await self.handle(message)
            except Exception:
                # One bad message (or a moment without the database) must not stop the alerts after it.
                log.exception("could not store the alerts of %r", message)

    async def handle(self, message: object) -> int:
        """Store the alerts `message` makes; returns how many rows were new."""
        match message:
            case EventOpened(armed=True, camera_id=cid, event_id=eid, start_utc=t, snapshot_jpeg=jpeg, boxes=boxes):
                self.snapshots.put(eid, jpeg)
                boxes_hit: dict[str, Any] | None = {"boxes": [list(b) for b in boxes]} if boxes else None
                return await self._store("motion", "snapshot", eid, t, cid, eid, boxes_hit)
            case ClipReady(event_id=eid, camera_id=cid, clip_key=key, rendition_key=rendition):
                return await self._clip(eid, cid, {"clip_key": key, "rendition_key": rendition})
            case CameraOffline(camera_id=cid, event_id=eid, since_utc=t):
                return await self._store("camera_offline", "notice", eid, t, cid, eid)
            case CameraOnline(camera_id=cid, event_id=eid, at_utc=t):
                return await self._store("camera_online", "notice", f"{eid}:online", t, cid, eid)
            case TamperDetected(camera_id=cid, event_id=eid, kind=kind, at_utc=t, snapshot_jpeg=jpeg):
                self.snapshots.put(eid, jpeg)
                return await self._store(kind, "notice", eid, t, cid, eid)
            case RetentionShortened(camera_id=cid, oldest_kept_utc=kept, freed_bytes=freed, reason=reason):
                payload = {"oldest_kept_utc": kept.isoformat(), "freed_bytes": freed, "reason": reason}
                return await self._notice("retention_shortened", cid, payload)
            case DiskNearlyFull(free_bytes=free, missing_bytes=missing):
                return await self._notice("disk_nearly_full", None, {"free_bytes": free, "missing_bytes": missing})
            case SmsBudgetReached(day=day, sent=sent, budget=budget, at_utc=t):
                payload = {"day": day.isoformat(), "sent": sent, "budget": budget}
                return await self._store(
                    "sms_budget_reached", "notice", f"sms_budget_reached:{day}", t, None, None, payload
                )
        return 0

    async def _notice(self, kind: str, camera_id: str | None, payload: dict[str, Any]) -> int:
        now = self.clock()
        if not self.debounce.allow(_debounce_key(kind, camera_id), now):
            return 0
        source = f"{kind}:{camera_id or ''}:{now.isoformat()}"
        return await self._store(kind, "notice", source, now, camera_id, None, payload)

    async def _store(
        self,
        kind: str,
        part: AlertPart,
        source: str,
        at: datetime,
        camera_id: str | None,
        event_id: str | None,
        payload: dict[str, Any] | None = None,
    ) -> int:
        muted = self.pauses.muted(camera_id, at) if camera_id is not None else None
        rows = []
        for channel_id, rules in self.rules.items():
            decision = rules.decide(kind, camera_id, at, muted)
            if decision is None:
                continue
            data = dict(payload or {})
            if isinstance(decision, Send) and decision.more_events:
                data["more_events"] = decision.more_events
            rows.append(
                NewAlert(
                    channel_id,
                    source,
                    part,
                    kind,
                    at,
                    camera_id,
                    event_id,
                    data,
                    suppressed=None if isinstance(decision, Send) else decision.reason,
                    not_before=decision.not_before if isinstance(decision, Send) else None,
                )
            )
        return await self._add(rows)

    async def _clip(self, event_id: str, camera_id: str, payload: dict[str, Any]) -> int:
        """The clip follows the snapshot alert to every channel that got (or is getting) it."""
        alerted = await self.outbox.alerted(event_id)
        rows = [
            NewAlert(row.channel_id, event_id, "clip", "motion", row.occurred_utc, camera_id, event_id, payload)
            for row in alerted
            if row.channel_id in self.rules
        ]
        return await self._add(rows)

    async def _add(self, rows: Sequence[NewAlert]) -> int:
        added = await self.outbox.add(rows, self.clock())
        for channel_id in sorted({r.channel_id for r in rows if r.suppressed is None}):
            self.wake(channel_id)
        return added


def _debounce_key(kind: str, camera_id: str | None) -> str:
    return f"{kind}:{camera_id or ''}"

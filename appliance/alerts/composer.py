"""From an outbox row to the `Alert` a channel sends: texts, snapshot, clip, machine payload.

The snapshot alert of a motion event takes its JPEG from `SnapshotCache`, filled by the producer
from the `EventOpened` message, so the first alert needs no file and no query; after a restart
(or for an event the cache forgot) it comes from the events row. The clip alert reads the events
row anyway (the clip and the peak snapshot are there).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from appliance.alerts.channel import Alert, AlertPart, Channel
from appliance.alerts.clipcut import ClipCutter
from appliance.alerts.content import Facts, render, zones_hit
from appliance.alerts.outbox import payload_of
from appliance.alerts.settings import ChannelSettings
from appliance.config import Config
from appliance.storage.events import EventStore, boxes_from_json
from appliance.storage.models import Event, utcnow
from appliance.storage.models_alerts import AlertRow

log = logging.getLogger(__name__)

SNAPSHOT_CACHE_ITEMS: Final = 64
"""Snapshots kept in memory (tens of KB each): far more events than arrive while one is sent."""


class SnapshotCache:
    """The newest snapshots by event id, as the camera pipeline published them."""

    def __init__(self, max_items: int = SNAPSHOT_CACHE_ITEMS) -> None:
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._max = max_items

    def put(self, event_id: str, jpeg: bytes | None) -> None:
        if jpeg is None:
            return
        self._items[event_id] = jpeg
        self._items.move_to_end(event_id)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def get(self, event_id: str) -> bytes | None:
        return self._items.get(event_id)


class Composer:
    def __init__(
        self,
        cfg: Config,
        events: EventStore,
        snapshots: SnapshotCache,
        cutter: ClipCutter,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.cfg = cfg
        self.events = events
        self.snapshots = snapshots
        self.cutter = cutter
        self.clock = clock
        self.tz = ZoneInfo(cfg.appliance.timezone)
        self.cameras = {cam.id: cam for cam in cfg.cameras}

    async def compose(self, row: AlertRow, settings: ChannelSettings, channel: Channel) -> Alert:
        payload = payload_of(row)
        snapshot: bytes | None = None
        clip: bytes | None = None
        clip_state: str | None = None
        if row.event_id is not None and row.part != "clip":
            snapshot = self.snapshots.get(row.event_id)
        if row.event_id is not None and (row.part == "clip" or (snapshot is None and row.kind != "camera_online")):
            event = await self.events.get(row.event_id)
            if event is not None:
                snapshot = event.snapshot_jpeg
                if row.part == "clip":
                    clip, clip_state = await self._clip(event, settings, channel)
                    payload = {**payload, **self._zones(event.camera_id, boxes_from_json(event.peak_boxes))}
        if row.part == "snapshot" and row.camera_id is not None and isinstance(boxes := payload.get("boxes"), list):
            payload = {**payload, **self._zones(row.camera_id, boxes)}
        camera = self.cameras.get(row.camera_id) if row.camera_id else None
        facts = Facts(
            kind=row.kind,
            part=row.part,
            occurred_utc=row.occurred_utc,
            store_name=self.cfg.appliance.name,
            channel_id=row.channel_id,
            camera_name=camera.name if camera else row.camera_id,
            event_id=row.event_id,
            payload=payload,
            clip=clip_state,
        )
        now = self.clock()
        lang = settings.language or self.cfg.appliance.locale
        texts = render(facts, lang, self.tz, now, self.cfg.alerts.console_url)
        part: AlertPart = "clip" if row.part == "clip" else "snapshot" if row.part == "snapshot" else "notice"
        data = {
            **payload,
            "kind": row.kind,
            "part": row.part,
            "camera_id": row.camera_id,
            "camera_name": facts.camera_name,
            "event_id": row.event_id,
            "occurred_utc": row.occurred_utc.isoformat(),
            "occurred_local": row.occurred_utc.astimezone(self.tz).isoformat(),
            "age_s": round(max(0.0, (now - row.occurred_utc).total_seconds()), 1),
            "link": texts.link,
            "store": self.cfg.appliance.name,
        }
        return Alert(
            alert_id=str(row.id),
            kind=row.kind,
            part=part,
            title=texts.title,
            body=texts.body,
            occurred_utc=row.occurred_utc,
            camera_id=row.camera_id,
            camera_name=facts.camera_name,
            event_id=row.event_id,
            link=texts.link,
            snapshot_jpeg=snapshot,
            clip_mp4=clip,
            clip_name=f"{row.event_id}.mp4" if clip is not None else None,
            data=data,
        )

    async def _clip(self, event: Event, settings: ChannelSettings, channel: Channel) -> tuple[bytes | None, str]:
        """The clip to attach and what became of it: attached, too_big, missing, or link (the
        channel takes no attachments: nothing to cut)."""
        if channel.max_attachment_bytes <= 0:
            return None, "link"
        try:
            clip = await self.cutter.clip_for(event, settings.max_clip_seconds)
        except Exception:
            log.exception(
                "cannot cut the alert clip of event %s; the alert goes without it",
                event.id,
                extra={"event_id": event.id},
            )
            return None, "missing"
        if clip is None:
            return None, "missing"
        if len(clip) > min(settings.max_clip_bytes, channel.max_attachment_bytes):
            return None, "too_big"
        return clip, "attached"

    def _zones(self, camera_id: str, boxes: Sequence[Sequence[float]]) -> dict[str, object]:
        """The zones the motion was in, when the camera has several (one zone says nothing)."""
        cam = self.cameras.get(camera_id)
        if cam is None or len(cam.zones) < 2:
            return {}
        return {"zones": zones_hit(boxes, cam.zones)}

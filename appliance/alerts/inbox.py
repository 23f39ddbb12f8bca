"""The demo's stand-in for a phone: alerts kept in memory and shown on the console's /inbox page."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from appliance.bus import EventBus, Subscription
from appliance.cameras.messages import (
    CameraOffline,
    CameraOnline,
    ClipReady,
    DiskNearlyFull,
    EventOpened,
    TamperDetected,
)
from appliance.config import Config

# A demo runs for minutes; this many alerts with snapshots stay well under a few megabytes.
DEMO_INBOX_MAX_ITEMS = 100


@dataclass(frozen=True)
class InboxItem:
    id: int
    title: str
    body: str
    created_at: datetime  # UTC
    image: bytes | None  # JPEG or PNG snapshot


class DemoInbox:
    """The newest `max_items` alerts; older ones are forgotten."""

    def __init__(self, max_items: int = DEMO_INBOX_MAX_ITEMS) -> None:
        self._items: deque[InboxItem] = deque(maxlen=max_items)
        self._ids = itertools.count(1)

    def add(self, title: str, body: str, created_at: datetime, image: bytes | None = None) -> InboxItem:
        if created_at.tzinfo is None:
            raise ValueError("created_at must be an aware UTC datetime, e.g. datetime.now(UTC)")
        item = InboxItem(next(self._ids), title, body, created_at, image)
        self._items.append(item)
        return item

    def items(self) -> list[InboxItem]:
        """Newest first."""
        return list(reversed(self._items))

    def get(self, item_id: int) -> InboxItem | None:
        return next((i for i in self._items if i.id == item_id), None)


def inbox_message(message: object, names: Mapping[str, str], tz: ZoneInfo) -> tuple[str, str, bytes | None] | None:
    """What the demo's owner would read on the phone for a bus message (Russian, the demo's language)."""

    def when(t: datetime) -> str:
        return t.astimezone(tz).strftime("%d.%m.%Y %H:%M:%S")

    def name(camera_id: str) -> str:
        return names.get(camera_id, camera_id)

    match message:
        case EventOpened(camera_id=cid, start_utc=t, armed=True, snapshot_jpeg=jpeg):
            return f"Движение: «{name(cid)}»", f"Началось в {when(t)}.", jpeg
        case ClipReady(camera_id=cid):
            return f"Видео готово: «{name(cid)}»", "Запись события сохранена и подписана; её можно скачать.", None
        case CameraOffline(camera_id=cid, since_utc=t):
            return f"Камера «{name(cid)}» недоступна", f"Нет видео с {when(t)}. Проверьте питание и кабель.", None
        case CameraOnline(camera_id=cid, at_utc=t):
            return f"Камера «{name(cid)}» снова в сети", f"Видео идёт с {when(t)}.", None
        case TamperDetected(camera_id=cid, kind=kind, at_utc=t, snapshot_jpeg=jpeg):
            what = TAMPER_WORDS.get(kind, kind)
            return f"Камера «{name(cid)}»: {what}", f"Замечено в {when(t)}. Проверьте камеру.", jpeg
        case DiskNearlyFull(free_bytes=free):
            return "Диск почти заполнен", f"Свободно {free / 1024**3:.1f} ГБ; удалить больше нечего.", None
    return None


TAMPER_WORDS = {
    "tamper_covered": "объектив закрыт",
    "tamper_defocus": "изображение расфокусировано",
    "tamper_scene_change": "камеру повернули",
}


async def feed_inbox(bus: EventBus, inbox: DemoInbox, cfg: Config) -> None:
    """The demo's stand-in for alert delivery: bus messages become inbox items."""
    names = {cam.id: cam.name for cam in cfg.cameras}
    tz = ZoneInfo(cfg.appliance.timezone)
    messages: Subscription[object] = bus.subscribe()
    async for message in messages:
        shown = inbox_message(message, names, tz)
        if shown is not None:
            title, body, image = shown
            inbox.add(title, body, datetime.now(UTC), image)

"""The demo's stand-in for a phone: what it received, kept in memory and shown on the console's /inbox page.

The demo fills it through the real delivery paths (appliance/demo_phone.py): alerts that the
alerts outbox delivered to the demo's webhook channel, and the SMS the portal sent through its
SMS.ru client.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from datetime import datetime

# A demo runs for minutes; this many alerts, with snapshots and demo clips (0.5-2 MB each), stay under 100 MB.
DEMO_INBOX_MAX_ITEMS = 100


@dataclass(frozen=True)
class InboxItem:
    id: int
    title: str
    body: str
    created_at: datetime  # UTC
    image: bytes | None  # JPEG or PNG snapshot
    clip: bytes | None = None  # MP4


class DemoInbox:
    """The newest `max_items` alerts; older ones are forgotten."""

    def __init__(self, max_items: int = DEMO_INBOX_MAX_ITEMS) -> None:
        self._items: deque[InboxItem] = deque(maxlen=max_items)
        self._ids = itertools.count(1)

    def add(
        self, title: str, body: str, created_at: datetime, image: bytes | None = None, clip: bytes | None = None
    ) -> InboxItem:
        if created_at.tzinfo is None:
            raise ValueError("created_at must be an aware UTC datetime, e.g. datetime.now(UTC)")
        item = InboxItem(next(self._ids), title, body, created_at, image, clip)
        self._items.append(item)
        return item

    def items(self) -> list[InboxItem]:
        """Newest first."""
        return list(reversed(self._items))

    def get(self, item_id: int) -> InboxItem | None:
        return next((i for i in self._items if i.id == item_id), None)

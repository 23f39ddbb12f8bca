"""A short memory of which devices are signed in, so that probes and pages (several per guest per
minute, most from devices that are not signed in) rarely need the database.

Every change of a session the portal makes goes through the identification service, which
forgets the device's entry once the change is committed; an answer read from the database while
any change was being made is not kept (it may predate the change). The lifetime bounds how long a
change made elsewhere goes unseen: a gateway's RADIUS Accounting-Stop ending a session (the guest
then sees the login page a few seconds later), or another process. A session past its end is
never answered from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Final

from appliance.storage.guests import UNKNOWN_MAC, SessionView

CACHE_S: Final = 5.0
MAX_ENTRIES: Final = 20_000

Key = tuple[str, ...]


def device_key(mac: str, ip: str) -> Key:
    """As the stores tell devices apart: by MAC, or by IP where the MAC is unknown."""
    return (mac, ip) if mac == UNKNOWN_MAC else (mac,)


class ActiveDevices:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[Key, tuple[SessionView | None, float]] = {}
        self._changes = 0

    @property
    def changes(self) -> int:
        """Read before asking the database; hand it to `put` with the answer."""
        return self._changes

    def get(self, key: Key, now_utc: datetime) -> tuple[bool, SessionView | None]:
        """(known, view): known is False when the database must be asked."""
        entry = self._entries.get(key)
        if entry is None or entry[1] <= self._clock():
            return False, None
        view = entry[0]
        if view is not None and view.session.expires_utc <= now_utc:
            return False, None
        return True, view

    def put(self, key: Key, view: SessionView | None, changes: int) -> None:
        if changes != self._changes:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (view, self._clock() + CACHE_S)

    def forget(self, key: Key) -> None:
        self._changes += 1
        self._entries.pop(key, None)

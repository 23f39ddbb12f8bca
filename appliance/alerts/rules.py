"""Which alerts a channel gets, and when: pure decisions, no clock and no I/O.

Per channel, in this order:
1. the channel's cameras and kinds (config): other alerts are not for it at all;
2. its armed schedule: motion outside it is not for it (the camera's own schedule already decided
   whether the event alerts anybody);
3. the owner's pause and a camera's suspension: camera alerts are kept back ("paused",
   "suspended"), appliance notices (disk, SMS budget) still go;
4. quiet hours: motion is kept back, other alerts wait until the quiet hours end;
5. cooldown: after a motion alert of a camera, its motion events within `cooldown_s` are kept
   back and counted; the next alert of that camera says how many there were.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Final

from appliance.alerts.settings import CAMERA_KINDS, ChannelSettings
from appliance.cameras.events import ArmSchedule

COOLDOWN: Final = "cooldown"
QUIET_HOURS: Final = "quiet_hours"
WINDOW_SEARCH: Final = timedelta(days=8)
"""Quiet hours that do not end within this long never end ('always'): what they hold is dropped."""


@dataclass(frozen=True)
class Send:
    not_before: datetime | None = None
    """Held until then (the end of quiet hours); None: at once."""
    more_events: int = 0
    """Motion events of the camera kept back by the cooldown since its previous alert."""


@dataclass(frozen=True)
class Suppress:
    reason: str
    """cooldown, paused, suspended or quiet_hours."""


Decision = Send | Suppress


def window_end(schedule: ArmSchedule, at: datetime, tz: tzinfo) -> datetime | None:
    """The first minute after `at` outside the schedule's windows; None if there is none within
    WINDOW_SEARCH. Steps a minute at a time: windows are whole minutes of local wall-clock time."""
    t = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while t - at < WINDOW_SEARCH:
        if not schedule.armed(t, tz):
            return t
        t += timedelta(minutes=1)
    return None


class ChannelRules:
    """The rules of one channel, with its memory of recent motion alerts per camera."""

    def __init__(self, settings: ChannelSettings, tz: tzinfo) -> None:
        self.settings = settings
        self._tz = tz
        self._schedule = ArmSchedule.parse(settings.schedule)
        self._quiet = ArmSchedule.parse(settings.quiet_hours)
        self._last_alert: dict[str, datetime] = {}
        self._held: dict[str, int] = {}

    def decide(self, kind: str, camera_id: str | None, at: datetime, muted: str | None = None) -> Decision | None:
        """What to do with an alert of `kind` about `camera_id` that happened at `at`; None when it
        is not for this channel. `muted`: the camera's pause state ('paused', 'suspended' or None)."""
        if not self.settings.wants(kind, camera_id):
            return None
        motion = kind == "motion"
        if motion and not self._schedule.armed(at, self._tz):
            return None
        if kind in CAMERA_KINDS and muted is not None:
            return Suppress(muted)
        if self._quiet.armed(at, self._tz):
            end = None if motion else window_end(self._quiet, at, self._tz)
            return Suppress(QUIET_HOURS) if end is None else Send(not_before=end)
        if not motion or camera_id is None:
            return Send()
        last = self._last_alert.get(camera_id)
        if last is not None and timedelta(0) <= at - last < timedelta(seconds=self.settings.cooldown_s):
            self._held[camera_id] = self._held.get(camera_id, 0) + 1
            return Suppress(COOLDOWN)
        self._last_alert[camera_id] = at
        return Send(more_events=self._held.pop(camera_id, 0))

    def remember(self, camera_id: str, alerted_at: datetime, held: int = 0) -> None:
        """A motion alert sent before a restart, and the events kept back since."""
        if alerted_at >= self._last_alert.get(camera_id, alerted_at):
            self._last_alert[camera_id] = alerted_at
            self._held[camera_id] = held


class Debounce:
    """At most one alert per key within `interval` (disk nearly full repeats on every retention sweep)."""

    def __init__(self, interval: timedelta) -> None:
        self.interval = interval
        self._last: dict[str, datetime] = {}

    def allow(self, key: str, at: datetime) -> bool:
        last = self._last.get(key)
        if last is not None and at - last < self.interval:
            return False
        self._last[key] = at
        return True

    def remember(self, key: str, at: datetime) -> None:
        self._last[key] = max(at, self._last.get(key, at))

"""Times as people in the store read them: UTC inside, the store's time zone on the page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

# Day first, 24-hour clock, as written in Russia; the same in the English pages so that staff
# switching languages never misread 03.04 as March 4th.
FORMATS = {
    "datetime": "%d.%m.%Y %H:%M",
    "time": "%H:%M",
}
TimeFormat = Literal["datetime", "time"]


def to_local(moment: datetime, tz: ZoneInfo) -> datetime:
    """`moment` in `tz`. A naive value is taken as UTC: SQLite drops the zone of stored UTC times."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(tz)


def format_local(moment: datetime | None, tz: ZoneInfo, fmt: TimeFormat = "datetime") -> str:
    """E.g. "27.11.2026 23:40" in the store's zone; an em dash for "never"."""
    if moment is None:
        return "—"
    return to_local(moment, tz).strftime(FORMATS[fmt])

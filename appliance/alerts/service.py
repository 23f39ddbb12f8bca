"""What the console and the command line do with alerts: status, test alerts, retries, pauses."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from appliance.alerts.outbox import ChannelCounts, NewAlert, Outbox
from appliance.alerts.pauses import Pause, Pauses
from appliance.alerts.settings import ChannelSettings
from appliance.storage.models import utcnow
from appliance.storage.models_alerts import ALERT_FAILED, ALERT_STATES, PAUSE_ALL, AlertRow

FAILURES_SHOWN = 20
RECENT_SHOWN = 30


@dataclass(frozen=True)
class ChannelView:
    settings: ChannelSettings
    counts: dict[str, int]
    last_delivered: datetime | None
    oldest_pending: datetime | None


@dataclass(frozen=True)
class Overview:
    channels: list[ChannelView]
    unknown: list[ChannelCounts]
    """Channels with stored alerts that the configuration no longer has."""
    paused: Pause | None
    suspended: dict[str, Pause]
    failures: list[AlertRow]
    recent: list[AlertRow]


class AlertsService:
    def __init__(
        self,
        channels: list[ChannelSettings],
        outbox: Outbox,
        pauses: Pauses,
        wake: Callable[[str], None] = lambda _channel: None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.channels = {c.id: c for c in channels}
        self.outbox = outbox
        self.pauses = pauses
        self.wake = wake
        self.clock = clock

    async def overview(self) -> Overview:
        counts = {c.channel_id: c for c in await self.outbox.counts()}
        views = []
        for channel_id, settings in self.channels.items():
            found = counts.get(channel_id)
            views.append(
                ChannelView(
                    settings,
                    found.by_state if found else dict.fromkeys(ALERT_STATES, 0),
                    found.last_delivered if found else None,
                    found.oldest_pending if found else None,
                )
            )
        active = self.pauses.active(self.clock())
        return Overview(
            channels=views,
            unknown=[c for c in counts.values() if c.channel_id not in self.channels],
            paused=active.pop(PAUSE_ALL, None),
            suspended=active,
            failures=await self.outbox.recent(states=[ALERT_FAILED], limit=FAILURES_SHOWN),
            recent=await self.outbox.recent(limit=RECENT_SHOWN),
        )

    async def send_test(self, channel_id: str) -> int:
        """Queue a test alert for the channel; returns its outbox id. KeyError for an unknown channel."""
        if channel_id not in self.channels:
            raise KeyError(channel_id)
        now = self.clock()
        source = f"test:{now:%Y%m%dT%H%M%S}:{secrets.token_hex(4)}"
        await self.outbox.add([NewAlert(channel_id, source, "notice", "test", now)], now)
        rows = await self.outbox.recent(channel_id=channel_id, limit=5)
        alert_id = next(r.id for r in rows if r.source == source)
        self.wake(channel_id)
        return alert_id

    async def retry(self, alert_id: int | None = None, channel_id: str | None = None) -> int:
        """Failed alerts sent again; returns how many channels were woken."""
        woken = await self.outbox.retry_failed(alert_id, channel_id)
        for channel in woken:
            self.wake(channel)
        return len(woken)

    async def pause(self, hours: float | None, by: str | None) -> Pause:
        until = self.clock() + timedelta(hours=hours) if hours else None
        return await self.pauses.set(PAUSE_ALL, until, by)

    async def resume(self) -> None:
        await self.pauses.clear(PAUSE_ALL)

    async def suspend(self, camera_id: str, minutes: float, by: str | None) -> Pause:
        return await self.pauses.set(camera_id, self.clock() + timedelta(minutes=minutes), by)

    async def unsuspend(self, camera_id: str) -> None:
        await self.pauses.clear(camera_id)

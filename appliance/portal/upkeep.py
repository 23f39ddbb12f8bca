"""The guest Wi-Fi's background work: ending sessions whose time is up, and deleting personal data
once the law no longer asks to keep it.

- The session sweeper ends sessions at their session timeout (closing them at the gateway too)
  and, with a gateway that reports on devices, records their traffic counters and ends sessions
  the gateway itself has closed (idle timeout, quota).
- The purge deletes identification log rows `log_retention_days` after they ended, then guests
  left without sessions or remembered devices, and vouchers (name, document) as long after they
  stopped working; code requests after a day, or after the limits'
  lookback if longer (they only serve the login and its limits, which are rebuilt from them at
  start), and the daily SMS counts after a month.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from appliance.portal.gateways.base import Device, GatewayError
from appliance.portal.identify import IdentificationService
from appliance.portal.vouchers import VoucherStore
from appliance.storage.guest_codes import CodeStore, SmsBudget
from appliance.storage.guests import GuestStore
from appliance.storage.models_guests import END_GATEWAY, END_SESSION_TIMEOUT

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S: Final = 30.0
PURGE_INTERVAL_S: Final = 3600.0
CODE_REQUESTS_KEPT: Final = timedelta(days=1)
SMS_DAYS_KEPT: Final = timedelta(days=31)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class SessionSweeper:
    service: IdentificationService
    ask_gateway: bool
    """False for a gateway that knows nothing of devices (driver "none")."""
    clock: Callable[[], datetime] = _utcnow

    async def sweep(self) -> int:
        """One pass; returns how many sessions it ended."""
        now = self.clock()
        ended = 0
        for row in await self.service.guests.expired_sessions(now):
            view = await self.service.guests.session(row.id)
            if view is not None:
                await self.service.end(view, END_SESSION_TIMEOUT, at=row.expires_utc)
                ended += 1
        if self.ask_gateway:
            ended += await self._follow_gateway()
        return ended

    async def _follow_gateway(self) -> int:
        ended = 0
        for view in await self.service.guests.open_sessions():
            row = view.session
            device = Device(mac=row.mac, ip=row.ip, gateway_ref=row.gateway_ref)
            try:
                status = await self.service.gateway.status(device)
            except GatewayError as exc:
                log.warning("cannot ask the gateway about a guest", extra={"session": row.id, "error": str(exc)})
                continue
            await self.service.guests.record_usage(row.id, status.bytes_in, status.bytes_out)
            if not status.authorised:
                await self.service.end(view, END_GATEWAY)
                ended += 1
        return ended

    async def run(self, interval_s: float = SWEEP_INTERVAL_S) -> None:
        while True:
            await self.sweep()
            await asyncio.sleep(interval_s)


@dataclass
class Purge:
    guests: GuestStore
    codes: CodeStore
    budget: SmsBudget
    retention_days: int
    clock: Callable[[], datetime] = _utcnow
    limits_lookback: timedelta = CODE_REQUESTS_KEPT
    vouchers: VoucherStore | None = None

    async def purge(self) -> tuple[int, int]:
        """One pass; returns (log rows, guests) deleted."""
        now = self.clock()
        log_before = now - timedelta(days=self.retention_days)
        sessions, guests = await self.guests.purge(log_before, now)
        vouchers = await self.vouchers.purge(log_before) if self.vouchers is not None else 0
        codes = await self.codes.purge(now - max(CODE_REQUESTS_KEPT, self.limits_lookback))
        await self.budget.purge((now - SMS_DAYS_KEPT).date())
        if sessions or guests or codes or vouchers:
            log.info(
                "guest data past its retention deleted",
                extra={
                    "log_rows": sessions,
                    "guests": guests,
                    "vouchers": vouchers,
                    "code_requests": codes,
                    "days": self.retention_days,
                },
            )
        return sessions, guests

    async def run(self, interval_s: float = PURGE_INTERVAL_S) -> None:
        while True:
            await self.purge()
            await asyncio.sleep(interval_s)

"""Delivering the outbox: one worker per channel, each a supervised component.

A worker claims its channel's newest due alert, composes it, sends it, and records the outcome:
- delivered: done for good (the row's state is the idempotency: it is never claimed again);
- a permanent failure (bad token, refused request): the row is failed with the provider's message
  and shown in the console; the worker goes on with the next alert at once;
- a transient failure (network, 5xx, 429, timeout): the row waits, and so does the whole channel,
  for a back-off that doubles with every failure in a row (with jitter), or for as long as the
  provider asked (Retry-After) when that is longer. After the outage the newest alert goes first.
A worker sleeps until it is woken (the producer stored an alert for it) or its next alert is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from appliance.alerts.channel import Channel, DeliveryError
from appliance.alerts.composer import Composer
from appliance.alerts.outbox import Outbox
from appliance.alerts.settings import AlertsSection, ChannelSettings
from appliance.cameras.uncancelled import uncancelled
from appliance.logs import SECRETS
from appliance.redact import mask_text
from appliance.storage.models import utcnow
from appliance.storage.models_alerts import AlertRow
from appliance.supervisor import Backoff

log = logging.getLogger(__name__)

IDLE_RECHECK_S: Final = 300.0
"""A worker with nothing due looks at the outbox at least this often (alerts added by another
process, e.g. `appliance alerts test`, or a clock that was set back)."""


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    error: str | None = None
    permanent: bool = False
    retry_in_s: float | None = None


class ChannelWorker:
    def __init__(
        self,
        settings: ChannelSettings,
        channel: Channel,
        outbox: Outbox,
        composer: Composer,
        section: AlertsSection,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.channel = channel
        self.outbox = outbox
        self.composer = composer
        self.timeout_s = section.send_timeout_s
        self.clock = clock
        self._backoff = Backoff(section.retry_initial_s, section.retry_max_s)
        self._wake = asyncio.Event()
        self.blocked_until: datetime | None = None
        """The channel is resting after a failure until then."""

    @property
    def id(self) -> str:
        return self.settings.id

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        await self.outbox.release([self.id])
        try:
            while True:
                # Cleared before looking, so a wake-up that comes while we look is not lost.
                self._wake.clear()
                now = self.clock()
                if self.blocked_until is not None and now < self.blocked_until:
                    await self._sleep_until(self.blocked_until)
                    continue
                row = await uncancelled(self.outbox.claim_next(self.id, now))
                if row is None:
                    await self._sleep_until(await self.outbox.next_due(self.id))
                    continue
                await self.deliver(row)
        finally:
            await self.channel.close()

    async def _sleep_until(self, when: datetime | None) -> None:
        wait = IDLE_RECHECK_S if when is None else (when - self.clock()).total_seconds()
        if wait <= 0:
            return
        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that comes as
        # the wake-up does, and the worker would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(wait, IDLE_RECHECK_S)):
                await self._wake.wait()

    async def deliver(self, row: AlertRow) -> Outcome:
        """Send a claimed row and record how it went."""
        outcome = await self._send(row)
        now = self.clock()
        where: dict[str, object] = {"channel": self.id, "alert_id": row.id, "kind": row.kind, "part": row.part}
        if outcome.delivered:
            self._backoff.reset()
            self.blocked_until = None
            await uncancelled(self.outbox.delivered(row.id, now))
            log.info(
                "alert delivered",
                extra={**where, "delay_s": round((now - row.occurred_utc).total_seconds(), 3)},
            )
        elif outcome.permanent:
            await uncancelled(self.outbox.failed(row.id, outcome.error or ""))
            log.error("alert refused for good: %s", outcome.error, extra=where)
        else:
            delay = self._backoff.next_delay()
            if outcome.retry_in_s is not None:
                delay = max(delay, outcome.retry_in_s)
            self.blocked_until = now + timedelta(seconds=delay)
            await uncancelled(self.outbox.retry_at(row.id, self.blocked_until, outcome.error or ""))
            log.warning(
                "alert not delivered; trying again in %.1f s: %s",
                delay,
                outcome.error,
                extra={**where, "retry_s": delay},
            )
        return outcome

    async def _send(self, row: AlertRow) -> Outcome:
        try:
            alert = await self.composer.compose(row, self.settings, self.channel)
            async with asyncio.timeout(self.timeout_s):
                await self.channel.send(alert)
        except DeliveryError as exc:
            return Outcome(False, self._masked(exc.provider_message), exc.permanent, exc.retry_after_s)
        except TimeoutError:
            return Outcome(False, f"no answer within {self.timeout_s:g} s")
        except Exception as exc:
            # A bug in a channel or in composing must not lose the alert: it is retried like an outage.
            log.exception("sending an alert failed unexpectedly", extra={"channel": self.id, "alert_id": row.id})
            return Outcome(False, self._masked(f"{type(exc).__name__}: {exc}"))
        return Outcome(True)

    def _masked(self, text: str) -> str:
        return mask_text(text, (*self.settings.secret_values(), *SECRETS.values))


class Dispatcher:
    """The channel workers, by channel id."""

    def __init__(self, workers: list[ChannelWorker]) -> None:
        self.workers = {w.id: w for w in workers}

    def wake(self, channel_id: str) -> None:
        worker = self.workers.get(channel_id)
        if worker is not None:
            worker.wake()

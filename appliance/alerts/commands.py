"""`appliance alerts test --channel ID` and `appliance alerts status`.

`test` stores a test alert and delivers it from this process with the daemon's own code, so the
answer (delivered, or the provider's words) is printed at once; if a running daemon picked the
alert up first, its outcome is awaited instead. Exit codes: 0 delivered, 1 not delivered, 2 no
such channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine

from appliance.alerts.channels import ChannelUnavailable
from appliance.alerts.dispatcher import Outcome
from appliance.alerts.outbox import Outbox
from appliance.alerts.system import make_parts
from appliance.cli import EXIT_FAILURE, EXIT_USAGE
from appliance.config import Config
from appliance.storage.commands import Job, _fail, _local, _table
from appliance.storage.commands import _run as run_on_database
from appliance.storage.db import make_sessionmaker
from appliance.storage.models_alerts import ALERT_DELIVERED, ALERT_FAILED, ALERT_PENDING

OUTCOME_POLL_S = 0.2
STATE_COLUMNS = (("pending", "WAITING"), ("delivered", "DELIVERED"), ("failed", "FAILED"), ("suppressed", "HELD BACK"))


async def _outcome_of(outbox: Outbox, alert_id: int, timeout_s: float) -> Outcome | None:
    """The outcome a running daemon recorded for the alert; None if it did not within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = await outbox.get(alert_id)
        if row is not None and row.state == ALERT_DELIVERED:
            return Outcome(True)
        if row is not None and row.state == ALERT_FAILED:
            return Outcome(False, row.last_error, permanent=True)
        if row is not None and row.state == ALERT_PENDING and row.attempts:
            return Outcome(False, row.last_error)
        await asyncio.sleep(OUTCOME_POLL_S)
    return None


class _NotDelivered(Exception):
    pass


def _run(cfg: Config, job: Job) -> int:
    """The storage commands' runner (database problems explained), plus this module's outcomes."""
    try:
        return run_on_database(cfg, job)
    except _NotDelivered as exc:
        _fail(str(exc))
        return EXIT_FAILURE
    except ChannelUnavailable as exc:
        _fail(str(exc))
        return EXIT_USAGE


def alerts_test(cfg: Config, channel_id: str) -> int:
    settings = next((c for c in cfg.alerts.channels if c.id == channel_id), None)
    if settings is None:
        known = ", ".join(c.id for c in cfg.alerts.channels) or "none: add [[alerts.channels]] to the configuration"
        _fail(f"there is no alerts channel {channel_id!r} (channels: {known})")
        return EXIT_USAGE

    async def job(engine: AsyncEngine) -> str:
        parts = make_parts(cfg, make_sessionmaker(engine), channel_ids=[channel_id])
        worker = parts.workers[0]
        started = time.monotonic()
        # A channel with a connection of its own (MQTT) delivers only while its link runs; the daemon's link is
        # in another process, so the command keeps one of its own while it sends.
        run = getattr(worker.channel, "run", None)
        link = asyncio.create_task(run()) if run is not None else None
        try:
            alert_id = await parts.service.send_test(channel_id)
            row = await parts.outbox.claim(alert_id)
            if row is not None:
                outcome: Outcome | None = await worker.deliver(row)
            else:
                outcome = await _outcome_of(parts.outbox, alert_id, cfg.alerts.send_timeout_s + 5)
        finally:
            if link is not None:
                link.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await link
            await worker.channel.close()
        took = time.monotonic() - started
        what = f"the test alert to {channel_id!r} ({settings.kind})"
        if outcome is None:
            raise _NotDelivered(f"{what} was taken by the running daemon, which has not sent it yet")
        if outcome.delivered:
            return f"Delivered {what} in {took:.2f} s."
        if outcome.permanent:
            raise _NotDelivered(
                f"{what} was refused: {outcome.error}. Check the channel's url (token, address) and secret in the "
                "configuration; nothing is retried until it is fixed."
            )
        raise _NotDelivered(f"{what} could not be delivered now: {outcome.error}. The daemon keeps trying it.")

    return _run(cfg, job)


def alerts_status(cfg: Config) -> int:
    zone = ZoneInfo(cfg.appliance.timezone)

    async def job(engine: AsyncEngine) -> str:
        parts = make_parts(cfg, make_sessionmaker(engine), channel_ids=[])
        await parts.pauses.load()
        view = await parts.service.overview()
        lines = []
        if view.paused is None:
            lines.append("Alerts: on.")
        else:
            until = _local(view.paused.until_utc, zone) if view.paused.until_utc else "resumed in the console"
            lines.append(f"Alerts about cameras: PAUSED until {until} (by {view.paused.set_by or '?'}).")
        for camera_id, pause in sorted(view.suspended.items()):
            lines.append(f"Camera {camera_id}: alerts off until {_local(pause.until_utc, zone)}.")
        lines.append("")
        if not view.channels:
            lines.append(
                "No channels: add [[alerts.channels]] to the configuration (see config/appliance.example.toml)."
            )
        else:
            header = ("CHANNEL", "KIND", "ENABLED", *(title for _, title in STATE_COLUMNS), "LAST DELIVERY")
            rows = [
                (
                    ch.settings.id,
                    ch.settings.kind,
                    "yes" if ch.settings.enabled else "no",
                    *(
                        str(ch.counts[state] + (ch.counts["sending"] if state == "pending" else 0))
                        for state, _ in STATE_COLUMNS
                    ),
                    _local(ch.last_delivered, zone),
                )
                for ch in view.channels
            ]
            lines.append(_table(header, rows))
        for gone in view.unknown:
            lines.append(f"(alerts of channel {gone.channel_id!r}, no longer configured, are in the history)")
        if view.failures:
            lines += [
                "",
                "Not delivered (the service refused them; fix the channel, then send again from the console):",
            ]
            for row in view.failures:
                about = " ".join(x for x in (row.kind, row.camera_id, row.part) if x)
                lines.append(f"  {_local(row.occurred_utc, zone)}  {row.channel_id}  {about}: {row.last_error}")
        return "\n".join(lines)

    return _run(cfg, job)

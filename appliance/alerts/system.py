"""Assembling the alerts side of the appliance from the config.

    bus ──► producer (rules) ──rows──► outbox (DB) ──► one worker per channel ──► apprise / MQTT / Web Push / webhook
                 └── wakes the worker ──────────────────────┘

The producer stops with the recorders (the last clips of a shutdown still get their rows), the
workers with the listeners, last, so alerts in flight finish; what is left is sent after the
next start.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.alerts.channels import ChannelContext, ConsoleChannel, RunningChannel, create_channel
from appliance.alerts.clipcut import ClipCutter
from appliance.alerts.composer import Composer, SnapshotCache
from appliance.alerts.console import alerts_feature
from appliance.alerts.dispatcher import ChannelWorker, Dispatcher
from appliance.alerts.outbox import Outbox
from appliance.alerts.pauses import Pauses
from appliance.alerts.producer import Producer
from appliance.alerts.service import AlertsService
from appliance.bus import EventBus
from appliance.config import Config
from appliance.console.events_page import events_feature
from appliance.features import Built
from appliance.logs import SECRETS
from appliance.storage.events import EventStore
from appliance.storage.footage import LocalFootageStore
from appliance.storage.models import utcnow
from appliance.supervisor import StopStage

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_S: Final = 3600.0


@dataclass
class AlertsParts:
    """The pieces, for the daemon and for the command line."""

    outbox: Outbox
    pauses: Pauses
    composer: Composer
    workers: list[ChannelWorker]
    dispatcher: Dispatcher
    service: AlertsService


def register_secrets(cfg: Config) -> None:
    for channel in cfg.alerts.channels:
        SECRETS.add(*channel.secret_values())


def make_parts(
    cfg: Config, sessions: async_sessionmaker[AsyncSession], *, channel_ids: list[str] | None = None
) -> AlertsParts:
    """Channels are created for the enabled channels, or for `channel_ids` (enabled or not)."""
    register_secrets(cfg)
    section = cfg.alerts
    outbox = Outbox(sessions)
    pauses = Pauses(sessions)
    cutter = ClipCutter(LocalFootageStore(cfg.footage_dir), cfg.appliance.data_dir / "alerts" / "clips")
    composer = Composer(cfg, EventStore(sessions), SnapshotCache(), cutter)
    wanted = [c for c in section.channels if (c.id in channel_ids if channel_ids is not None else c.enabled)]
    workers = [
        ChannelWorker(
            settings,
            create_channel(ChannelContext(settings, cfg, sessions, cfg.appliance.data_dir)),
            outbox,
            composer,
            section,
        )
        for settings in wanted
    ]
    dispatcher = Dispatcher(workers)
    service = AlertsService(list(section.channels), outbox, pauses, dispatcher.wake)
    return AlertsParts(outbox, pauses, composer, workers, dispatcher, service)


async def housekeeping(outbox: Outbox, keep_days: float) -> None:
    """Forget finished alerts older than keep_days, once an hour."""
    while True:
        removed = await outbox.prune(utcnow() - timedelta(days=keep_days))
        if removed:
            log.info("old alerts removed from the history", extra={"count": removed})
        await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)


async def build_alerts(cfg: Config, sessions: async_sessionmaker[AsyncSession], bus: EventBus) -> Built:
    parts = make_parts(cfg, sessions)
    await parts.pauses.load()
    # The event page is what every alert links to.
    built = Built(console=[alerts_feature(parts.service, cfg), events_feature(cfg, sessions)])
    for worker in parts.workers:
        built.components.append((f"alerts:{worker.id}", worker.run, StopStage.LISTENERS))
        channel = worker.channel
        if isinstance(channel, RunningChannel):
            built.components.append((f"alerts:{worker.id}:link", channel.run, StopStage.LISTENERS))
        # Channels of one kind may share a section (one Web Push page for every webpush channel).
        if isinstance(channel, ConsoleChannel) and (feature := channel.console_feature()).name not in {
            f.name for f in built.console
        }:
            built.console.append(feature)
    if parts.workers:
        snapshots = parts.composer.snapshots
        producer = Producer(
            cfg.alerts, parts.outbox, parts.pauses, snapshots, parts.dispatcher.wake, ZoneInfo(cfg.appliance.timezone)
        )
        built.components.append(("alerts-producer", partial(producer.run, bus), StopStage.RECORDERS))
    built.components.append(
        ("alerts-housekeeping", partial(housekeeping, parts.outbox, cfg.alerts.keep_days), StopStage.SOURCES)
    )
    log.info("alerts ready", extra={"channels": [w.id for w in parts.workers]})
    return built

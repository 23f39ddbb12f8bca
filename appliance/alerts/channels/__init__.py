"""The channel registry: which module builds a channel of each kind.

A channel module has `create(ctx: ChannelContext) -> Channel` (appliance/alerts/channel.py) and one
line in `CHANNEL_MODULES`; modules are imported only when a configured channel uses them, so a
box without MQTT never loads aiomqtt. A channel that keeps a connection or publishes on its own
(MQTT discovery) also has `run()`, started as a supervised component; one that needs pages in the
console (Web Push subscription) has `console_feature()`.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.alerts.channel import Channel
from appliance.alerts.settings import ChannelSettings

if TYPE_CHECKING:
    from appliance.config import Config
    from appliance.console.features import ConsoleFeature

CHANNEL_MODULES: dict[str, str] = {
    "apprise": "appliance.alerts.channels.apprise_channel",
    "mqtt": "appliance.alerts.channels.mqtt",
    "webpush": "appliance.alerts.channels.webpush",
    "webhook": "appliance.alerts.channels.webhook",
}
"""kind -> module with `create(ctx)`."""


@dataclass(frozen=True)
class ChannelContext:
    """What a channel is built from."""

    settings: ChannelSettings
    cfg: Config
    sessions: async_sessionmaker[AsyncSession]
    data_dir: Path
    """The appliance's data directory (keys a channel creates at first start live under it)."""


ChannelFactory = Callable[[ChannelContext], Channel]


@runtime_checkable
class RunningChannel(Protocol):
    """A channel with work of its own between sends (a connection to keep, discovery to publish)."""

    def run(self) -> Awaitable[None]: ...


@runtime_checkable
class ConsoleChannel(Protocol):
    """A channel that adds pages to the staff console."""

    def console_feature(self) -> ConsoleFeature: ...


class ChannelUnavailable(Exception):
    """No module for the channel's kind in this build."""


def create_channel(ctx: ChannelContext) -> Channel:
    name = CHANNEL_MODULES.get(ctx.settings.kind)
    if name is None:
        raise ChannelUnavailable(
            f"alerts channel {ctx.settings.id!r}: kind {ctx.settings.kind!r} is not available in this version; "
            f"use one of {', '.join(sorted(CHANNEL_MODULES))}"
        )
    factory: ChannelFactory = importlib.import_module(name).create
    return factory(ctx)

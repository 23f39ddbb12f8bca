"""Assembling the guest Wi-Fi side of the appliance from the config."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.bus import EventBus
from appliance.config import Config
from appliance.features import Built


@dataclass
class PortalSystem(Built):
    services: dict[str, object] = field(default_factory=dict)


async def build_portal(cfg: Config, sessions: async_sessionmaker[AsyncSession], bus: EventBus) -> PortalSystem:
    return PortalSystem()

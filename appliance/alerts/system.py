"""Assembling the alerts side of the appliance from the config."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.bus import EventBus
from appliance.config import Config
from appliance.features import Built


async def build_alerts(cfg: Config, sessions: async_sessionmaker[AsyncSession], bus: EventBus) -> Built:
    return Built()

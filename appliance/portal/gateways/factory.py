"""The gateway driver named by `[portal.gateway] driver`. Each driver adds its branch here."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.config import Config
from appliance.portal.gateways.base import Gateway, GatewayError
from appliance.portal.gateways.none import NoGateway
from appliance.portal.gateways.settings import GatewaySettings


def build_gateway(settings: GatewaySettings, cfg: Config, sessions: async_sessionmaker[AsyncSession]) -> Gateway:
    if settings.driver == "none":
        return NoGateway()
    # The RADIUS and openNDS drivers (and pyrad) are imported only when chosen.
    if settings.driver == "radius":
        from appliance.portal.gateways.radius import RadiusGateway

        return RadiusGateway(
            settings.radius,
            sessions,
            locale=cfg.appliance.locale,
            retention_days=cfg.portal.login.log_retention_days,
        )
    if settings.driver == "opennds":
        from appliance.portal.gateways.opennds import OpenNdsGateway

        return OpenNdsGateway(settings.opennds)
    if settings.driver == "nftables":
        from appliance.portal.gateways.nftables import NftablesGateway

        return NftablesGateway(settings.nftables, portal_port=cfg.portal.port)
    raise GatewayError(
        f"portal.gateway.driver = {settings.driver!r} is not available in this version; use one of the drivers "
        "listed in config/appliance.example.toml"
    )

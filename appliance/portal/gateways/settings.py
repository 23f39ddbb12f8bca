"""`[portal.gateway]`: which device lets an identified guest through, and its settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from appliance.settings_base import StrictModel


class NftablesSettings(StrictModel):
    pass


class RadiusSettings(StrictModel):
    pass


class OpenNdsSettings(StrictModel):
    pass


class GatewaySettings(StrictModel):
    driver: Literal["none", "nftables", "radius", "opennds"] = Field(
        "none",
        description=(
            "none: nothing lets guests through (the portal only identifies them); nftables: this box is the "
            "guest gateway; radius: an external gateway (MikroTik, CoovaChilli, pfSense, ZyXEL) asks this box; "
            "opennds: an OpenWrt router with openNDS uses this box as its FAS."
        ),
    )
    nftables: NftablesSettings = NftablesSettings()
    radius: RadiusSettings = RadiusSettings()
    opennds: OpenNdsSettings = OpenNdsSettings()

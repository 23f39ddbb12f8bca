"""The driver for `driver = "none"`: no gateway is under the appliance's control."""

from __future__ import annotations

from aiohttp import web

from appliance.portal.gateways.base import Device, DeviceStatus, Grant
from appliance.storage.guests import UNKNOWN_MAC


class NoGateway:
    """Only identifies; lets nothing through.

    Guests still identify themselves and every login is logged, but nothing opens their access:
    with this driver the network must be opened some other way, or the portal is a demo. The
    device is the address the request came from (`request.remote`, the TCP peer, never anything
    the browser writes) with the MAC "unknown", since nothing here can see MAC addresses; a
    remembered device is then recognised by its cookie alone.
    """

    name = "none"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def identify(self, request: web.Request) -> Device | None:
        if not request.remote:
            return None
        return Device(mac=UNKNOWN_MAC, ip=request.remote)

    async def allow(self, device: Device, grant: Grant) -> str | None:
        return None

    async def revoke(self, device: Device) -> None:
        return None

    async def status(self, device: Device) -> DeviceStatus:
        return DeviceStatus(device=device, authorised=False)

    def portal_routes(self) -> web.RouteTableDef | None:
        return None

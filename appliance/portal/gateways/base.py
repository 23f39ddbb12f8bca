"""What a gateway driver is to the portal: the thing that lets an identified guest's device
through, and says which device a portal request comes from.

The device's MAC and IP are never taken from what the browser sends: a driver knows them from a
source the guest cannot forge (the kernel's neighbour table for nftables, the gateway's signed
parameters for an openNDS FAS, RADIUS attributes for an external gateway).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from aiohttp import web


@dataclass(frozen=True)
class Device:
    mac: str
    """Lower case, colon separated: aa:bb:cc:dd:ee:ff."""
    ip: str
    gateway_ref: str | None = None
    """Driver's own reference for this visit (openNDS token, RADIUS login name), if any."""


@dataclass(frozen=True)
class Grant:
    """What an identified guest gets."""

    session_id: str
    """The identification log row this access belongs to (accounting is stored against it)."""
    session_timeout_s: int
    idle_timeout_s: int
    down_kbit_s: int | None = None
    up_kbit_s: int | None = None
    quota_bytes: int | None = None


@dataclass(frozen=True)
class DeviceStatus:
    device: Device
    authorised: bool
    expires_utc: datetime | None = None
    bytes_in: int = 0
    bytes_out: int = 0


class GatewayError(Exception):
    """The gateway could not do what was asked; the message says what to check."""


class Gateway(Protocol):
    name: str

    async def start(self) -> None:
        """Install what the driver needs (nftables table, RADIUS listener); idempotent."""
        ...

    async def stop(self) -> None:
        """Remove what start() installed."""
        ...

    async def identify(self, request: web.Request) -> Device | None:
        """The device a portal request comes from, from a trusted source; None if unknown."""
        ...

    async def allow(self, device: Device, grant: Grant) -> str | None:
        """Let the device through. Returns a URL the guest's browser must open to finish
        (openNDS auth, an external gateway's login), or None when access is already open."""
        ...

    async def revoke(self, device: Device) -> None: ...

    async def status(self, device: Device) -> DeviceStatus: ...

    def portal_routes(self) -> web.RouteTableDef | None:
        """Routes the gateway itself calls on the portal listener (openNDS authmon), if any."""
        ...

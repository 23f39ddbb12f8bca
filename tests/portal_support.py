"""Helpers for the guest portal's tests: a configured portal on a migrated database, an SMS sender
double for the logic tests, a gateway double that records what it was asked, and a guest's browser
walking through the sign-in forms."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from appliance.bus import EventBus
from appliance.config import Config, parse_config
from appliance.portal.gateways.base import Device, DeviceStatus, Gateway, GatewayError, Grant
from appliance.portal.identify import IdentificationService
from appliance.portal.sms.base import Sent, SmsError
from appliance.portal.system import PortalSystem, build_portal
from appliance.storage.db import create_engine, make_sessionmaker
from appliance.storage.guests import DeviceKey, NewSession
from appliance.storage.migrate import upgrade
from tests.web_support import csrf_token

Client = TestClient[Any, Any]

PHONE = "+79161234567"
OTHER_PHONE = "+79169876543"
CODE_IN_TEXT = re.compile(r"\b(\d{4,8})\b")


def portal_config(
    tmp_path: Path, *, db_url: str | None = None, name: str = "Магазин у дома", **sections: Any
) -> Config:
    """A config with SQLite in tmp_path (or `db_url`); `sections` are merged into [portal]."""
    portal: dict[str, Any] = {"login": {}, **sections}
    return parse_config(
        {
            "appliance": {"data_dir": str(tmp_path), "name": name},
            "database": {"url": db_url or f"sqlite+aiosqlite:///{tmp_path / 'appliance.db'}"},
            "portal": portal,
        }
    )


@asynccontextmanager
async def portal_system(cfg: Config, bus: EventBus | None = None) -> AsyncIterator[PortalSystem]:
    engine = create_engine(cfg.database_url)
    try:
        await upgrade(engine)
        system = await build_portal(cfg, make_sessionmaker(engine), bus or EventBus())
        try:
            yield system
        finally:
            if system.sms is not None:
                await system.sms.close()
    finally:
        await engine.dispose()


def log_session(
    session_id: str, guest_id: int, start: datetime, device: DeviceKey, gateway: str = "nftables"
) -> NewSession:
    """An identification log row as the portal opens it for an SMS login lasting four hours."""
    return NewSession(
        session_id=session_id,
        guest_id=guest_id,
        method="sms",
        relogin=False,
        device=device,
        gateway=gateway,
        gateway_ref=None,
        provider_id=None,
        consent_version="v1",
        promotions_consent=False,
        start_utc=start,
        expires_utc=start + timedelta(hours=4),
    )


@dataclass
class CapturingSms:
    """An SMS sender double for the logic tests: keeps what it was asked to send, or fails."""

    name: str = "capture"
    sent: list[tuple[str, str]] = field(default_factory=list)
    failure: SmsError | None = None

    async def send(self, phone_e164: str, text: str) -> Sent:
        if self.failure is not None:
            raise self.failure
        self.sent.append((phone_e164, text))
        return Sent(provider_id=f"id-{len(self.sent)}")

    async def close(self) -> None:
        return None

    def last_code(self, phone: str = PHONE) -> str:
        texts = [t for p, t in self.sent if p == phone]
        assert texts, f"no SMS went to {phone}"
        match = CODE_IN_TEXT.search(texts[-1])
        assert match is not None
        return match.group(1)


@dataclass
class RecordingGateway:
    """A gateway double for the logic tests: says which device asks (from the TCP peer, with a MAC
    per address as a neighbour table would) and records what it is told."""

    name: str = "recording"
    macs: dict[str, str] = field(default_factory=dict)
    allowed: dict[str, Grant] = field(default_factory=dict)
    revoked: list[Device] = field(default_factory=list)
    refuse: bool = False
    authorised: bool = True
    counters: tuple[int, int] = (0, 0)
    finish_url: str | None = None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def identify(self, request: web.Request) -> Device | None:
        ip = request.remote or ""
        mac = self.macs.get(ip)
        return Device(mac=mac, ip=ip) if mac else None

    async def allow(self, device: Device, grant: Grant) -> str | None:
        if self.refuse:
            raise GatewayError("the test gateway refuses")
        self.allowed[device.mac] = grant
        return self.finish_url

    async def revoke(self, device: Device) -> None:
        self.revoked.append(device)
        self.allowed.pop(device.mac, None)

    async def status(self, device: Device) -> DeviceStatus:
        return DeviceStatus(device, self.authorised, None, *self.counters)

    def portal_routes(self) -> web.RouteTableDef | None:
        return None


@dataclass
class Clocks:
    """Time for the identification service, moved by the test (wall clock and the limits' clock)."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    mono: float = 1000.0

    def wait(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


def clocked(system: PortalSystem, clocks: Clocks, gateway: Gateway | None = None) -> IdentificationService:
    """The system's identification service again, on the test's clocks (limits start afresh), and
    with `gateway` in place of the configured one if given."""
    old = system.identification
    if gateway is not None:
        system.gateway = gateway
    system.identification = IdentificationService(
        old.settings,
        codes=old.codes,
        budget=old.budget,
        guests=old.guests,
        gateway=system.gateway,
        hasher=old.hasher,
        bus=old.bus,
        tz=old.tz,
        consent_version=old.consent_version,
        sms=old.sms,
        vouchers=old.vouchers,
        external=old.external,
        clock=lambda: clocks.now,
        monotonic=lambda: clocks.mono,
    )
    return system.identification


class Guest:
    """A guest's browser on the portal: opens pages and sends the forms with their CSRF token."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def open(self, path: str = "/", **kwargs: Any) -> str:
        resp = await self.client.get(path, **kwargs)
        self.last_status = resp.status
        return await resp.text()

    async def post(self, path: str, data: dict[str, str], *, page: str = "/", **kwargs: Any) -> Any:
        """Send a form found on `page` (for its CSRF token); redirects are not followed."""
        token = csrf_token(await self.open(page))
        return await self.client.post(path, data={"csrf_token": token, **data}, allow_redirects=False, **kwargs)

    async def ask_code(self, phone: str = PHONE, **extra: str) -> Any:
        return await self.post("/login/phone", {"phone": phone, "consent_pd": "yes", **extra})

    async def enter_code(self, code: str) -> Any:
        return await self.post("/login/code", {"code": code}, page="/login/code")

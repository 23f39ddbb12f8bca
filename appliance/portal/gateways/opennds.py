"""The `opennds` gateway driver: this box is the FAS (forwarding authentication service) of an
OpenWrt router running openNDS (formats in opennds_fas.py).

- Level 1: the router redirects the guest here with base64 parameters. Only `hid` matters for
  access: the portal answers with `tok = sha256(hid + faskey)` in the router's auth address, and
  the router lets in only the client holding that hid. The MAC and IP in the query are the
  router's word relayed by the browser, unauthenticated: a guest can change what the portal
  logs, not which device gets through. Use level 3 for a log the router vouches for.
- Level 3: the parameters come encrypted with faskey, so the MAC and IP are the router's. The
  browser is not sent anywhere: the router's authmon daemon polls the portal (POST to fas_path)
  for the clients to let in, and acknowledges each one it authenticated.

openNDS takes no orders from the FAS to end a session (that is `ndsctl deauth` on the router), so
revoking here cannot cut a guest off; the router's session timeout does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import quote

from aiohttp import web

from appliance.logs import SECRETS
from appliance.portal.gateways.base import Device, DeviceStatus, GatewayError, Grant
from appliance.portal.gateways.opennds_fas import (
    HID_PATTERN,
    FasError,
    FasParams,
    acked_rhids,
    auth_list,
    authmon_entry,
    decode_level1,
    decrypt_level3,
    rhid,
)
from appliance.portal.gateways.settings import OpenNdsSettings

log = logging.getLogger(__name__)

PENDING_MAX: Final = 2000
"""Level 3 authorisations waiting for the router at once (a shop's router serves a few hundred guests)."""
MAX_PAYLOAD_BYTES: Final = 16 * 1024


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Pending:
    entry: str
    mac: str
    collected: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class _Granted:
    device: Device
    expires_utc: datetime


class OpenNdsGateway:
    name = "opennds"

    def __init__(self, settings: OpenNdsSettings, *, clock: Callable[[], datetime] = _utcnow) -> None:
        problems = settings.problems()
        if problems:
            raise GatewayError("; ".join(problems))
        assert settings.faskey is not None, "problems() reports a missing faskey"
        self._settings = settings
        self._faskey = settings.faskey.get_secret_value()
        SECRETS.add(self._faskey)
        self._clock = clock
        host = settings.gateway_address.rsplit(":", 1)[0]
        try:
            default_sources = [ipaddress.ip_network(host)]
        except ValueError:
            default_sources = []
        self._authmon_sources = list(settings.authmon_sources) or default_sources
        self._pending: dict[str, _Pending] = {}
        self._granted: dict[str, _Granted] = {}
        self._warned_idle = False

    async def start(self) -> None:
        """Nothing to install: the router does the filtering."""

    async def stop(self) -> None:
        self._pending.clear()

    # ----------------------------------------------------------------- portal's side ---

    async def identify(self, request: web.Request) -> Device | None:
        fas = request.query.get("fas")
        if fas is None:
            return None
        try:
            params = self._decode(fas, request.query.get("iv", ""))
        except FasError as exc:
            log.warning(
                "openNDS parameters refused; check fas_secure_enabled and faskey on the router and in "
                "portal.gateway.opennds",
                extra={"reason": str(exc), "level": self._settings.fas_secure_enabled},
            )
            return None
        if params.gatewayaddress != self._settings.gateway_address:
            log.warning(
                "openNDS parameters name another router; if it is one of yours, set "
                "portal.gateway.opennds.gateway_address to it",
                extra={"gatewayaddress": params.gatewayaddress},
            )
            return None
        return Device(mac=params.clientmac, ip=params.clientip, gateway_ref=params.hid)

    def _decode(self, fas: str, iv: str) -> FasParams:
        if self._settings.fas_secure_enabled == 1:
            return decode_level1(fas)
        return decrypt_level3(fas, iv, self._faskey)

    async def allow(self, device: Device, grant: Grant) -> str | None:
        hid = device.gateway_ref or ""
        if not HID_PATTERN.match(hid):
            raise GatewayError(
                "this device did not come through the openNDS router's redirect; open any web page on the "
                "guest Wi-Fi to get the login page again"
            )
        tok = rhid(hid, self._faskey)
        self._warn_idle_timeout()
        if self._settings.fas_secure_enabled == 1:
            self._granted[device.mac] = _Granted(device, self._clock() + timedelta(seconds=grant.session_timeout_s))
            s = self._settings
            return f"http://{s.gateway_address}/{s.authdir}/?tok={tok}&redir={quote(s.landing_url, safe='')}"
        await self._wait_for_authmon(tok, device, grant)
        self._granted[device.mac] = _Granted(device, self._clock() + timedelta(seconds=grant.session_timeout_s))
        return None

    async def _wait_for_authmon(self, tok: str, device: Device, grant: Grant) -> None:
        if len(self._pending) >= PENDING_MAX and tok not in self._pending:
            raise GatewayError("too many logins are waiting for the router; try again in a minute")
        custom = base64.b64encode(f"session={grant.session_id}".encode()).decode()
        pending = self._pending.setdefault(tok, _Pending(authmon_entry(tok, grant, custom), device.mac))
        wait_s = self._settings.authmon_wait_s
        try:
            await asyncio.wait_for(pending.collected.wait(), wait_s)
        except TimeoutError:
            raise GatewayError(
                f"the router did not collect the login within {wait_s:g} s; check that openNDS runs with "
                f"fas_secure_enabled 3, that its faspath is {self._settings.fas_path} and that it reaches the "
                "portal over https"
            ) from None
        finally:
            self._pending.pop(tok, None)

    def _warn_idle_timeout(self) -> None:
        if not self._warned_idle:
            self._warned_idle = True
            log.info(
                "openNDS applies its own idle timeout (authidletimeout on the router), not the portal's"
                + ("; at level 1 the session length is the router's sessiontimeout too" if self._level1 else "")
            )

    @property
    def _level1(self) -> bool:
        return self._settings.fas_secure_enabled == 1

    async def revoke(self, device: Device) -> None:
        self._granted.pop(device.mac, None)
        for tok in [t for t, p in self._pending.items() if p.mac == device.mac]:
            del self._pending[tok]
        raise GatewayError(
            "openNDS does not let the portal end a session: the guest keeps access until the router's session "
            f"timeout; to cut it off now, run `ndsctl deauth {device.mac}` on the router"
        )

    async def status(self, device: Device) -> DeviceStatus:
        """As far as the portal knows: the router counts the traffic and may end the session earlier."""
        granted = self._granted.get(device.mac)
        if granted is None or granted.expires_utc <= self._clock():
            return DeviceStatus(device=device, authorised=False)
        return DeviceStatus(device=device, authorised=True, expires_utc=granted.expires_utc)

    # ---------------------------------------------------------------- router's side ---

    def portal_routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()
        routes.get(self._settings.fas_path)(self._from_router)
        routes.post(self._settings.fas_path)(self._authmon)
        return routes

    async def _from_router(self, request: web.Request) -> web.StreamResponse:
        # The router's redirect lands here; the login page identifies the device from the same query.
        query = request.rel_url.raw_query_string
        raise web.HTTPFound(location="/?" + query if query else "/")

    async def _authmon(self, request: web.Request) -> web.StreamResponse:
        if not self._from_authmon_source(request.remote):
            log.warning(
                "authmon request from an address that is not the router refused", extra={"source": request.remote}
            )
            return web.Response(status=403, text="forbidden")
        form = await request.post()
        action, gatewayhash = form.get("auth_get"), form.get("gatewayhash")
        if not isinstance(action, str) or not isinstance(gatewayhash, str) or not HID_PATTERN.match(gatewayhash):
            return web.Response(status=400, text="invalid request")
        payload = _payload(form.get("payload"))
        if action == "clear":
            # openNDS (re)started: what it had not collected is for clients it no longer knows.
            self._pending.clear()
            return web.Response(text="")
        if action in ("deauthed", "custom"):
            log.info("openNDS notice", extra={"action": action, "notice": payload[:200]})
            return web.Response(text="ack")
        if action == "list":
            entries = [p.entry for p in self._pending.values()]
            for pending in self._pending.values():
                pending.collected.set()
            return web.Response(text=auth_list(entries))
        if action == "view":
            if payload.strip() in ("", "none"):
                return web.Response(text=auth_list([p.entry for p in self._pending.values()]))
            for tok in acked_rhids(payload):
                if (acked := self._pending.get(tok)) is not None:
                    acked.collected.set()
            return web.Response(text="ack")
        return web.Response(status=400, text="unknown auth_get")

    def _from_authmon_source(self, remote: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(remote or "")
        except ValueError:
            return False
        return any(ip in net for net in self._authmon_sources)


def _payload(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_PAYLOAD_BYTES:
        return ""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return ""

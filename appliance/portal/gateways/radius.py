"""The `radius` gateway driver: this box is the RADIUS server of a gateway that has an external
portal (MikroTik hotspot, CoovaChilli, pfSense, ZyXEL).

How a guest gets through, and why a lie does not help:
1. The gateway redirects the guest's browser to the portal with the device's MAC (and IP) in the
   query. The browser could have changed them, so `identify` returns them only as a claim.
2. Once the guest is identified, `allow` issues a one-time login bound to that claimed MAC and
   sends the browser to the gateway's login address with it.
3. The gateway asks here (Access-Request) with the login and the MAC it sees itself
   (Calling-Station-Id). The login is accepted only from the MAC it was issued for: a guest who
   lied about the MAC gets a login that works for nobody, or only for the device that really
   has that MAC, which is the device the identification log names.
4. The gateway reports each session's time and traffic (Accounting-Request), stored against the
   identification log row: the volume-and-time record Decree 758 asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from importlib import resources
from typing import Final
from urllib.parse import quote

from aiohttp import web
from pyrad import packet
from pyrad.dictionary import Dictionary
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.logs import SECRETS
from appliance.portal.gateways.addresses import normalise_ip, normalise_mac
from appliance.portal.gateways.base import Device, DeviceStatus, GatewayError, Grant
from appliance.portal.gateways.radius_attributes import accept_attributes
from appliance.portal.gateways.radius_coa import DisconnectError, disconnect
from appliance.portal.gateways.radius_server import Kind, Nas, NasTable, RadiusEndpoint
from appliance.portal.gateways.settings import LOGIN_URL_PLACEHOLDER, RadiusSettings
from appliance.storage.models_gateway import (
    ACCT_INTERIM,
    ACCT_OFF,
    ACCT_ON,
    ACCT_SESSION_ID_MAX_LENGTH,
    ACCT_START,
    ACCT_STOP,
    NAS_IDENTIFIER_MAX_LENGTH,
    TERMINATE_CAUSE_MAX_LENGTH,
    USERNAME_MAX_LENGTH,
)
from appliance.storage.models_guests import END_GATEWAY, END_LOGOUT, END_SESSION_TIMEOUT
from appliance.storage.radius import AccountingReport, RadiusStore
from appliance.web.i18n import Lang, Text

log = logging.getLogger(__name__)

PURGE_INTERVAL_S: Final = 3600.0
CHALLENGE_HEX_LENGTH: Final = 32
"""CoovaChilli's challenge: 16 random bytes as hex."""

REJECT_MESSAGE = Text(
    "Вход не выполнен. Откройте страницу Wi-Fi и войдите ещё раз.",
    "Login failed. Open the Wi-Fi page and log in again.",
)

ACCT_STATUS: Final[dict[str, str]] = {
    "Start": ACCT_START,
    "Interim-Update": ACCT_INTERIM,
    "Stop": ACCT_STOP,
    "Accounting-On": ACCT_ON,
    "Accounting-Off": ACCT_OFF,
}

LOG_END_REASONS: Final[dict[str, str]] = {
    "Session-Timeout": END_SESSION_TIMEOUT,
    "User-Request": END_LOGOUT,
}
"""Acct-Terminate-Cause (RFC 2866) as the identification log's end reason; any other cause (idle
timeout, quota, lost carrier, the gateway's restart or an administrator) is the gateway's doing."""


def log_end_reason(terminate_cause: str | None) -> str:
    return LOG_END_REASONS.get(terminate_cause or "", END_GATEWAY)


def load_dictionary() -> Dictionary:
    source = resources.files("appliance.portal.gateways").joinpath("radius_dictionary")
    with resources.as_file(source) as path:
        return Dictionary(str(path))


def chilli_password(password: str, challenge_hex: str, uam_secret: str | None) -> str:
    """The password as CoovaChilli's /logon expects it: XOR-ed with the challenge of its redirect
    (MD5-mixed with uamsecret when one is set), in hex. CoovaChilli reverses it and asks here by PAP."""
    challenge = bytes.fromhex(challenge_hex)
    key = hashlib.md5(challenge + uam_secret.encode(), usedforsecurity=False).digest() if uam_secret else challenge
    plain = password.encode()
    stream = (key * (len(plain) // len(key) + 1))[: len(plain)]
    return bytes(a ^ b for a, b in zip(plain, stream, strict=True)).hex()


def _first(request: packet.Packet, name: str) -> object | None:
    values = request.get(name)
    return values[0] if values else None


def _text(request: packet.Packet, name: str, limit: int) -> str | None:
    value = _first(request, name)
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value)[:limit]


def _int(request: packet.Packet, name: str) -> int:
    value = _first(request, name)
    return value if isinstance(value, int) else 0


def _octets(request: packet.Packet, low: str, high: str) -> int:
    return _int(request, low) + (_int(request, high) << 32)


def accounting_report(request: packet.AcctPacket, nas: Nas, source: str) -> AccountingReport | None:
    """What an Accounting-Request says, in the form it is stored; None for statuses not stored."""
    status = ACCT_STATUS.get(str(_first(request, "Acct-Status-Type")))
    if status is None:
        return None
    mac_text = _text(request, "Calling-Station-Id", 64)
    ip_text = _text(request, "Framed-IP-Address", 64)
    event = _int(request, "Event-Timestamp")
    return AccountingReport(
        nas_name=nas.name,
        nas_address=source,
        nas_identifier=_text(request, "NAS-Identifier", NAS_IDENTIFIER_MAX_LENGTH),
        status=status,
        acct_session_id=_text(request, "Acct-Session-Id", ACCT_SESSION_ID_MAX_LENGTH) or "",
        username=_text(request, "User-Name", USERNAME_MAX_LENGTH),
        mac=None if mac_text is None else normalise_mac(mac_text),
        ip=None if ip_text is None else normalise_ip(ip_text),
        input_octets=_octets(request, "Acct-Input-Octets", "Acct-Input-Gigawords"),
        output_octets=_octets(request, "Acct-Output-Octets", "Acct-Output-Gigawords"),
        session_time_s=_int(request, "Acct-Session-Time"),
        terminate_cause=_text(request, "Acct-Terminate-Cause", TERMINATE_CAUSE_MAX_LENGTH),
        event_utc=datetime.fromtimestamp(event, UTC) if event else None,
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RadiusGateway:
    name = "radius"

    def __init__(
        self,
        settings: RadiusSettings,
        sessions: async_sessionmaker[AsyncSession],
        *,
        locale: Lang,
        retention_days: int,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        problems = settings.problems()
        if problems:
            raise GatewayError("; ".join(problems))
        self._settings = settings
        self._store = RadiusStore(sessions)
        self._nases = NasTable([Nas.from_settings(c) for c in settings.clients])
        self._dictionary = load_dictionary()
        self._reject_message = REJECT_MESSAGE.get(locale)
        self._retention = timedelta(days=retention_days)
        self._clock = clock
        self._uam_secret = None if settings.uam_secret is None else settings.uam_secret.get_secret_value()
        SECRETS.add(*(c.secret.get_secret_value() for c in settings.clients if c.secret is not None))
        if self._uam_secret is not None:
            SECRETS.add(self._uam_secret)
        self._endpoints: list[RadiusEndpoint] = []
        self._purger: asyncio.Task[None] | None = None
        self._warned_not_expressed: set[str] = set()

    # ------------------------------------------------------------------------ lifecycle ---

    async def start(self) -> None:
        if self._endpoints:
            return
        loop = asyncio.get_running_loop()
        s = self._settings
        ports: tuple[tuple[Kind, int], ...] = (("auth", s.auth_port), ("acct", s.acct_port))
        try:
            for kind, port in ports:
                _, endpoint = await loop.create_datagram_endpoint(
                    partial(RadiusEndpoint, kind, self._nases, self._dictionary, self._on_access, self._on_accounting),
                    local_addr=(s.host, port),
                )
                self._endpoints.append(endpoint)
        except OSError as exc:
            await self.stop()
            raise GatewayError(
                f"cannot receive RADIUS on {s.host}:{port} ({exc.strerror}); another program (a RADIUS server?) "
                f"uses the port or the address is not this box's: change portal.gateway.radius.host / "
                f"{kind}_port"
            ) from None
        self._purger = asyncio.create_task(self._purge_loop(), name="radius-purge")
        log.info(
            "RADIUS server listening",
            extra={"host": s.host, "auth_port": s.auth_port, "acct_port": s.acct_port, "dialect": s.dialect},
        )

    async def stop(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None
        endpoints, self._endpoints = self._endpoints, []
        for endpoint in endpoints:
            await endpoint.close()

    async def _purge_loop(self) -> None:
        while True:
            try:
                deleted = await self._store.purge(self._clock() - self._retention)
            except (OSError, SQLAlchemyError) as exc:
                log.warning("old RADIUS records not purged; retrying in an hour", extra={"error": str(exc)})
            else:
                if deleted:
                    log.info("old RADIUS logins and accounting deleted", extra={"rows": deleted})
            await asyncio.sleep(PURGE_INTERVAL_S)

    # ----------------------------------------------------------------- portal's side ---

    async def identify(self, request: web.Request) -> Device | None:
        """The device the gateway's redirect names: a claim, checked by the gateway's own
        Calling-Station-Id when the login comes back (see the module's description)."""
        mac = normalise_mac(request.query.get("mac", ""))
        if mac is None:
            return None
        challenge = request.query.get("challenge", "").lower()
        valid_challenge = len(challenge) == CHALLENGE_HEX_LENGTH and all(c in "0123456789abcdef" for c in challenge)
        return Device(
            mac=mac,
            ip=normalise_ip(request.query.get("ip", "")) or "",
            gateway_ref=challenge if valid_challenge else None,
        )

    async def allow(self, device: Device, grant: Grant) -> str:
        chilli = self._settings.password_encoding == "chilli"  # noqa: S105 - a setting's name, not a password
        if chilli and device.gateway_ref is None:
            raise GatewayError(
                "CoovaChilli's redirect carried no challenge, so its login cannot be built; "
                "open the Wi-Fi page again through the gateway's redirect"
            )
        valid_until = self._clock() + timedelta(seconds=self._settings.login_ttl_s)
        login = await self._store.issue(device.mac, device.ip or None, grant, valid_until=valid_until)
        password = login.password
        if chilli and device.gateway_ref is not None:
            password = chilli_password(password, device.gateway_ref, self._uam_secret)
        values = {
            "username": login.username,
            "password": password,
            "mac": device.mac,
            "ip": device.ip,
            "landing": self._settings.landing_url,
        }
        log.info("RADIUS login issued", extra={"username": login.username, "mac": device.mac})
        return LOGIN_URL_PLACEHOLDER.sub(lambda m: quote(values[m[1]], safe=""), self._settings.login_url)

    async def revoke(self, device: Device) -> None:
        revoked = await self._store.revoke(device.mac, self._clock())
        problems = []
        for login in revoked:
            nas = None if login.nas_name is None else self._nases.by_name(login.nas_name)
            if nas is None or nas.coa_port is None or login.nas_address is None:
                log.info(
                    "RADIUS login revoked; the gateway ends the access at its session or idle timeout",
                    extra={"username": login.username},
                )
                continue
            attributes = {"User-Name": login.username}
            if login.acct_session_id:
                attributes["Acct-Session-Id"] = login.acct_session_id
            if login.ip:
                attributes["Framed-IP-Address"] = login.ip
            try:
                await disconnect(
                    login.nas_address,
                    nas.coa_port,
                    nas.secret,
                    self._dictionary,
                    attributes,
                    self._settings.coa_timeout_s,
                )
            except (DisconnectError, OSError) as exc:
                problems.append(f"{nas.name}: {exc}")
            else:
                log.info("guest disconnected by the gateway", extra={"username": login.username, "nas": nas.name})
        if problems:
            raise GatewayError(
                "the login is revoked, but the gateway did not confirm ending the session now ("
                + "; ".join(problems)
                + "); the guest keeps access until the session or idle timeout. Check coa_port in "
                "portal.gateway.radius.clients and that the gateway accepts Disconnect-Requests from this box"
            )

    async def status(self, device: Device) -> DeviceStatus:
        st = await self._store.status(device.mac, self._clock())
        # RADIUS counts from the gateway's side of the guest: Output is what the guest downloaded.
        return DeviceStatus(
            device=device,
            authorised=st.authorised,
            expires_utc=st.expires_utc,
            bytes_in=st.output_octets,
            bytes_out=st.input_octets,
        )

    def portal_routes(self) -> web.RouteTableDef | None:
        return None

    # ---------------------------------------------------------------- gateway's side ---

    async def _on_access(self, request: packet.AuthPacket, nas: Nas, source: str) -> packet.Packet:
        reply = request.CreateReply()
        username = _text(request, "User-Name", USERNAME_MAX_LENGTH)
        hidden = request.get(2)
        mac_text = _text(request, "Calling-Station-Id", 64)
        mac = None if mac_text is None else normalise_mac(mac_text)
        if username is None or not hidden:
            reason = "CHAP or no password: set the gateway to PAP" if request.get(3) else "no user name or password"
            return self._reject(reply, nas, username, mac, reason)
        try:
            password = request.PwDecrypt(hidden[0])
        except packet.PacketError:
            return self._reject(reply, nas, username, mac, "malformed User-Password")
        decision = await self._store.authorise(username, password, mac, nas.name, source, self._clock())
        if decision.grant is None:
            return self._reject(reply, nas, username, mac, str(decision.refusal))
        accept = accept_attributes(decision.grant, self._settings.dialect, interim_s=self._settings.acct_interim_s)
        self._warn_not_expressed(accept.not_expressed)
        reply.code = packet.AccessAccept
        for name, value in accept.attributes:
            reply.AddAttribute(name, value)
        log.info(
            "RADIUS login accepted",
            extra={"username": username, "mac": mac, "nas": nas.name, "session_id": decision.session_id},
        )
        return reply

    def _reject(
        self, reply: packet.Packet, nas: Nas, username: str | None, mac: str | None, reason: str
    ) -> packet.Packet:
        log.info("RADIUS login refused", extra={"reason": reason, "username": username, "mac": mac, "nas": nas.name})
        reply.code = packet.AccessReject
        reply["Reply-Message"] = self._reject_message
        return reply

    def _warn_not_expressed(self, parts: tuple[str, ...]) -> None:
        for part in parts:
            if part not in self._warned_not_expressed:
                self._warned_not_expressed.add(part)
                log.warning(
                    f"the guests' {part} limit is not enforced: the '{self._settings.dialect}' attributes cannot "
                    "carry it; choose the dialect of your gateway in portal.gateway.radius.dialect"
                )

    async def _on_accounting(self, request: packet.AcctPacket, nas: Nas, source: str) -> None:
        report = accounting_report(request, nas, source)
        if report is None:
            log.info("RADIUS accounting of an unstored kind acknowledged", extra={"nas": nas.name})
            return
        session_id = await self._store.record(report, self._clock(), end_reason=log_end_reason(report.terminate_cause))
        if session_id is None and report.status in (ACCT_START, ACCT_INTERIM, ACCT_STOP):
            log.warning(
                "RADIUS accounting for a login this portal did not issue stored without a guest",
                extra={"nas": nas.name, "username": report.username, "acct_session_id": report.acct_session_id},
            )

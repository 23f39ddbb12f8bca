"""One-time RADIUS logins and the gateways' accounting (tables of models_gateway.py).

A login is random (a 64-bit name, a 96-bit password) and bound to the MAC address of the device
it was issued for. Its password is stored as SHA-256: it is a random token, not something a
person chose, so a slow hash (argon2) would only cost CPU on every Access-Request without
making a stolen table any more useful.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.portal.gateways.base import Grant
from appliance.storage.guests import GatewayReport, apply_gateway_report
from appliance.storage.models_gateway import (
    ACCT_INTERIM,
    ACCT_OFF,
    ACCT_ON,
    ACCT_START,
    ACCT_STOP,
    RadiusAccounting,
    RadiusLogin,
)


class Refusal(StrEnum):
    """Why an Access-Request was refused (logged, never told to the guest in detail)."""

    UNKNOWN = "unknown login"
    PASSWORD = "wrong password"  # noqa: S105 - a reason, not a password
    MAC = "login presented from another device"
    EXPIRED = "login not used in time"
    REVOKED = "login revoked"
    ENDED = "session over"


@dataclass(frozen=True)
class IssuedLogin:
    username: str
    password: str
    """In clear only here, on its way to the guest's browser."""


@dataclass(frozen=True)
class Decision:
    grant: Grant | None
    """What is left of the login's grant when accepted; None when refused."""
    refusal: Refusal | None
    session_id: str | None


@dataclass(frozen=True)
class AccountingReport:
    nas_name: str
    nas_address: str
    nas_identifier: str | None
    status: str
    acct_session_id: str
    username: str | None
    mac: str | None
    ip: str | None
    input_octets: int
    output_octets: int
    session_time_s: int
    terminate_cause: str | None
    event_utc: datetime | None


@dataclass(frozen=True)
class RevokedLogin:
    """A login that was revoked, and where its session (if the gateway reported one) lives."""

    username: str
    mac: str
    nas_name: str | None
    nas_address: str | None
    acct_session_id: str | None
    ip: str | None


@dataclass(frozen=True)
class LoginStatus:
    authorised: bool
    expires_utc: datetime | None
    input_octets: int
    output_octets: int


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def _grant(login: RadiusLogin, session_timeout_s: int) -> Grant:
    return Grant(
        session_id=login.session_id,
        session_timeout_s=session_timeout_s,
        idle_timeout_s=login.idle_timeout_s,
        down_kbit_s=login.down_kbit_s,
        up_kbit_s=login.up_kbit_s,
        quota_bytes=login.quota_bytes,
    )


def session_end(login: RadiusLogin) -> datetime | None:
    if login.first_used_utc is None:
        return None
    return login.first_used_utc + timedelta(seconds=login.session_timeout_s)


def judge(login: RadiusLogin, password: str, mac: str | None, now: datetime) -> Refusal | int:
    """The seconds of access left for this Access-Request, or why it is refused.

    Once used, a login keeps working for the same device until its session ends: the gateway
    re-authenticates (roaming, a retransmitted request whose answer was lost) with the same
    credentials, and must get the same answer.
    """
    if not hmac.compare_digest(_digest(password), login.password_sha256):
        return Refusal.PASSWORD
    if mac is None or not hmac.compare_digest(mac, login.mac):
        return Refusal.MAC
    if login.revoked_utc is not None:
        return Refusal.REVOKED
    end = session_end(login)
    if end is None:
        return login.session_timeout_s if now <= login.valid_until else Refusal.EXPIRED
    left = int((end - now).total_seconds())
    return left if left > 0 else Refusal.ENDED


class RadiusStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def issue(self, mac: str, ip: str | None, grant: Grant, *, valid_until: datetime) -> IssuedLogin:
        login = IssuedLogin(username=f"g{secrets.token_hex(8)}", password=secrets.token_urlsafe(12))
        async with self._sessions.begin() as s:
            s.add(
                RadiusLogin(
                    username=login.username,
                    password_sha256=_digest(login.password),
                    mac=mac,
                    ip=ip,
                    session_id=grant.session_id,
                    session_timeout_s=grant.session_timeout_s,
                    idle_timeout_s=grant.idle_timeout_s,
                    down_kbit_s=grant.down_kbit_s,
                    up_kbit_s=grant.up_kbit_s,
                    quota_bytes=grant.quota_bytes,
                    valid_until=valid_until,
                )
            )
        return login

    async def authorise(
        self, username: str, password: str, mac: str | None, nas_name: str, nas_address: str, now: datetime
    ) -> Decision:
        async with self._sessions.begin() as s:
            login = await s.scalar(select(RadiusLogin).where(RadiusLogin.username == username).with_for_update())
            if login is None:
                return Decision(None, Refusal.UNKNOWN, None)
            verdict = judge(login, password, mac, now)
            if isinstance(verdict, Refusal):
                return Decision(None, verdict, login.session_id)
            if login.first_used_utc is None:
                login.first_used_utc = now
            login.nas_name, login.nas_address = nas_name, nas_address
            return Decision(_grant(login, verdict), None, login.session_id)

    async def record(self, report: AccountingReport, now: datetime, *, end_reason: str | None = None) -> str | None:
        """Store one accounting report and carry its traffic (and, for a Stop, `end_reason` and the
        time) into the identification log row of its login, in one transaction: the log shows the
        time and volume the gateway measured. Returns the session id of the login (None if unknown)."""
        async with self._sessions.begin() as s:
            session_id = None
            if report.username is not None:
                session_id = await s.scalar(
                    select(RadiusLogin.session_id).where(RadiusLogin.username == report.username)
                )
            s.add(
                RadiusAccounting(
                    received_utc=now,
                    event_utc=report.event_utc,
                    nas_name=report.nas_name,
                    nas_address=report.nas_address,
                    nas_identifier=report.nas_identifier,
                    status=report.status,
                    acct_session_id=report.acct_session_id,
                    username=report.username,
                    session_id=session_id,
                    mac=report.mac,
                    ip=report.ip,
                    input_octets=report.input_octets,
                    output_octets=report.output_octets,
                    session_time_s=report.session_time_s,
                    terminate_cause=report.terminate_cause,
                )
            )
            if session_id is not None and report.status in (ACCT_START, ACCT_INTERIM, ACCT_STOP):
                # The gateway's own clock may be off: never later than the report arrived.
                end_utc = min(report.event_utc or now, now)
                usage = GatewayReport(
                    # The gateway counts from its side: its output is what the guest downloaded.
                    bytes_in=report.output_octets,
                    bytes_out=report.input_octets,
                    end_reason=end_reason if report.status == ACCT_STOP else None,
                    end_utc=end_utc,
                )
                await apply_gateway_report(s, session_id, usage)
        return session_id

    async def _latest_report(self, s: AsyncSession, username: str) -> RadiusAccounting | None:
        return await s.scalar(
            select(RadiusAccounting)
            .where(RadiusAccounting.username == username)
            .order_by(RadiusAccounting.received_utc.desc(), RadiusAccounting.id.desc())
            .limit(1)
        )

    async def revoke(self, mac: str, now: datetime) -> list[RevokedLogin]:
        """Revoke every login of the device that could still let it in; returns them."""
        async with self._sessions.begin() as s:
            logins = (
                await s.scalars(select(RadiusLogin).where(RadiusLogin.mac == mac, RadiusLogin.revoked_utc.is_(None)))
            ).all()
            out = []
            for login in logins:
                end = session_end(login)
                if (end or login.valid_until) <= now:
                    continue
                login.revoked_utc = now
                report = await self._latest_report(s, login.username)
                out.append(
                    RevokedLogin(
                        username=login.username,
                        mac=login.mac,
                        nas_name=login.nas_name,
                        nas_address=login.nas_address,
                        acct_session_id=None if report is None else report.acct_session_id,
                        ip=None if report is None else report.ip,
                    )
                )
            return out

    async def status(self, mac: str, now: datetime) -> LoginStatus:
        """The device's latest login: open or not, until when, and its traffic so far. A login not
        yet presented to the gateway counts as open while it may still be: the guest's browser is
        on its way to the gateway's login page."""
        async with self._sessions() as s:
            login = await s.scalar(
                select(RadiusLogin)
                .where(RadiusLogin.mac == mac)
                .order_by(RadiusLogin.created_utc.desc(), RadiusLogin.id.desc())
                .limit(1)
            )
            if login is None:
                return LoginStatus(False, None, 0, 0)
            if login.first_used_utc is None:
                return LoginStatus(login.revoked_utc is None and now <= login.valid_until, None, 0, 0)
            report = await self._latest_report(s, login.username)
            # A gateway that restarted (Accounting-On/Off) has dropped every session it had.
            restarted = await s.scalar(
                select(RadiusAccounting.id)
                .where(
                    RadiusAccounting.nas_name == login.nas_name,
                    RadiusAccounting.status.in_((ACCT_ON, ACCT_OFF)),
                    RadiusAccounting.received_utc >= login.first_used_utc,
                )
                .limit(1)
            )
        end = session_end(login)
        stopped = restarted is not None or (report is not None and report.status == ACCT_STOP)
        open_ = login.revoked_utc is None and not stopped and end is not None and end > now
        inp, out = (0, 0) if report is None else (report.input_octets, report.output_octets)
        return LoginStatus(open_, end, inp, out)

    async def purge(self, before: datetime) -> int:
        """Delete logins and accounting older than `before` (the identification log's retention)."""
        async with self._sessions.begin() as s:
            acct = await s.execute(delete(RadiusAccounting).where(RadiusAccounting.received_utc < before))
            logins = await s.execute(delete(RadiusLogin).where(RadiusLogin.created_utc < before))
        return int(acct.rowcount or 0) + int(logins.rowcount or 0)  # type: ignore[attr-defined]

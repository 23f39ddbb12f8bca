"""Identified guests, their sessions (the identification log), remembered devices and exports.

A device is its MAC as the gateway reports it; a gateway that cannot tell MACs (driver "none")
reports "unknown", and then the IP address tells devices apart as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import ColumnElement, Select, and_, case, delete, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from appliance.storage.guest_codes import affected
from appliance.storage.models_guests import (
    END_RELOGIN,
    Guest,
    GuestLogExport,
    GuestRememberedDevice,
    GuestSession,
)

UNKNOWN_MAC: Final = "unknown"
"""What a gateway that cannot see MAC addresses reports (appliance/portal/gateways/none.py)."""
LIKE_ESCAPE: Final = "\\"


@dataclass(frozen=True)
class DeviceKey:
    mac: str
    ip: str


def _same_device(
    mac: InstrumentedAttribute[str], ip: InstrumentedAttribute[str], device: DeviceKey
) -> ColumnElement[bool]:
    if device.mac == UNKNOWN_MAC:
        return and_(mac == UNKNOWN_MAC, ip == device.ip)
    return mac == device.mac


@dataclass(frozen=True)
class Identity:
    """Who a session belongs to, as the log and the console show it."""

    guest_id: int
    phone_e164: str | None
    voucher_id: str | None
    guest_name: str | None
    document_type: str | None
    issued_by: str | None


@dataclass(frozen=True)
class SessionView:
    session: GuestSession
    identity: Identity


@dataclass(frozen=True)
class NewSession:
    session_id: str
    guest_id: int
    method: str
    relogin: bool
    device: DeviceKey
    gateway: str
    gateway_ref: str | None
    provider_id: str | None
    consent_version: str
    promotions_consent: bool
    start_utc: datetime
    expires_utc: datetime


@dataclass(frozen=True)
class Remembered:
    row: GuestRememberedDevice
    identity: Identity


@dataclass(frozen=True)
class GatewayReport:
    """What a gateway's accounting says about a session: its traffic so far (running totals, from
    the guest's side) and, when the session is over, why and when."""

    bytes_in: int
    bytes_out: int
    end_reason: str | None = None
    end_utc: datetime | None = None


async def apply_gateway_report(session: AsyncSession, session_id: str, report: GatewayReport) -> bool:
    """Put a gateway's report into the identification log row, in the caller's transaction.
    Counters only grow (a late or repeated report changes nothing); a session already ended keeps
    its end (a revoke, a timeout the portal saw first). True when this report ended the session."""
    row = await session.get(GuestSession, session_id, with_for_update=True)
    if row is None:
        return False
    row.bytes_in = max(row.bytes_in, report.bytes_in)
    row.bytes_out = max(row.bytes_out, report.bytes_out)
    if report.end_reason is None or report.end_utc is None or row.stop_utc is not None:
        return False
    row.stop_utc = max(report.end_utc, row.start_utc)
    row.end_reason = report.end_reason
    return True


@dataclass(frozen=True)
class LogQuery:
    from_utc: datetime
    to_utc: datetime
    text: str | None = None
    """Part of a phone number, MAC or IP address, or a voucher reference."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One identification log row with its guest, as exported (read without the ORM: an export
    may hold half a year of logins, and building objects for each would hold up the event loop)."""

    session_id: str
    method: str
    relogin: bool
    phone_e164: str | None
    voucher_id: str | None
    guest_name: str | None
    document_type: str | None
    issued_by: str | None
    mac: str
    ip: str
    gateway: str
    gateway_ref: str | None
    consent_version: str
    promotions_consent: bool
    start_utc: datetime
    stop_utc: datetime | None
    end_reason: str | None
    bytes_in: int
    bytes_out: int
    provider_id: str | None


_LOG_ENTRY_COLUMNS = (
    GuestSession.id.label("session_id"),
    GuestSession.method,
    GuestSession.relogin,
    Guest.phone_e164,
    Guest.voucher_id,
    Guest.guest_name,
    Guest.document_type,
    Guest.issued_by,
    GuestSession.mac,
    GuestSession.ip,
    GuestSession.gateway,
    GuestSession.gateway_ref,
    GuestSession.consent_version,
    GuestSession.promotions_consent,
    GuestSession.start_utc,
    GuestSession.stop_utc,
    GuestSession.end_reason,
    GuestSession.bytes_in,
    GuestSession.bytes_out,
    GuestSession.provider_id,
)


def _identity(guest: Guest) -> Identity:
    return Identity(
        guest.id, guest.phone_e164, guest.voucher_id, guest.guest_name, guest.document_type, guest.issued_by
    )


def _at_least(column: InstrumentedAttribute[int], value: int) -> ColumnElement[int]:
    # GREATEST() on PostgreSQL is MAX() on SQLite: a CASE works on both.
    return case((column < value, value), else_=column)


def _escape_like(text: str) -> str:
    return text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", f"{LIKE_ESCAPE}%").replace("_", f"{LIKE_ESCAPE}_")


def _log_filter(query: LogQuery) -> list[ColumnElement[bool]]:
    conditions = [GuestSession.start_utc >= query.from_utc, GuestSession.start_utc < query.to_utc]
    if query.text:
        pattern = f"%{_escape_like(query.text.lower())}%"
        conditions.append(
            or_(
                *(
                    func.lower(column).like(pattern, escape=LIKE_ESCAPE)
                    for column in (Guest.phone_e164, Guest.voucher_id, GuestSession.mac, GuestSession.ip)
                )
            )
        )
    return conditions


class GuestStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    # ----------------------------------------------------------------------------- guests ---

    async def guest_for_phone(self, phone_e164: str, now: datetime) -> int:
        return await self._get_or_create(Guest.phone_e164 == phone_e164, Guest(phone_e164=phone_e164, created_utc=now))

    async def guest_for_voucher(
        self, voucher_id: str, guest_name: str, document_type: str, issued_by: str, now: datetime
    ) -> int:
        new = Guest(
            voucher_id=voucher_id,
            guest_name=guest_name,
            document_type=document_type,
            issued_by=issued_by,
            created_utc=now,
        )
        return await self._get_or_create(Guest.voucher_id == voucher_id, new)

    async def _get_or_create(self, match: ColumnElement[bool], new: Guest) -> int:
        found = await self._guest_id(match)
        if found is not None:
            return found
        try:
            async with self._sessions.begin() as session:
                session.add(new)
            return new.id
        except IntegrityError:
            # Another login of the same person made the row a moment ago.
            found = await self._guest_id(match)
            assert found is not None
            return found

    async def _guest_id(self, match: ColumnElement[bool]) -> int | None:
        async with self._sessions() as session:
            return await session.scalar(select(Guest.id).where(match))

    async def promotions_consent(self, guest_id: int) -> bool:
        async with self._sessions() as session:
            return bool(await session.scalar(select(Guest.promotions_consent).where(Guest.id == guest_id)))

    # --------------------------------------------------------------------------- sessions ---

    async def start_session(self, new: NewSession, *, promotions_answered: bool = False) -> list[GuestSession]:
        """Open a session; the device's sessions still open end as replaced (returned). With
        `promotions_answered` (the guest answered the question at this login) the answer becomes the
        guest's, in the same transaction: one write less per login (bench/portal.py)."""
        async with self._sessions.begin() as session:
            if promotions_answered:
                await session.execute(
                    update(Guest)
                    .where(Guest.id == new.guest_id)
                    .values(promotions_consent=new.promotions_consent, promotions_consent_utc=new.start_utc)
                )
            replaced = list(
                (
                    await session.scalars(
                        select(GuestSession).where(
                            GuestSession.stop_utc.is_(None),
                            _same_device(GuestSession.mac, GuestSession.ip, new.device),
                        )
                    )
                ).all()
            )
            for old in replaced:
                old.stop_utc = max(new.start_utc, old.start_utc)
                old.end_reason = END_RELOGIN
            session.add(
                GuestSession(
                    id=new.session_id,
                    guest_id=new.guest_id,
                    method=new.method,
                    relogin=new.relogin,
                    mac=new.device.mac,
                    ip=new.device.ip,
                    gateway=new.gateway,
                    gateway_ref=new.gateway_ref,
                    provider_id=new.provider_id,
                    consent_version=new.consent_version,
                    promotions_consent=new.promotions_consent,
                    start_utc=new.start_utc,
                    expires_utc=new.expires_utc,
                    bytes_in=0,
                    bytes_out=0,
                )
            )
            return replaced

    async def end_session(self, session_id: str, reason: str, now: datetime) -> GuestSession | None:
        """End an open session; None when it is unknown or already ended."""
        async with self._sessions.begin() as session:
            row = await session.get(GuestSession, session_id, with_for_update=True)
            if row is None or row.stop_utc is not None:
                return None
            row.stop_utc = max(now, row.start_utc)
            row.end_reason = reason
            return row

    async def record_usage(self, session_id: str, bytes_in: int, bytes_out: int) -> None:
        """The gateway's counters for a session (they only grow; a smaller reading is ignored)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(GuestSession)
                .where(GuestSession.id == session_id)
                .values(
                    bytes_in=_at_least(GuestSession.bytes_in, bytes_in),
                    bytes_out=_at_least(GuestSession.bytes_out, bytes_out),
                )
            )

    async def session(self, session_id: str) -> SessionView | None:
        rows = await self._views(select(GuestSession, Guest).where(GuestSession.id == session_id))
        return rows[0] if rows else None

    async def active_session(self, device: DeviceKey, now: datetime) -> SessionView | None:
        rows = await self._views(
            select(GuestSession, Guest)
            .where(
                GuestSession.stop_utc.is_(None),
                GuestSession.expires_utc > now,
                _same_device(GuestSession.mac, GuestSession.ip, device),
            )
            .order_by(GuestSession.start_utc.desc())
            .limit(1)
        )
        return rows[0] if rows else None

    async def open_sessions(self) -> list[SessionView]:
        """Every session not ended yet (expired ones included, until the sweeper ends them), newest first."""
        return await self._views(
            select(GuestSession, Guest).where(GuestSession.stop_utc.is_(None)).order_by(GuestSession.start_utc.desc())
        )

    async def expired_sessions(self, now: datetime) -> list[GuestSession]:
        async with self._sessions() as session:
            found = await session.scalars(
                select(GuestSession).where(GuestSession.stop_utc.is_(None), GuestSession.expires_utc <= now)
            )
            return list(found.all())

    async def _views(self, query: Select[GuestSession, Guest]) -> list[SessionView]:
        async with self._sessions() as session:
            rows = (await session.execute(query.join(Guest, Guest.id == GuestSession.guest_id))).all()
        return [SessionView(s, _identity(g)) for s, g in rows]

    # ------------------------------------------------------------------- remembered devices ---

    async def remember(
        self,
        guest_id: int,
        mac: str,
        token_digest: str,
        method: str,
        consent_version: str,
        now: datetime,
        until: datetime,
    ) -> None:
        """Remember a device for re-login; an earlier entry of the same device is replaced."""
        async with self._sessions.begin() as session:
            if mac != UNKNOWN_MAC:
                await session.execute(delete(GuestRememberedDevice).where(GuestRememberedDevice.mac == mac))
            session.add(
                GuestRememberedDevice(
                    guest_id=guest_id,
                    mac=mac,
                    token_digest=token_digest,
                    method=method,
                    consent_version=consent_version,
                    created_utc=now,
                    expires_utc=until,
                )
            )

    async def remembered(self, token_digest: str | None, mac: str, now: datetime) -> Remembered | None:
        """The device's entry: by its cookie (which must name the same MAC), else by a known MAC alone."""
        if token_digest is not None:
            found = await self._remembered(
                GuestRememberedDevice.token_digest == token_digest, GuestRememberedDevice.mac == mac, now=now
            )
            if found is not None:
                return found
        if mac == UNKNOWN_MAC:
            return None
        return await self._remembered(GuestRememberedDevice.mac == mac, now=now)

    async def _remembered(self, *conditions: ColumnElement[bool], now: datetime) -> Remembered | None:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(GuestRememberedDevice, Guest)
                    .join(Guest, Guest.id == GuestRememberedDevice.guest_id)
                    .where(*conditions, GuestRememberedDevice.expires_utc > now)
                    .order_by(GuestRememberedDevice.created_utc.desc())
                    .limit(1)
                )
            ).first()
        return Remembered(row[0], _identity(row[1])) if row is not None else None

    async def forget(self, remembered_id: int) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(GuestRememberedDevice).where(GuestRememberedDevice.id == remembered_id))

    async def forget_device(self, mac: str, ip: str, guest_id: int) -> int:
        """Forget the guest's entries for this device (after a revoke or a logout)."""
        condition = GuestRememberedDevice.guest_id == guest_id
        if mac != UNKNOWN_MAC:
            condition = and_(condition, GuestRememberedDevice.mac == mac)
        async with self._sessions.begin() as session:
            return affected(await session.execute(delete(GuestRememberedDevice).where(condition)))

    # --------------------------------------------------------------------------------- log ---

    async def log(self, query: LogQuery, *, limit: int) -> list[SessionView]:
        """The first `limit` sessions that started within the range, oldest first (a page; the
        export reads them all with `log_batches`)."""
        return await self._views(
            select(GuestSession, Guest).where(*_log_filter(query)).order_by(GuestSession.start_utc).limit(limit)
        )

    async def log_batches(self, query: LogQuery, batch: int) -> AsyncIterator[list[LogEntry]]:
        """All sessions that started within the range, oldest first, `batch` at a time (each batch
        its own short read: a long export never holds a transaction open)."""
        after: tuple[datetime, str] | None = None
        while True:
            statement = (
                select(*_LOG_ENTRY_COLUMNS)
                .join(Guest, Guest.id == GuestSession.guest_id)
                .where(*_log_filter(query))
                .order_by(GuestSession.start_utc, GuestSession.id)
                .limit(batch)
            )
            if after is not None:
                start, session_id = after
                statement = statement.where(
                    or_(
                        GuestSession.start_utc > start,
                        and_(GuestSession.start_utc == start, GuestSession.id > session_id),
                    )
                )
            async with self._sessions() as session:
                entries = [LogEntry(**row._asdict()) for row in (await session.execute(statement)).all()]
            if entries:
                yield entries
            if len(entries) < batch:
                return
            after = (entries[-1].start_utc, entries[-1].session_id)

    async def log_count(self, query: LogQuery) -> int:
        async with self._sessions() as session:
            statement = (
                select(func.count())
                .select_from(GuestSession)
                .join(Guest, Guest.id == GuestSession.guest_id)
                .where(*_log_filter(query))
            )
            return await session.scalar(statement) or 0

    async def record_export(self, export: GuestLogExport) -> None:
        async with self._sessions.begin() as session:
            session.add(export)

    async def exports(self, limit: int) -> Sequence[GuestLogExport]:
        async with self._sessions() as session:
            found = await session.scalars(
                select(GuestLogExport).order_by(GuestLogExport.exported_utc.desc()).limit(limit)
            )
            return found.all()

    # ------------------------------------------------------------------------------- purge ---

    async def purge(self, log_before: datetime, now: datetime) -> tuple[int, int]:
        """Delete sessions that ended (or started, if never ended) before `log_before`, expired
        remembered devices, then guests left with neither. Returns (sessions, guests) deleted."""
        async with self._sessions.begin() as session:
            sessions = affected(
                await session.execute(
                    delete(GuestSession).where(
                        func.coalesce(GuestSession.stop_utc, GuestSession.start_utc) < log_before
                    )
                )
            )
            await session.execute(delete(GuestRememberedDevice).where(GuestRememberedDevice.expires_utc <= now))
            guests = affected(
                await session.execute(
                    delete(Guest).where(
                        # A guest made a moment ago may be about to get a session.
                        Guest.created_utc < log_before,
                        ~exists().where(GuestSession.guest_id == Guest.id),
                        ~exists().where(GuestRememberedDevice.guest_id == Guest.id),
                    )
                )
            )
        return sessions, guests

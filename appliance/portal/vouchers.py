"""Vouchers: staff check a guest's identity document at the till and issue a code; the guest types
it on the Wi-Fi page. Decree 758 allows identifying a user by full name confirmed by an identity
document, so a voucher records the name, the document's type and, optionally, the last four
characters of its number (152-FZ: no more personal data than the purpose needs).

Codes are 10 characters from an alphabet without look-alikes (no 0/O, 1/I/L), shown as
`ABCDE-FGH23`; typing is forgiving (case, spaces, dashes, and Cyrillic letters that look like
Latin ones, as a Russian keyboard produces them). Only the SHA-256 of a code is stored; a code is
found by its hash and compared in constant time. A voucher lets in up to `max_devices` devices
(a device that signs in again does not count twice) until it expires or is revoked.
"""

from __future__ import annotations

import builtins
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, get_args

from sqlalchemy import ScalarSelect, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from appliance.storage.guest_codes import affected
from appliance.storage.models import USERNAME_MAX_LENGTH, utcnow
from appliance.storage.models_promotions import (
    DOCUMENT_REF_LENGTH,
    DOCUMENT_TYPES,
    GUEST_NAME_MAX_LENGTH,
    MAX_DEVICES_LIMIT,
    VoucherRedemption,
    VoucherRow,
)

DocumentType = Literal["passport_rf", "foreign_passport", "military_id", "other_state_id"]
"""Паспорт гражданина РФ; паспорт иностранного гражданина; военный билет; иной документ,
удостоверяющий личность (e.g. a residence permit, a temporary identity card)."""
assert get_args(DocumentType) == DOCUMENT_TYPES, "the model's check constraint and this type must agree"

VoucherState = Literal["active", "expired", "used_up", "revoked"]

ALPHABET: Final = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH: Final = 10
"""31^10 ≈ 2^49.5: far beyond online guessing (which the portal rate-limits anyway)."""
CODE_PATTERN: Final = re.compile(f"[{ALPHABET}]{{{CODE_LENGTH}}}")
# Cyrillic capitals that look like Latin ones: a guest typing on a Russian layout gets these.
_LOOKALIKES: Final = str.maketrans("АВЕКМНОРСТУХ", "ABEKMHOPCTYX")
_SEPARATORS: Final = re.compile(r"[\s\-–—_.]+")
DOCUMENT_REF_PATTERN: Final = re.compile(rf"[0-9A-Z]{{{DOCUMENT_REF_LENGTH}}}")
MAX_VALID_HOURS: Final = 24 * 30
MAC_PATTERN: Final = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


class VoucherError(ValueError):
    """Bad input for a voucher; `key` names the message (in the console's catalogue) to show."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True)
class Voucher:
    id: int
    guest_name: str
    document_type: DocumentType
    document_ref_last4: str | None
    issued_by: str
    issued_at: datetime
    valid_until: datetime
    max_devices: int
    devices_used: int
    revoked_at: datetime | None
    revoked_by: str | None

    def state(self, now_utc: datetime) -> VoucherState:
        if self.revoked_at is not None:
            return "revoked"
        if now_utc >= self.valid_until:
            return "expired"
        if self.devices_used >= self.max_devices:
            return "used_up"
        return "active"


@dataclass(frozen=True)
class VoucherIdentity:
    """Who signed in with a voucher: what the identification log records."""

    voucher_id: int
    guest_name: str
    document_type: DocumentType
    issued_by: str
    max_devices: int
    valid_until: datetime
    """The session should not outlast the voucher."""


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(typed: str) -> str:
    return _SEPARATORS.sub("", typed).upper().translate(_LOOKALIKES)


def format_code(code: str) -> str:
    """How a code is printed: two groups of five."""
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"


def code_digest(code: str) -> str:
    return hashlib.sha256(code.encode("ascii")).hexdigest()


def _voucher(row: VoucherRow, devices_used: int) -> Voucher:
    return Voucher(
        id=row.id,
        guest_name=row.guest_name,
        document_type=row.document_type,  # type: ignore[arg-type]  # the check constraint holds it to the type
        document_ref_last4=row.document_ref_last4,
        issued_by=row.issued_by,
        issued_at=row.issued_at,
        valid_until=row.valid_until,
        max_devices=row.max_devices,
        devices_used=devices_used,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
    )


def check_guest_name(name: str) -> str:
    name = " ".join(name.split())
    if len(name) < 2:
        raise VoucherError("vouchers.error.name_missing")
    if len(name) > GUEST_NAME_MAX_LENGTH:
        raise VoucherError("vouchers.error.name_long")
    return name


def check_document_ref(ref: str | None) -> str | None:
    ref = (ref or "").strip().upper().translate(_LOOKALIKES)
    if not ref:
        return None
    if not DOCUMENT_REF_PATTERN.fullmatch(ref):
        raise VoucherError("vouchers.error.document_ref")
    return ref


def _devices_used() -> ScalarSelect[int]:
    return (
        select(func.count(VoucherRedemption.id))
        .where(VoucherRedemption.voucher_id == VoucherRow.id)
        .correlate(VoucherRow)
        .scalar_subquery()
    )


class VoucherStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def issue(
        self,
        guest_name: str,
        document_type: DocumentType,
        document_ref_last4: str | None,
        issued_by: str,
        valid_hours: int,
        max_devices: int,
        *,
        now_utc: datetime | None = None,
    ) -> tuple[Voucher, str]:
        """A new voucher and its code (the only time the code exists in clear)."""
        name = check_guest_name(guest_name)
        if document_type not in DOCUMENT_TYPES:
            raise VoucherError("vouchers.error.document_type")
        ref = check_document_ref(document_ref_last4)
        if not 1 <= valid_hours <= MAX_VALID_HOURS:
            raise VoucherError("vouchers.error.valid_hours")
        if not 1 <= max_devices <= MAX_DEVICES_LIMIT:
            raise VoucherError("vouchers.error.max_devices")
        now = now_utc or utcnow()
        code = new_code()
        row = VoucherRow(
            code_sha256=code_digest(code),
            guest_name=name,
            document_type=document_type,
            document_ref_last4=ref,
            issued_by=issued_by[:USERNAME_MAX_LENGTH],
            issued_at=now,
            valid_until=now + timedelta(hours=valid_hours),
            max_devices=max_devices,
        )
        async with self._sessions.begin() as session:
            session.add(row)
        return _voucher(row, 0), code

    async def redeem(self, code: str, now_utc: datetime, *, device_mac: str | None = None) -> VoucherIdentity | None:
        """The identity behind a valid code, counting this device; None for a wrong, expired,
        revoked or used-up code (the guest is told the same in every case)."""
        typed = normalize_code(code)
        if not CODE_PATTERN.fullmatch(typed):
            return None
        mac = device_mac.lower() if device_mac and MAC_PATTERN.fullmatch(device_mac.lower()) else None
        try:
            return await self._redeem(code_digest(typed), now_utc, mac)
        except IntegrityError:
            # The same device redeemed the same voucher in a parallel request: now it is counted.
            return await self._redeem(code_digest(typed), now_utc, mac)

    async def _redeem(self, digest: str, now_utc: datetime, mac: str | None) -> VoucherIdentity | None:
        async with self._sessions.begin() as session:
            # Locked on PostgreSQL: two devices redeeming at once cannot both take the last place.
            row = await session.scalar(select(VoucherRow).where(VoucherRow.code_sha256 == digest).with_for_update())
            if row is None or not secrets.compare_digest(row.code_sha256, digest):
                return None
            if row.revoked_at is not None or now_utc >= row.valid_until:
                return None
            used_by = select(VoucherRedemption.device_mac).where(VoucherRedemption.voucher_id == row.id)
            macs = (await session.scalars(used_by)).all()
            if mac is None or mac not in macs:
                if len(macs) >= row.max_devices:
                    return None
                session.add(VoucherRedemption(voucher_id=row.id, device_mac=mac, redeemed_at=now_utc))
            return VoucherIdentity(
                voucher_id=row.id,
                guest_name=row.guest_name,
                document_type=row.document_type,  # type: ignore[arg-type]
                issued_by=row.issued_by,
                max_devices=row.max_devices,
                valid_until=row.valid_until,
            )

    async def revoke(self, voucher_id: int, by: str, *, now_utc: datetime | None = None) -> bool:
        """Stop a voucher letting anyone else in; False if unknown or revoked already. (Devices
        already in are let out by the portal's session revocation, not here.)"""
        async with self._sessions.begin() as session:
            row = await session.get(VoucherRow, voucher_id, with_for_update=True)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at, row.revoked_by = now_utc or utcnow(), by[:USERNAME_MAX_LENGTH]
        return True

    async def purge(self, before: datetime) -> int:
        """Delete vouchers (a guest's name and document) that stopped working before `before`,
        with the devices they let in: the identification log's retention applies to them too."""
        ended = select(VoucherRow.id).where(VoucherRow.valid_until < before).scalar_subquery()
        async with self._sessions.begin() as session:
            await session.execute(delete(VoucherRedemption).where(VoucherRedemption.voucher_id.in_(ended)))
            result = await session.execute(delete(VoucherRow).where(VoucherRow.valid_until < before))
        return affected(result)

    async def get(self, voucher_id: int) -> Voucher | None:
        async with self._sessions() as session:
            found = (
                await session.execute(select(VoucherRow, _devices_used()).where(VoucherRow.id == voucher_id))
            ).first()
        return _voucher(found[0], found[1]) if found else None

    async def list(self, limit: int = 100) -> builtins.list[Voucher]:
        """The newest vouchers first."""
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(VoucherRow, _devices_used())
                    .order_by(VoucherRow.issued_at.desc(), VoucherRow.id.desc())
                    .limit(limit)
                )
            ).all()
        return [_voucher(row, used) for row, used in rows]

"""Guest Wi-Fi (migration 0006): one-time codes, identified guests, their sessions (the Decree 758
identification log), remembered devices, the daily SMS count and the log's exports.

Written by appliance/storage/guests.py and guest_codes.py. Personal data (phone numbers, names,
MAC and IP addresses) lives only here and is deleted after `log_retention_days`
(appliance/portal/upkeep.py); one-time codes are stored as keyed hashes, never in clear.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Final

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.storage.models import Base, UTCDateTime, utcnow

ID_LENGTH: Final = 32
"""Random ids of code requests and sessions: 16 bytes as hex (also the gateway drivers' session reference)."""
PHONE_MAX_LENGTH: Final = 16
"""E.164: a plus and at most 15 digits."""
MAC_MAX_LENGTH: Final = 17
IP_MAX_LENGTH: Final = 45
VOUCHER_ID_MAX_LENGTH: Final = 64
GUEST_NAME_MAX_LENGTH: Final = 200
DOCUMENT_TYPE_MAX_LENGTH: Final = 64
ISSUED_BY_MAX_LENGTH: Final = 64
GATEWAY_MAX_LENGTH: Final = 16
GATEWAY_REF_MAX_LENGTH: Final = 255
CONSENT_VERSION_MAX_LENGTH: Final = 64
PROVIDER_ID_MAX_LENGTH: Final = 64
DIGEST_HEX_LENGTH: Final = 64
REASON_MAX_LENGTH: Final = 16
REQUEST_REF_MAX_LENGTH: Final = 200
USERNAME_MAX_LENGTH: Final = 32
FILTER_MAX_LENGTH: Final = 64

CODE_METHODS: Final = ("sms", "call")
LOGIN_METHODS: Final = ("sms", "call", "voucher", "external")
"""external: a licensed identification service or an ESIA partner confirmed the phone number."""
CODE_PENDING: Final = "pending"
CODE_CONFIRMED: Final = "confirmed"
CODE_LOCKED: Final = "locked"
"""Too many wrong entries: the code no longer works, even the right one."""
CODE_SUPERSEDED: Final = "superseded"
"""A newer code was sent for the same login."""
CODE_STATUSES: Final = (CODE_PENDING, CODE_CONFIRMED, CODE_LOCKED, CODE_SUPERSEDED)

END_LOGOUT: Final = "logout"
END_REVOKED: Final = "revoked"
END_SESSION_TIMEOUT: Final = "session_timeout"
END_GATEWAY: Final = "gateway"
"""The gateway ended the access itself (idle timeout, quota, its own restart)."""
END_RELOGIN: Final = "relogin"
"""The same device logged in again (a new session replaces this one)."""
END_GATEWAY_ERROR: Final = "gateway_error"
"""The gateway refused to let the device through: the session never carried traffic."""
END_REASONS: Final = (END_LOGOUT, END_REVOKED, END_SESSION_TIMEOUT, END_GATEWAY, END_RELOGIN, END_GATEWAY_ERROR)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class GuestCodeRequest(Base):
    """A one-time code sent to a phone for one login of one device. Kept a day or two (the abuse
    limits are rebuilt from these at start; support questions), then purged; the code itself only
    as HMAC-SHA256 (appliance/portal/codes.py)."""

    __tablename__ = "guest_code_requests"
    __table_args__ = (
        CheckConstraint(_one_of("method", CODE_METHODS), name="method"),
        CheckConstraint(_one_of("status", CODE_STATUSES), name="status"),
        CheckConstraint("attempts_left >= 0", name="attempts_left"),
        Index("ix_guest_code_requests_created_utc", "created_utc"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    phone_e164: Mapped[str] = mapped_column(String(PHONE_MAX_LENGTH))
    method: Mapped[str] = mapped_column(String(8))
    code_digest: Mapped[str] = mapped_column(String(DIGEST_HEX_LENGTH))
    mac: Mapped[str] = mapped_column(String(MAC_MAX_LENGTH))
    ip: Mapped[str] = mapped_column(String(IP_MAX_LENGTH))
    created_utc: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_utc: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts_left: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12), default=CODE_PENDING)
    provider_id: Mapped[str | None] = mapped_column(String(PROVIDER_ID_MAX_LENGTH))

    def __repr__(self) -> str:
        # Never the digest, and only the end of the number: reprs end up in logs.
        return f"GuestCodeRequest(id={self.id!r}, status={self.status!r}, attempts_left={self.attempts_left!r})"


class Guest(Base):
    """A person identified on the guest Wi-Fi: by a confirmed phone number, or by a voucher staff
    issued after checking an ID document (name and document type, never the document's number)."""

    __tablename__ = "guests"
    __table_args__ = (CheckConstraint("(phone_e164 IS NULL) <> (voucher_id IS NULL)", name="phone_or_voucher"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone_e164: Mapped[str | None] = mapped_column(String(PHONE_MAX_LENGTH), unique=True)
    voucher_id: Mapped[str | None] = mapped_column(String(VOUCHER_ID_MAX_LENGTH), unique=True)
    guest_name: Mapped[str | None] = mapped_column(String(GUEST_NAME_MAX_LENGTH))
    document_type: Mapped[str | None] = mapped_column(String(DOCUMENT_TYPE_MAX_LENGTH))
    issued_by: Mapped[str | None] = mapped_column(String(ISSUED_BY_MAX_LENGTH))
    """The staff member who checked the document (voucher guests)."""
    promotions_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    """The guest's latest answer to the separate, optional promotions consent."""
    promotions_consent_utc: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_utc: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"Guest(id={self.id!r})"


class GuestSession(Base):
    """One login of one device: the identification log row Decree 758 asks for (who, which device,
    how identified, under which consent, from when to when, how much traffic)."""

    __tablename__ = "guest_sessions"
    __table_args__ = (
        CheckConstraint(_one_of("method", LOGIN_METHODS), name="method"),
        CheckConstraint(f"end_reason IS NULL OR {_one_of('end_reason', END_REASONS)}", name="end_reason"),
        CheckConstraint("(stop_utc IS NULL) = (end_reason IS NULL)", name="stop_has_reason"),
        CheckConstraint("stop_utc IS NULL OR stop_utc >= start_utc", name="stops_after_start"),
        CheckConstraint("bytes_in >= 0 AND bytes_out >= 0", name="bytes"),
        Index("ix_guest_sessions_start_utc", "start_utc"),
        Index("ix_guest_sessions_mac_stop_utc", "mac", "stop_utc"),
        Index("ix_guest_sessions_stop_utc_expires_utc", "stop_utc", "expires_utc"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    guest_id: Mapped[int] = mapped_column(ForeignKey("guests.id"), index=True)
    method: Mapped[str] = mapped_column(String(8))
    relogin: Mapped[bool] = mapped_column(Boolean, default=False)
    """Admitted as a remembered device, on the strength of an earlier identification by `method`."""
    mac: Mapped[str] = mapped_column(String(MAC_MAX_LENGTH))
    ip: Mapped[str] = mapped_column(String(IP_MAX_LENGTH))
    gateway: Mapped[str] = mapped_column(String(GATEWAY_MAX_LENGTH))
    gateway_ref: Mapped[str | None] = mapped_column(String(GATEWAY_REF_MAX_LENGTH))
    provider_id: Mapped[str | None] = mapped_column(String(PROVIDER_ID_MAX_LENGTH))
    """The SMS provider's message id of the code that identified the guest, or the identity
    provider's reference of the identification (method external, with its prefix: esia:…)."""
    consent_version: Mapped[str] = mapped_column(String(CONSENT_VERSION_MAX_LENGTH))
    promotions_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    start_utc: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_utc: Mapped[datetime] = mapped_column(UTCDateTime)
    stop_utc: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(REASON_MAX_LENGTH))
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0)
    """Downloaded by the guest (towards the device)."""
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0)

    def __repr__(self) -> str:
        return f"GuestSession(id={self.id!r}, guest_id={self.guest_id!r}, end_reason={self.end_reason!r})"


class GuestRememberedDevice(Base):
    """A device that may log in again without a new code until `expires_utc`: found by the
    browser's remember cookie (its SHA-256 here) or by the MAC the gateway reports."""

    __tablename__ = "guest_remembered_devices"
    __table_args__ = (
        CheckConstraint(_one_of("method", LOGIN_METHODS), name="method"),
        Index("ix_guest_remembered_devices_mac_expires_utc", "mac", "expires_utc"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guest_id: Mapped[int] = mapped_column(ForeignKey("guests.id"), index=True)
    mac: Mapped[str] = mapped_column(String(MAC_MAX_LENGTH))
    token_digest: Mapped[str] = mapped_column(String(DIGEST_HEX_LENGTH), unique=True)
    method: Mapped[str] = mapped_column(String(8))
    consent_version: Mapped[str] = mapped_column(String(CONSENT_VERSION_MAX_LENGTH))
    created_utc: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_utc: Mapped[datetime] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"GuestRememberedDevice(id={self.id!r}, guest_id={self.guest_id!r})"


class GuestSmsDay(Base):
    """Codes sent on one day (store time), against the daily budget; `alerted_utc` once the owner was told."""

    __tablename__ = "guest_sms_days"
    __table_args__ = (CheckConstraint("sent >= 0", name="sent"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    alerted_utc: Mapped[datetime | None] = mapped_column(UTCDateTime)


class GuestLogExport(Base):
    """An export of the identification log (a lawful request): who, when, what range, why.

    There is no audit log table yet; this row and a structured log line are the record."""

    __tablename__ = "guest_log_exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exported_utc: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    request_ref: Mapped[str] = mapped_column(String(REQUEST_REF_MAX_LENGTH))
    """The lawful request the export answers (its number and date, as staff typed them)."""
    from_utc: Mapped[datetime] = mapped_column(UTCDateTime)
    to_utc: Mapped[datetime] = mapped_column(UTCDateTime)
    filter_text: Mapped[str | None] = mapped_column(String(FILTER_MAX_LENGTH))
    rows: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(DIGEST_HEX_LENGTH))
    """Of the CSV file handed over, so the copy can be checked later."""

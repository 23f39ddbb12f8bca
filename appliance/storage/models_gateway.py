"""Gateway drivers' tables (migration 0008): the one-time RADIUS logins the portal issues to
identified devices, and the accounting the gateways send back (time and volume of each session,
kept with the identification log as Decree 758 asks).

Written by appliance/storage/radius.py. Both hold personal data (MAC and IP addresses) and are
purged with the identification log after its retention period.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.storage.models import Base, UTCDateTime, utcnow

RADIUS_USERNAME_LENGTH: Final = 24
SESSION_ID_MAX_LENGTH: Final = 64
MAC_LENGTH: Final = 17
IP_MAX_LENGTH: Final = 45
DIGEST_HEX_LENGTH: Final = 64
NAS_NAME_MAX_LENGTH: Final = 32
NAS_IDENTIFIER_MAX_LENGTH: Final = 64
ACCT_SESSION_ID_MAX_LENGTH: Final = 64
USERNAME_MAX_LENGTH: Final = 64
TERMINATE_CAUSE_MAX_LENGTH: Final = 32

ACCT_START: Final = "start"
ACCT_INTERIM: Final = "interim"
ACCT_STOP: Final = "stop"
ACCT_ON: Final = "accounting-on"
"""The gateway (re)started: any session it had open is over."""
ACCT_OFF: Final = "accounting-off"
ACCT_STATUSES: Final = (ACCT_START, ACCT_INTERIM, ACCT_STOP, ACCT_ON, ACCT_OFF)


class RadiusLogin(Base):
    """A one-time login the portal gave an identified device's browser to present to the gateway.

    Only the SHA-256 of the password is kept. The login works for the MAC it was issued for only,
    first within `valid_until`, then (re-authentication, retransmissions) until the session ends.
    """

    __tablename__ = "radius_logins"
    __table_args__ = (
        CheckConstraint("session_timeout_s > 0 AND idle_timeout_s > 0", name="timeouts"),
        CheckConstraint("quota_bytes IS NULL OR quota_bytes > 0", name="quota"),
        Index("ix_radius_logins_mac_created_utc", "mac", "created_utc"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(RADIUS_USERNAME_LENGTH), unique=True)
    password_sha256: Mapped[str] = mapped_column(String(DIGEST_HEX_LENGTH))
    mac: Mapped[str] = mapped_column(String(MAC_LENGTH))
    ip: Mapped[str | None] = mapped_column(String(IP_MAX_LENGTH))
    """As the gateway's redirect claimed it; the accounting's Framed-IP-Address is the gateway's word."""
    session_id: Mapped[str] = mapped_column(String(SESSION_ID_MAX_LENGTH), index=True)
    """The identification log row (Grant.session_id) this access belongs to."""
    session_timeout_s: Mapped[int] = mapped_column(Integer)
    idle_timeout_s: Mapped[int] = mapped_column(Integer)
    down_kbit_s: Mapped[int | None] = mapped_column(Integer)
    up_kbit_s: Mapped[int | None] = mapped_column(Integer)
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_utc: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    first_used_utc: Mapped[datetime | None] = mapped_column(UTCDateTime)
    nas_name: Mapped[str | None] = mapped_column(String(NAS_NAME_MAX_LENGTH))
    nas_address: Mapped[str | None] = mapped_column(String(IP_MAX_LENGTH))
    """Where the Access-Request that used the login came from: where a Disconnect-Request goes."""
    revoked_utc: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        # Never the digest: reprs end up in logs.
        return f"RadiusLogin(id={self.id!r}, username={self.username!r}, session_id={self.session_id!r})"


class RadiusAccounting(Base):
    """One Accounting-Request as the gateway sent it (append-only). Octet counts include the
    gigaword parts; `input_octets` is what the guest's device sent, `output_octets` what it received.
    Counters are running totals of the gateway's session (`acct_session_id`): a session's volume is
    its last report, never a sum (a retransmission after a restart may store a report twice)."""

    __tablename__ = "radius_accounting"
    __table_args__ = (
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in ACCT_STATUSES)})", name="status"),
        CheckConstraint("input_octets >= 0 AND output_octets >= 0 AND session_time_s >= 0", name="counters"),
        Index("ix_radius_accounting_nas_name_acct_session_id", "nas_name", "acct_session_id"),
        Index("ix_radius_accounting_received_utc", "received_utc"),
        Index("ix_radius_accounting_username_received_utc", "username", "received_utc"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_utc: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    event_utc: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Event-Timestamp, when the gateway sends one."""
    nas_name: Mapped[str] = mapped_column(String(NAS_NAME_MAX_LENGTH))
    nas_address: Mapped[str] = mapped_column(String(IP_MAX_LENGTH))
    nas_identifier: Mapped[str | None] = mapped_column(String(NAS_IDENTIFIER_MAX_LENGTH))
    status: Mapped[str] = mapped_column(String(16))
    acct_session_id: Mapped[str] = mapped_column(String(ACCT_SESSION_ID_MAX_LENGTH))
    username: Mapped[str | None] = mapped_column(String(USERNAME_MAX_LENGTH))
    session_id: Mapped[str | None] = mapped_column(String(SESSION_ID_MAX_LENGTH), index=True)
    """The identification log row of the login named by `username`; NULL if the login is unknown."""
    mac: Mapped[str | None] = mapped_column(String(MAC_LENGTH))
    ip: Mapped[str | None] = mapped_column(String(IP_MAX_LENGTH))
    input_octets: Mapped[int] = mapped_column(BigInteger, default=0)
    output_octets: Mapped[int] = mapped_column(BigInteger, default=0)
    session_time_s: Mapped[int] = mapped_column(Integer, default=0)
    terminate_cause: Mapped[str | None] = mapped_column(String(TERMINATE_CAUSE_MAX_LENGTH))

    def __repr__(self) -> str:
        return f"RadiusAccounting(id={self.id!r}, status={self.status!r}, acct_session_id={self.acct_session_id!r})"

"""Tables of the alerts (migration 0005): the outbox, one row per alert × channel × part, and the
owner's pause and per-camera suspensions. See models.py for the conventions.

Written by appliance/alerts/outbox.py only. A row's `state` moves pending → sending → delivered
(or back to pending with a later `next_attempt_utc`, or to failed); each move is one UPDATE
conditioned on the state it leaves, so two dispatchers can never both send a row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import CheckConstraint, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from appliance.storage.models import CAMERA_ID_MAX_LENGTH, EVENT_ID_MAX_LENGTH, Base, UTCDateTime, _one_of

ALERT_PENDING: Final = "pending"
ALERT_SENDING: Final = "sending"
"""Claimed by a dispatcher; a row left so by a crash is pending again at the next start."""
ALERT_DELIVERED: Final = "delivered"
ALERT_FAILED: Final = "failed"
"""The provider refused it for good (bad token, bad request): shown in the console, retried only by hand."""
ALERT_SUPPRESSED: Final = "suppressed"
"""Not sent by a rule (cooldown, pause, suspension, quiet hours); `last_error` holds which."""
ALERT_STATES: Final = (ALERT_PENDING, ALERT_SENDING, ALERT_DELIVERED, ALERT_FAILED, ALERT_SUPPRESSED)
ALERT_PARTS: Final = ("snapshot", "clip", "notice")
ALERT_SOURCE_MAX_LENGTH: Final = 128
ALERT_KIND_MAX_LENGTH: Final = 32
PAUSE_ALL: Final = "*"
"""`AlertPause.scope` of the global pause ("I'm in the shop"); any other scope is a camera id."""


class AlertRow(Base):
    __tablename__ = "alert_outbox"
    __table_args__ = (
        # The idempotency key: an event's part reaches a channel once, whatever is retried or replayed.
        UniqueConstraint("channel_id", "source", "part"),
        CheckConstraint(_one_of("state", ALERT_STATES), name="state"),
        CheckConstraint(_one_of("part", ALERT_PARTS), name="part"),
        # The dispatcher's question: this channel's due rows.
        Index("ix_alert_outbox_channel_id_state_next_attempt_utc", "channel_id", "state", "next_attempt_utc"),
        Index("ix_alert_outbox_source", "source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(ALERT_SOURCE_MAX_LENGTH))
    """What the alert is about: the event id, or a key such as 'disk_nearly_full:<time>' for notices."""
    part: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(ALERT_KIND_MAX_LENGTH))
    camera_id: Mapped[str | None] = mapped_column(String(CAMERA_ID_MAX_LENGTH))
    event_id: Mapped[str | None] = mapped_column(String(EVENT_ID_MAX_LENGTH))
    occurred_utc: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_utc: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    """The provider's own words about the last failure (never a secret: channels mask them)."""
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    payload: Mapped[str] = mapped_column(Text)
    """JSON facts the texts are written from at sending time (in the channel's language, with the age)."""

    def __repr__(self) -> str:
        return f"AlertRow(id={self.id!r}, channel={self.channel_id!r}, source={self.source!r}, part={self.part!r})"


class AlertPause(Base):
    """Alerts about cameras muted until `until_utc` (NULL: until switched off): all cameras
    (scope '*', the owner's "I'm in the shop") or one camera (scope = camera id)."""

    __tablename__ = "alert_pauses"

    scope: Mapped[str] = mapped_column(String(CAMERA_ID_MAX_LENGTH), primary_key=True)
    until_utc: Mapped[datetime | None] = mapped_column(UTCDateTime)
    set_by: Mapped[str | None] = mapped_column(String(32))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)

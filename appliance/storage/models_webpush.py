"""Web Push subscriptions of the owner's phones (migration 0009), written by the console's "Push on
this phone" page (appliance/alerts/push_console.py) and read by the Web Push channel."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.storage.models import Base, UTCDateTime, utcnow

ENDPOINT_MAX_LENGTH: Final = 1024
"""Push service URLs are a few hundred characters (FCM, Mozilla, Apple); a unique index on 1024 fits both backends."""
P256DH_MAX_LENGTH: Final = 128
"""base64url of an uncompressed P-256 point (65 bytes) is 87 characters."""
AUTH_MAX_LENGTH: Final = 64
"""base64url of the 16-byte auth secret is 22 characters."""
LAST_ERROR_MAX_LENGTH: Final = 500
PUSH_LANGUAGES: Final = ("ru", "en")


class WebPushSubscription(Base):
    """One browser (phone) that receives alerts; removed when its push service says it is gone."""

    __tablename__ = "webpush_subscriptions"
    __table_args__ = (CheckConstraint(f"language IN ({', '.join(repr(v) for v in PUSH_LANGUAGES)})", name="language"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(ENDPOINT_MAX_LENGTH), unique=True)
    p256dh: Mapped[str] = mapped_column(String(P256DH_MAX_LENGTH))
    auth: Mapped[str] = mapped_column(String(AUTH_MAX_LENGTH))
    # A staff account that is deleted takes its phones' subscriptions with it.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    language: Mapped[str] = mapped_column(String(2))
    created_utc: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_ok_utc: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error_utc: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(LAST_ERROR_MAX_LENGTH))

    def __repr__(self) -> str:
        # Never the keys: reprs end up in logs.
        return f"WebPushSubscription(id={self.id!r}, user_id={self.user_id!r}, language={self.language!r})"

"""Legal holds (migration 0010): a camera's footage (or every camera's) over a time range that
retention must not delete, with who placed and released the hold and why. See models.py for the
conventions.

Written by appliance/storage/holds.py. A hold is never deleted: releasing it stamps
`released_at`, so the table stays the record of what was held, by whom and for how long. What
retention reads is the `legal_hold` flag of the segments the hold covers (models.Segment).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import CheckConstraint, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.storage.models import CAMERA_ID_MAX_LENGTH, Base, UTCDateTime, utcnow

HOLDER_MAX_LENGTH: Final = 64
"""An OS user name (32 on Linux) or a console username (32), with room to spare."""


class LegalHold(Base):
    """Footage of `camera_id` (None: every camera) from `start_utc` to `end_utc`, both included."""

    __tablename__ = "legal_holds"
    __table_args__ = (
        CheckConstraint("end_utc > start_utc", name="ends_after_start"),
        CheckConstraint("length(trim(reason)) > 0", name="reason_given"),
        CheckConstraint("(released_at IS NULL) = (released_by IS NULL)", name="release_is_complete"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[str | None] = mapped_column(String(CAMERA_ID_MAX_LENGTH))
    start_utc: Mapped[datetime] = mapped_column(UTCDateTime)
    end_utc: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(HOLDER_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_by: Mapped[str | None] = mapped_column(String(HOLDER_MAX_LENGTH))

    @property
    def active(self) -> bool:
        return self.released_at is None

    def __repr__(self) -> str:
        return (
            f"LegalHold(id={self.id!r}, camera_id={self.camera_id!r}, start_utc={self.start_utc!r}, "
            f"end_utc={self.end_utc!r}, active={self.active!r})"
        )

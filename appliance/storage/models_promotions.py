"""Tables of this feature (see models.py for the conventions); created by their migration.

Guest Wi-Fi (migration 0007): the store's promotions shown on the login page, and the vouchers
staff issue after checking a guest's ID document, with one row per device that used a voucher.
Read and written by appliance/portal/promotions.py and appliance/portal/vouchers.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from appliance.storage.models import USERNAME_MAX_LENGTH, Base, UTCDateTime, _one_of, utcnow

PROMO_TITLE_MAX_LENGTH: Final = 120
PROMO_HTML_MAX_LENGTH: Final = 8000
"""Sanitised HTML of a promotion's text: a few paragraphs, never a page."""
SHA256_HEX_LENGTH: Final = 64

GUEST_NAME_MAX_LENGTH: Final = 200
DOCUMENT_TYPES: Final = ("passport_rf", "foreign_passport", "military_id", "other_state_id")
DOCUMENT_TYPE_MAX_LENGTH: Final = 24
DOCUMENT_REF_LENGTH: Final = 4
MAX_DEVICES_LIMIT: Final = 10
MAC_LENGTH: Final = 17


class PromotionRow(Base):
    """One promotion; shown while now is within [valid_from, valid_to) (an empty end is open)."""

    __tablename__ = "promotions"
    __table_args__ = (
        CheckConstraint(
            "valid_from IS NULL OR valid_to IS NULL OR valid_to > valid_from", name="valid_to_after_valid_from"
        ),
        Index("ix_promotions_position", "position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(PROMO_TITLE_MAX_LENGTH))
    text_html: Mapped[str] = mapped_column(Text)
    """Already sanitised (appliance/portal/promotions.py): safe to put into a page as is."""
    position: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    image_sha256: Mapped[str | None] = mapped_column(String(SHA256_HEX_LENGTH))
    """Of the re-encoded JPEG in <data_dir>/promos/<id>.jpg; NULL: no image."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(USERNAME_MAX_LENGTH))

    def __repr__(self) -> str:
        return f"PromotionRow(id={self.id!r}, title={self.title!r}, position={self.position!r})"


class VoucherRow(Base):
    """A voucher: the guest's name and document type as staff checked them. Only a hash of the
    code is kept; rows stay for the identification log's retention period, revoked or not."""

    __tablename__ = "vouchers"
    __table_args__ = (
        CheckConstraint(_one_of("document_type", DOCUMENT_TYPES), name="document_type"),
        CheckConstraint(f"max_devices BETWEEN 1 AND {MAX_DEVICES_LIMIT}", name="max_devices"),
        CheckConstraint("valid_until > issued_at", name="valid_until_after_issued_at"),
        Index("ix_vouchers_issued_at", "issued_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_sha256: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), unique=True)
    guest_name: Mapped[str] = mapped_column(String(GUEST_NAME_MAX_LENGTH))
    document_type: Mapped[str] = mapped_column(String(DOCUMENT_TYPE_MAX_LENGTH))
    document_ref_last4: Mapped[str | None] = mapped_column(String(DOCUMENT_REF_LENGTH))
    issued_by: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    max_devices: Mapped[int] = mapped_column(Integer)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(USERNAME_MAX_LENGTH))

    def __repr__(self) -> str:
        # Never the guest's name or the code's hash: reprs end up in logs.
        return f"VoucherRow(id={self.id!r}, issued_by={self.issued_by!r}, valid_until={self.valid_until!r})"


class VoucherRedemption(Base):
    """A device that signed in with a voucher; the number of rows is the devices used."""

    __tablename__ = "voucher_redemptions"
    __table_args__ = (UniqueConstraint("voucher_id", "device_mac"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    voucher_id: Mapped[int] = mapped_column(ForeignKey("vouchers.id"))
    device_mac: Mapped[str | None] = mapped_column(String(MAC_LENGTH))
    """NULL when the gateway did not say the device (each such sign-in counts as a device)."""
    redeemed_at: Mapped[datetime] = mapped_column(UTCDateTime)

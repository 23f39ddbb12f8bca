"""Guest Wi-Fi: the store's promotions and the vouchers staff issue after checking an ID.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "promotions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(120), nullable=False),
        sa.Column("text_html", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("image_sha256", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotions")),
        sa.CheckConstraint(
            "valid_from IS NULL OR valid_to IS NULL OR valid_to > valid_from",
            name=op.f("ck_promotions_valid_to_after_valid_from"),
        ),
    )
    op.create_index(op.f("ix_promotions_position"), "promotions", ["position"])

    op.create_table(
        "vouchers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_sha256", sa.String(64), nullable=False),
        sa.Column("guest_name", sa.String(200), nullable=False),
        sa.Column("document_type", sa.String(24), nullable=False),
        sa.Column("document_ref_last4", sa.String(4), nullable=True),
        sa.Column("issued_by", sa.String(32), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_devices", sa.Integer(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vouchers")),
        sa.UniqueConstraint("code_sha256", name=op.f("uq_vouchers_code_sha256")),
        sa.CheckConstraint(
            "document_type IN ('passport_rf', 'foreign_passport', 'military_id', 'other_state_id')",
            name=op.f("ck_vouchers_document_type"),
        ),
        sa.CheckConstraint("max_devices BETWEEN 1 AND 10", name=op.f("ck_vouchers_max_devices")),
        sa.CheckConstraint("valid_until > issued_at", name=op.f("ck_vouchers_valid_until_after_issued_at")),
    )
    op.create_index(op.f("ix_vouchers_issued_at"), "vouchers", ["issued_at"])

    op.create_table(
        "voucher_redemptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("voucher_id", sa.Integer(), nullable=False),
        sa.Column("device_mac", sa.String(17), nullable=True),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voucher_redemptions")),
        sa.ForeignKeyConstraint(
            ["voucher_id"], ["vouchers.id"], name=op.f("fk_voucher_redemptions_voucher_id_vouchers")
        ),
        sa.UniqueConstraint("voucher_id", "device_mac", name=op.f("uq_voucher_redemptions_voucher_id")),
    )


def downgrade() -> None:
    op.drop_table("voucher_redemptions")
    op.drop_index(op.f("ix_vouchers_issued_at"), table_name="vouchers")
    op.drop_table("vouchers")
    op.drop_index(op.f("ix_promotions_position"), table_name="promotions")
    op.drop_table("promotions")

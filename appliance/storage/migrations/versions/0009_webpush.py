"""Alerts: Web Push subscriptions of the owner's phones.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webpush_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(1024), nullable=False),
        sa.Column("p256dh", sa.String(128), nullable=False),
        sa.Column("auth", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Column("created_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_ok_utc", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error_utc", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webpush_subscriptions")),
        sa.UniqueConstraint("endpoint", name=op.f("uq_webpush_subscriptions_endpoint")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_webpush_subscriptions_user_id_users"), ondelete="CASCADE"
        ),
        sa.CheckConstraint("language IN ('ru', 'en')", name=op.f("ck_webpush_subscriptions_language")),
    )
    op.create_index(op.f("ix_webpush_subscriptions_user_id"), "webpush_subscriptions", ["user_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_webpush_subscriptions_user_id"), table_name="webpush_subscriptions")
    op.drop_table("webpush_subscriptions")

"""Alerts: the outbox (one row per alert and channel) and the owner's pause and suspend controls.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("part", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("camera_id", sa.String(32), nullable=True),
        sa.Column("event_id", sa.String(96), nullable=True),
        sa.Column("occurred_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_outbox")),
        sa.UniqueConstraint("channel_id", "source", "part", name=op.f("uq_alert_outbox_channel_id")),
        sa.CheckConstraint(
            "state IN ('pending', 'sending', 'delivered', 'failed', 'suppressed')", name=op.f("ck_alert_outbox_state")
        ),
        sa.CheckConstraint("part IN ('snapshot', 'clip', 'notice')", name=op.f("ck_alert_outbox_part")),
    )
    op.create_index(
        op.f("ix_alert_outbox_channel_id_state_next_attempt_utc"),
        "alert_outbox",
        ["channel_id", "state", "next_attempt_utc"],
    )
    op.create_index(op.f("ix_alert_outbox_source"), "alert_outbox", ["source"])
    op.create_table(
        "alert_pauses",
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("until_utc", sa.DateTime(timezone=True), nullable=True),
        sa.Column("set_by", sa.String(32), nullable=True),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_alert_pauses")),
    )


def downgrade() -> None:
    op.drop_table("alert_pauses")
    op.drop_index(op.f("ix_alert_outbox_source"), table_name="alert_outbox")
    op.drop_index(op.f("ix_alert_outbox_channel_id_state_next_attempt_utc"), table_name="alert_outbox")
    op.drop_table("alert_outbox")

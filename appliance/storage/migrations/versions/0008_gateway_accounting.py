"""Guest Wi-Fi: RADIUS logins issued to authorised devices and accounting records (time and volume).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _utc(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "radius_logins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(24), nullable=False),
        sa.Column("password_sha256", sa.String(64), nullable=False),
        sa.Column("mac", sa.String(17), nullable=False),
        sa.Column("ip", sa.String(45), nullable=True),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("session_timeout_s", sa.Integer(), nullable=False),
        sa.Column("idle_timeout_s", sa.Integer(), nullable=False),
        sa.Column("down_kbit_s", sa.Integer(), nullable=True),
        sa.Column("up_kbit_s", sa.Integer(), nullable=True),
        sa.Column("quota_bytes", sa.BigInteger(), nullable=True),
        _utc("created_utc"),
        _utc("valid_until"),
        _utc("first_used_utc", nullable=True),
        sa.Column("nas_name", sa.String(32), nullable=True),
        sa.Column("nas_address", sa.String(45), nullable=True),
        _utc("revoked_utc", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_radius_logins")),
        sa.UniqueConstraint("username", name=op.f("uq_radius_logins_username")),
        sa.CheckConstraint("session_timeout_s > 0 AND idle_timeout_s > 0", name=op.f("ck_radius_logins_timeouts")),
        sa.CheckConstraint("quota_bytes IS NULL OR quota_bytes > 0", name=op.f("ck_radius_logins_quota")),
    )
    op.create_index(op.f("ix_radius_logins_mac_created_utc"), "radius_logins", ["mac", "created_utc"])
    op.create_index(op.f("ix_radius_logins_session_id"), "radius_logins", ["session_id"])

    op.create_table(
        "radius_accounting",
        sa.Column("id", sa.Integer(), nullable=False),
        _utc("received_utc"),
        _utc("event_utc", nullable=True),
        sa.Column("nas_name", sa.String(32), nullable=False),
        sa.Column("nas_address", sa.String(45), nullable=False),
        sa.Column("nas_identifier", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("acct_session_id", sa.String(64), nullable=False),
        sa.Column("username", sa.String(64), nullable=True),
        sa.Column("session_id", sa.String(64), nullable=True),
        sa.Column("mac", sa.String(17), nullable=True),
        sa.Column("ip", sa.String(45), nullable=True),
        sa.Column("input_octets", sa.BigInteger(), nullable=False),
        sa.Column("output_octets", sa.BigInteger(), nullable=False),
        sa.Column("session_time_s", sa.Integer(), nullable=False),
        sa.Column("terminate_cause", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_radius_accounting")),
        sa.CheckConstraint(
            "status IN ('start', 'interim', 'stop', 'accounting-on', 'accounting-off')",
            name=op.f("ck_radius_accounting_status"),
        ),
        sa.CheckConstraint(
            "input_octets >= 0 AND output_octets >= 0 AND session_time_s >= 0",
            name=op.f("ck_radius_accounting_counters"),
        ),
    )
    op.create_index(op.f("ix_radius_accounting_received_utc"), "radius_accounting", ["received_utc"])
    op.create_index(
        op.f("ix_radius_accounting_username_received_utc"), "radius_accounting", ["username", "received_utc"]
    )
    op.create_index(op.f("ix_radius_accounting_session_id"), "radius_accounting", ["session_id"])
    op.create_index(
        op.f("ix_radius_accounting_nas_name_acct_session_id"), "radius_accounting", ["nas_name", "acct_session_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_radius_accounting_nas_name_acct_session_id"), table_name="radius_accounting")
    op.drop_index(op.f("ix_radius_accounting_session_id"), table_name="radius_accounting")
    op.drop_index(op.f("ix_radius_accounting_username_received_utc"), table_name="radius_accounting")
    op.drop_index(op.f("ix_radius_accounting_received_utc"), table_name="radius_accounting")
    op.drop_table("radius_accounting")
    op.drop_index(op.f("ix_radius_logins_session_id"), table_name="radius_logins")
    op.drop_index(op.f("ix_radius_logins_mac_created_utc"), table_name="radius_logins")
    op.drop_table("radius_logins")

"""Guest Wi-Fi: one-time codes, identified guests and their sessions (the Decree 758 identification log).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _utc(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "guest_code_requests",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("phone_e164", sa.String(16), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("code_digest", sa.String(64), nullable=False),
        sa.Column("mac", sa.String(17), nullable=False),
        sa.Column("ip", sa.String(45), nullable=False),
        _utc("created_utc"),
        _utc("expires_utc"),
        sa.Column("attempts_left", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("provider_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guest_code_requests")),
        sa.CheckConstraint("method IN ('sms', 'call')", name=op.f("ck_guest_code_requests_method")),
        sa.CheckConstraint(
            "status IN ('pending', 'confirmed', 'locked', 'superseded')", name=op.f("ck_guest_code_requests_status")
        ),
        sa.CheckConstraint("attempts_left >= 0", name=op.f("ck_guest_code_requests_attempts_left")),
    )
    op.create_index(op.f("ix_guest_code_requests_created_utc"), "guest_code_requests", ["created_utc"])

    op.create_table(
        "guests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone_e164", sa.String(16), nullable=True),
        sa.Column("voucher_id", sa.String(64), nullable=True),
        sa.Column("guest_name", sa.String(200), nullable=True),
        sa.Column("document_type", sa.String(64), nullable=True),
        sa.Column("issued_by", sa.String(64), nullable=True),
        sa.Column("promotions_consent", sa.Boolean(), nullable=False),
        _utc("promotions_consent_utc", nullable=True),
        _utc("created_utc"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guests")),
        sa.UniqueConstraint("phone_e164", name=op.f("uq_guests_phone_e164")),
        sa.UniqueConstraint("voucher_id", name=op.f("uq_guests_voucher_id")),
        sa.CheckConstraint("(phone_e164 IS NULL) <> (voucher_id IS NULL)", name=op.f("ck_guests_phone_or_voucher")),
    )

    op.create_table(
        "guest_sessions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("guest_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("relogin", sa.Boolean(), nullable=False),
        sa.Column("mac", sa.String(17), nullable=False),
        sa.Column("ip", sa.String(45), nullable=False),
        sa.Column("gateway", sa.String(16), nullable=False),
        sa.Column("gateway_ref", sa.String(255), nullable=True),
        sa.Column("provider_id", sa.String(64), nullable=True),
        sa.Column("consent_version", sa.String(64), nullable=False),
        sa.Column("promotions_consent", sa.Boolean(), nullable=False),
        _utc("start_utc"),
        _utc("expires_utc"),
        _utc("stop_utc", nullable=True),
        sa.Column("end_reason", sa.String(16), nullable=True),
        sa.Column("bytes_in", sa.BigInteger(), nullable=False),
        sa.Column("bytes_out", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guest_sessions")),
        sa.ForeignKeyConstraint(["guest_id"], ["guests.id"], name=op.f("fk_guest_sessions_guest_id_guests")),
        sa.CheckConstraint("method IN ('sms', 'call', 'voucher', 'external')", name=op.f("ck_guest_sessions_method")),
        sa.CheckConstraint(
            "end_reason IS NULL OR end_reason IN "
            "('logout', 'revoked', 'session_timeout', 'gateway', 'relogin', 'gateway_error')",
            name=op.f("ck_guest_sessions_end_reason"),
        ),
        sa.CheckConstraint("(stop_utc IS NULL) = (end_reason IS NULL)", name=op.f("ck_guest_sessions_stop_has_reason")),
        sa.CheckConstraint(
            "stop_utc IS NULL OR stop_utc >= start_utc", name=op.f("ck_guest_sessions_stops_after_start")
        ),
        sa.CheckConstraint("bytes_in >= 0 AND bytes_out >= 0", name=op.f("ck_guest_sessions_bytes")),
    )
    op.create_index(op.f("ix_guest_sessions_guest_id"), "guest_sessions", ["guest_id"])
    op.create_index(op.f("ix_guest_sessions_start_utc"), "guest_sessions", ["start_utc"])
    op.create_index(op.f("ix_guest_sessions_mac_stop_utc"), "guest_sessions", ["mac", "stop_utc"])
    op.create_index(op.f("ix_guest_sessions_stop_utc_expires_utc"), "guest_sessions", ["stop_utc", "expires_utc"])

    op.create_table(
        "guest_remembered_devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("guest_id", sa.Integer(), nullable=False),
        sa.Column("mac", sa.String(17), nullable=False),
        sa.Column("token_digest", sa.String(64), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("consent_version", sa.String(64), nullable=False),
        _utc("created_utc"),
        _utc("expires_utc"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guest_remembered_devices")),
        sa.ForeignKeyConstraint(["guest_id"], ["guests.id"], name=op.f("fk_guest_remembered_devices_guest_id_guests")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_guest_remembered_devices_token_digest")),
        sa.CheckConstraint(
            "method IN ('sms', 'call', 'voucher', 'external')", name=op.f("ck_guest_remembered_devices_method")
        ),
    )
    op.create_index(op.f("ix_guest_remembered_devices_guest_id"), "guest_remembered_devices", ["guest_id"])
    op.create_index(
        op.f("ix_guest_remembered_devices_mac_expires_utc"), "guest_remembered_devices", ["mac", "expires_utc"]
    )

    op.create_table(
        "guest_sms_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        _utc("alerted_utc", nullable=True),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_guest_sms_days")),
        sa.CheckConstraint("sent >= 0", name=op.f("ck_guest_sms_days_sent")),
    )

    op.create_table(
        "guest_log_exports",
        sa.Column("id", sa.Integer(), nullable=False),
        _utc("exported_utc"),
        sa.Column("username", sa.String(32), nullable=False),
        sa.Column("request_ref", sa.String(200), nullable=False),
        _utc("from_utc"),
        _utc("to_utc"),
        sa.Column("filter_text", sa.String(64), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guest_log_exports")),
    )


def downgrade() -> None:
    op.drop_table("guest_log_exports")
    op.drop_table("guest_sms_days")
    op.drop_index(op.f("ix_guest_remembered_devices_mac_expires_utc"), table_name="guest_remembered_devices")
    op.drop_index(op.f("ix_guest_remembered_devices_guest_id"), table_name="guest_remembered_devices")
    op.drop_table("guest_remembered_devices")
    op.drop_index(op.f("ix_guest_sessions_stop_utc_expires_utc"), table_name="guest_sessions")
    op.drop_index(op.f("ix_guest_sessions_mac_stop_utc"), table_name="guest_sessions")
    op.drop_index(op.f("ix_guest_sessions_start_utc"), table_name="guest_sessions")
    op.drop_index(op.f("ix_guest_sessions_guest_id"), table_name="guest_sessions")
    op.drop_table("guest_sessions")
    op.drop_table("guests")
    op.drop_index(op.f("ix_guest_code_requests_created_utc"), table_name="guest_code_requests")
    op.drop_table("guest_code_requests")

"""Evidence hash chain records and signed chain heads.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evidence_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("camera_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("object_key", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_records")),
        sa.UniqueConstraint("camera_id", "seq", name=op.f("uq_evidence_records_camera_id")),
        sa.CheckConstraint("kind IN ('segment', 'clip', 'deletion')", name=op.f("ck_evidence_records_kind")),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_evidence_records_seq_positive")),
    )
    op.create_index(op.f("ix_evidence_records_camera_id_recorded_at"), "evidence_records", ["camera_id", "recorded_at"])
    op.create_index(op.f("ix_evidence_records_camera_id_object_key"), "evidence_records", ["camera_id", "object_key"])
    op.create_table(
        "evidence_signatures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("camera_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("key_fingerprint", sa.String(64), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_signatures")),
    )
    op.create_index(op.f("ix_evidence_signatures_camera_id_seq"), "evidence_signatures", ["camera_id", "seq"])


def downgrade() -> None:
    op.drop_index(op.f("ix_evidence_signatures_camera_id_seq"), table_name="evidence_signatures")
    op.drop_table("evidence_signatures")
    op.drop_index(op.f("ix_evidence_records_camera_id_object_key"), table_name="evidence_records")
    op.drop_index(op.f("ix_evidence_records_camera_id_recorded_at"), table_name="evidence_records")
    op.drop_table("evidence_records")

"""Footage index: one row per recorded segment file.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("camera_id", sa.String(32), nullable=False),
        sa.Column("stream", sa.String(8), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("start_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_utc", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("codec", sa.String(8), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("has_motion", sa.Boolean(), nullable=False),
        sa.Column("motion_heatmap", sa.LargeBinary(), nullable=True),
        sa.Column("legal_hold", sa.Boolean(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("missing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
        sa.UniqueConstraint("key", name=op.f("uq_segments_key")),
        sa.CheckConstraint("codec IN ('h264', 'hevc')", name=op.f("ck_segments_codec")),
        sa.CheckConstraint("stream IN ('main')", name=op.f("ck_segments_stream")),
        sa.CheckConstraint("status IN ('recording', 'complete', 'missing')", name=op.f("ck_segments_status")),
        sa.CheckConstraint(
            "status = 'recording' OR "
            "(end_utc IS NOT NULL AND duration_s IS NOT NULL AND size_bytes IS NOT NULL AND sha256 IS NOT NULL)",
            name=op.f("ck_segments_finished_is_complete"),
        ),
    )
    op.create_index(op.f("ix_segments_camera_id_start_utc"), "segments", ["camera_id", "start_utc"])


def downgrade() -> None:
    op.drop_index(op.f("ix_segments_camera_id_start_utc"), table_name="segments")
    op.drop_table("segments")

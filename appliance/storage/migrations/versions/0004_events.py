"""Events: motion and camera-health events, with their peak snapshot and clip.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(96), nullable=False),
        sa.Column("camera_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("start_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_utc", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clip_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("clip_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("armed", sa.Boolean(), nullable=False),
        sa.Column("peak_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("peak_score", sa.Float(), nullable=True),
        sa.Column("peak_boxes", sa.Text(), nullable=True),
        sa.Column("snapshot_jpeg", sa.LargeBinary(), nullable=True),
        sa.Column("thumbnail_jpeg", sa.LargeBinary(), nullable=True),
        sa.Column("end_reason", sa.String(24), nullable=True),
        sa.Column("clip_key", sa.String(255), nullable=True),
        sa.Column("clip_sha256", sa.String(64), nullable=True),
        sa.Column("clip_size", sa.BigInteger(), nullable=True),
        sa.Column("clip_duration_s", sa.Float(), nullable=True),
        sa.Column("rendition_key", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.CheckConstraint(
            "kind IN ('motion', 'offline', 'tamper_covered', 'tamper_defocus', 'tamper_scene_change')",
            name=op.f("ck_events_kind"),
        ),
        sa.CheckConstraint(
            "clip_key IS NULL OR (clip_sha256 IS NOT NULL AND clip_size IS NOT NULL AND clip_duration_s IS NOT NULL)",
            name=op.f("ck_events_clip_is_complete"),
        ),
        sa.CheckConstraint("end_utc IS NULL OR end_utc >= start_utc", name=op.f("ck_events_ends_after_start")),
    )
    op.create_index(op.f("ix_events_camera_id_start_utc"), "events", ["camera_id", "start_utc"])


def downgrade() -> None:
    op.drop_index(op.f("ix_events_camera_id_start_utc"), table_name="events")
    op.drop_table("events")

"""Cameras: legal holds on footage, placed and released from the command line (later the console).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("camera_id", sa.String(32), nullable=True),
        sa.Column("start_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_utc", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
        sa.CheckConstraint("end_utc > start_utc", name=op.f("ck_legal_holds_ends_after_start")),
        sa.CheckConstraint("length(trim(reason)) > 0", name=op.f("ck_legal_holds_reason_given")),
        sa.CheckConstraint(
            "(released_at IS NULL) = (released_by IS NULL)", name=op.f("ck_legal_holds_release_is_complete")
        ),
    )


def downgrade() -> None:
    op.drop_table("legal_holds")

"""segmented proxies: the segment cache and each proxy's plan

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("init_sha256", sa.String(length=64), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("ticks", sa.BigInteger(), nullable=False),
        sa.Column("timescale", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("render_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "proxy_plans",
        sa.Column("render_id", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("audio_key", sa.String(length=200), nullable=True),
        sa.Column("audio_done", sa.Boolean(), nullable=False),
        sa.Column("playable", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["render_id"], ["renders.id"]),
        sa.PrimaryKeyConstraint("render_id"),
    )
    op.create_table(
        "plan_segments",
        sa.Column("render_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("segment_key", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["render_id"], ["renders.id"]),
        sa.PrimaryKeyConstraint("render_id", "position"),
    )
    op.create_index("ix_plan_segments_segment_key", "plan_segments", ["segment_key"])


def downgrade() -> None:
    op.drop_index("ix_plan_segments_segment_key", table_name="plan_segments")
    op.drop_table("plan_segments")
    op.drop_table("proxy_plans")
    op.drop_table("segments")

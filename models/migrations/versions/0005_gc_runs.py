"""gc runs, the cluster-wide gc lock, files pending on exports

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gc_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("holder", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("marked", sa.Integer(), nullable=False),
        sa.Column("archived", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("proxies_reclaimed", sa.Integer(), nullable=False),
        sa.Column("bytes_marked", sa.BigInteger(), nullable=False),
        sa.Column("bytes_moved", sa.BigInteger(), nullable=False),
        sa.Column("bytes_freed", sa.BigInteger(), nullable=False),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    gc_lock = op.create_table(
        "gc_lock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    # The lock is one row that always exists: taking it is a conditional UPDATE.
    op.bulk_insert(gc_lock, [{"id": 1, "run_id": None, "lease_until": None}])
    with op.batch_alter_table("gc_audit", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_gc_audit_run_id"), ["run_id"], unique=False)
    with op.batch_alter_table("exports", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("files_pending", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_index(batch_op.f("ix_exports_files_pending"), ["files_pending"])


def downgrade() -> None:
    with op.batch_alter_table("exports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exports_files_pending"))
        batch_op.drop_column("files_pending")
    with op.batch_alter_table("gc_audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gc_audit_run_id"))
        batch_op.drop_column("run_id")
    op.drop_table("gc_lock")
    op.drop_table("gc_runs")

"""each version records how many ops it renders, so appends need not load the history

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("op_count", sa.Integer(), nullable=False, server_default="0"))
    bind = op.get_bind()
    own = dict(
        ((project, version), count)
        for project, version, count in bind.execute(
            sa.text(
                "SELECT project_id, version, count(*) FROM edit_operations"
                " GROUP BY project_id, version"
            )
        )
    )
    # A version renders its parent's ops and its own; parents always have lower numbers.
    totals: dict[tuple[int, int], int] = {}
    for project, number, parent in bind.execute(
        sa.text("SELECT project_id, number, parent FROM versions ORDER BY project_id, number")
    ):
        base = totals.get((project, parent), 0) if parent is not None else 0
        totals[(project, number)] = base + own.get((project, number), 0)
    changed = [{"p": p, "n": n, "c": c} for (p, n), c in totals.items() if c]
    if changed:
        bind.execute(
            sa.text("UPDATE versions SET op_count = :c WHERE project_id = :p AND number = :n"),
            changed,
        )


def downgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.drop_column("op_count")

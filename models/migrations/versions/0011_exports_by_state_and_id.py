"""exports: the GC pages through a state by (gc_state, id); fewer index writes per change

(gc_state, id) replaces (gc_state); the project_id index goes (uq_exports_project_version
starts with it); on PostgreSQL only pending rows are in the files_pending index.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("exports", schema=None) as batch_op:
        batch_op.create_index("ix_exports_gc_state_id", ["gc_state", "id"], unique=False)
        batch_op.drop_index("ix_exports_gc_state")
        batch_op.drop_index("ix_exports_project_id")
        batch_op.drop_index("ix_exports_files_pending")
        batch_op.create_index(
            "ix_exports_files_pending",
            ["files_pending"],
            unique=False,
            postgresql_where=sa.text("files_pending"),
        )


def downgrade() -> None:
    with op.batch_alter_table("exports", schema=None) as batch_op:
        batch_op.drop_index("ix_exports_files_pending")
        batch_op.create_index("ix_exports_files_pending", ["files_pending"], unique=False)
        batch_op.create_index("ix_exports_project_id", ["project_id"], unique=False)
        batch_op.create_index("ix_exports_gc_state", ["gc_state"], unique=False)
        batch_op.drop_index("ix_exports_gc_state_id")

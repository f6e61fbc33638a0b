"""a proxy's sound is stored once per content key: plans are found by their sound

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plans written before keep the per-version folder they name; both kinds are served and
    # collected by the name in the plan.
    op.create_index("ix_proxy_plans_audio_key", "proxy_plans", ["audio_key"])


def downgrade() -> None:
    op.drop_index("ix_proxy_plans_audio_key", table_name="proxy_plans")

"""api_tokens: several bearer tokens per user, each revocable; users keep no token

Every user's token moves to api_tokens with its issue time and last use, so every token in
use keeps working.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_api_tokens_token_hash", "api_tokens", ["token_hash"], unique=True)
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"], unique=False)
    op.execute(
        "INSERT INTO api_tokens (user_id, token_hash, label, created_at, last_used_at) "
        "SELECT id, token_hash, 'first token', token_issued_at, last_used_at FROM users "
        "WHERE token_hash IS NOT NULL"
    )
    op.drop_index("ix_users_token_hash", table_name="users")
    op.drop_column("users", "token_hash")
    op.drop_column("users", "token_issued_at")
    op.drop_column("users", "last_used_at")


def downgrade() -> None:
    # A user keeps its oldest token; the others are revoked by the downgrade.
    op.add_column("users", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("users", sa.Column("token_issued_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("users", sa.Column("token_hash", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE users SET token_hash = t.token_hash, token_issued_at = t.created_at, "
        "last_used_at = t.last_used_at FROM (SELECT DISTINCT ON (user_id) * FROM api_tokens "
        "ORDER BY user_id, id) AS t WHERE t.user_id = users.id"
        if op.get_bind().dialect.name == "postgresql"
        else "UPDATE users SET token_hash = (SELECT token_hash FROM api_tokens t WHERE "
        "t.user_id = users.id ORDER BY t.id LIMIT 1), token_issued_at = (SELECT created_at FROM "
        "api_tokens t WHERE t.user_id = users.id ORDER BY t.id LIMIT 1)"
    )
    op.create_index("ix_users_token_hash", "users", ["token_hash"], unique=True)
    op.drop_index("ix_api_tokens_user_id", table_name="api_tokens")
    op.drop_index("ix_api_tokens_token_hash", table_name="api_tokens")
    op.drop_table("api_tokens")

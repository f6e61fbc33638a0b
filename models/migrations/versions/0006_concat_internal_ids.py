"""concat ops name the appended video by its row id, not by the API's public id

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22

Stored history must not depend on how the API spells ids. Each concat row already holds
the video's row id in ``edit_operations.video_id``; its params get the same number. This
is the one time the append-only log is rewritten, and only in this field.

``versions.ops_hash`` is kept as it was. Render content keys are built from it, with a
preset that the database does not record (the export preset follows the settings), so
they could not be rebuilt; and a revert copies its target's hash to reuse that version's
renders. An old hash names the same edit it always named, so equal keys still mean equal
output. The only cost: an edit made before this migration and the same edit made after it
have different hashes, so the second renders again instead of reusing the first file.
"""

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000
OPS = sa.table(
    "edit_operations",
    sa.column("id", sa.Integer),
    sa.column("type", sa.String),
    sa.column("params", sa.JSON),
    sa.column("video_id", sa.Integer),
)


def _decode(public: object) -> int | None:
    """The row id in a public video id, as the API spelled them up to 0005."""
    if not isinstance(public, str):
        return None
    try:
        padded = public + "=" * (-len(public) % 4)
        kind, _, pk = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return int(pk) if kind == "Video" and pk.isascii() and pk.isdigit() else None


def _encode(pk: int) -> str:
    return base64.urlsafe_b64encode(f"Video:{pk}".encode()).decode().rstrip("=")


def _rewrite(convert: Any) -> None:
    """Apply ``convert(row id, params, video_id) -> new videoId`` to every concat row."""
    bind = op.get_bind()
    after = 0
    while True:
        rows = bind.execute(
            sa.select(OPS.c.id, OPS.c.params, OPS.c.video_id)
            .where(OPS.c.type == "concat", OPS.c.id > after)
            .order_by(OPS.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for row_id, params, video_id in rows:
            value = convert(row_id, params.get("videoId"), video_id)
            if value != params.get("videoId"):
                bind.execute(
                    sa.update(OPS)
                    .where(OPS.c.id == row_id)
                    .values(params={**params, "videoId": value})
                )
        after = rows[-1][0]


def upgrade() -> None:
    def to_key(row_id: int, value: object, video_id: int | None) -> int:
        if isinstance(value, int):
            return value  # already a row id
        key = video_id if video_id is not None else _decode(value)
        if key is None:
            raise RuntimeError(f"edit operation {row_id}: the concat of {value!r} names no video")
        return key

    _rewrite(to_key)


def downgrade() -> None:
    _rewrite(lambda _row, value, _video: _encode(value) if isinstance(value, int) else value)

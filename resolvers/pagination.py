"""Keyset pagination: opaque cursors over a monotonically ordered integer key."""

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlmodel.sql.expression import SelectOfScalar

from models.db import Database
from resolvers import ids
from resolvers.errors import BadInputError

T = TypeVar("T")
MAX_PAGE = 100


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows, each with its cursor, and whether more follow."""

    items: list[tuple[str, T]]
    has_next: bool

    @property
    def end_cursor(self) -> str | None:
        """The cursor to pass as ``after`` for the next page."""
        return self.items[-1][0] if self.items else None


def encode_cursor(key: int) -> str:
    """An opaque cursor for a row key."""
    return base64.urlsafe_b64encode(f"k:{key}".encode()).decode()


def decode_cursor(cursor: str | None) -> int | None:
    """The key behind a cursor; a malformed one is ``BadInputError``."""
    if cursor is None:
        return None
    try:
        prefix, _, text = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        key = ids.key(text)
        if prefix == "k" and key is not None:
            return key
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise BadInputError(f"{cursor!r} is not a cursor this API handed out")


def page_size(first: int) -> int:
    """Validate ``first``: between 0 and ``MAX_PAGE``."""
    if not 0 <= first <= MAX_PAGE:
        raise BadInputError(f"first must be between 0 and {MAX_PAGE}, not {first}")
    return first


async def newest_first(
    db: Database,
    query: SelectOfScalar[T],
    key: Any,
    key_of: Callable[[T], int | None],
    *,
    first: int,
    after: str | None,
) -> Page[T]:
    """One page of ``query`` in descending ``key`` order, after the row ``after`` names."""
    first = page_size(first)
    after_key = decode_cursor(after)
    if after_key is not None:
        query = query.where(key < after_key)
    async with db.read() as session:
        # One row more than asked says whether another page follows.
        rows = list((await session.exec(query.order_by(key.desc()).limit(first + 1))).all())
    items = [(encode_cursor(key_of(row) or 0), row) for row in rows]
    return Page(items=items[:first], has_next=len(items) > first)

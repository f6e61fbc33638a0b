"""Keyset pagination: opaque cursors over a monotonically ordered integer key."""

import base64
import binascii
from dataclasses import dataclass
from typing import Generic, TypeVar

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
        prefix, _, key = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if prefix == "k" and key.lstrip("-").isdigit():
            return int(key)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise BadInputError(f"{cursor!r} is not a cursor this API handed out")


def page_size(first: int) -> int:
    """Validate ``first``: between 0 and ``MAX_PAGE``."""
    if not 0 <= first <= MAX_PAGE:
        raise BadInputError(f"first must be between 0 and {MAX_PAGE}, not {first}")
    return first


def make_page(rows: list[T], keys: list[int], first: int) -> Page[T]:
    """Build a page from up to ``first + 1`` rows fetched in order (the extra one says 'more')."""
    pairs = [(encode_cursor(k), r) for k, r in zip(keys, rows, strict=True)]
    return Page(items=pairs[:first], has_next=len(pairs) > first)

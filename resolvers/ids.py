"""Public ids: opaque, globally unique strings that name a type and a row (Relay style)."""

import base64
import binascii

from resolvers.errors import NotFoundError

# Row ids are INTEGER columns: 32-bit on PostgreSQL. A larger number names no row, and
# handing it to the driver would fail there (and past 2**63 on SQLite) instead.
MAX_KEY = 2**31 - 1


def key(text: str) -> int | None:
    """The row key an id or cursor spells in ASCII digits, or None if it cannot name a row."""
    # Bounded before int(): no 5,000-digit conversions, no "²" or other Unicode digits.
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_KEY)):
        return None
    value = int(text)
    return value if value <= MAX_KEY else None


def encode(kind: str, pk: int) -> str:
    """The public id of row ``pk`` of ``kind``, e.g. ``encode("Video", 3)``."""
    return base64.urlsafe_b64encode(f"{kind}:{pk}".encode()).decode().rstrip("=")


def decode_any(public_id: str) -> tuple[str, int] | None:
    """``(kind, pk)`` for a well-formed id, else None."""
    try:
        padded = public_id + "=" * (-len(public_id) % 4)
        kind, _, pk = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
        row = key(pk)
        return (kind, row) if kind and row is not None else None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def decode(public_id: str, kind: str) -> int:
    """The row id behind a public id of ``kind``; anything else is ``NotFoundError``."""
    decoded = decode_any(public_id)
    if decoded is None or decoded[0] != kind:
        raise NotFoundError(kind, _shown(public_id))
    return decoded[1]


def _shown(text: str) -> str:
    """A client's id as an error message may quote it: printable, and not too long."""
    clean = "".join(c if c.isprintable() else "?" for c in text[:64])
    return clean + ("…" if len(text) > 64 else "")

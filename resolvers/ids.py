"""Public ids: opaque, globally unique strings that name a type and a row (Relay style)."""

import base64
import binascii

from resolvers.errors import NotFoundError


def encode(kind: str, pk: int) -> str:
    """The public id of row ``pk`` of ``kind``, e.g. ``encode("Video", 3)``."""
    return base64.urlsafe_b64encode(f"{kind}:{pk}".encode()).decode().rstrip("=")


def decode_any(public_id: str) -> tuple[str, int] | None:
    """``(kind, pk)`` for a well-formed id, else None."""
    try:
        padded = public_id + "=" * (-len(public_id) % 4)
        kind, _, pk = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
        return (kind, int(pk)) if kind and pk.isdigit() else None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def decode(public_id: str, kind: str) -> int:
    """The row id behind a public id of ``kind``; anything else is ``NotFoundError``."""
    decoded = decode_any(public_id)
    if decoded is None or decoded[0] != kind:
        raise NotFoundError(kind, public_id)
    return decoded[1]

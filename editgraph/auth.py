"""Bearer tokens at the edge: from the Authorization header or the websocket init payload."""

from datetime import timedelta

from models.db import Database
from resolvers import users
from resolvers.users import Actor


def bearer(value: str | None) -> str | None:
    """The token inside ``Bearer <token>``, or None."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def authenticate(
    db: Database, authorization: str | None, *, token_ttl_days: int | None = None
) -> Actor | None:
    """The actor behind an Authorization value, or None when it is missing, unknown or
    older than ``token_ttl_days``."""
    token = bearer(authorization)
    if not token:
        return None
    ttl = timedelta(days=token_ttl_days) if token_ttl_days is not None else None
    return await users.actor_for_token(db=db, token=token, ttl=ttl)

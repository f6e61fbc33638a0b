"""Bearer tokens at the edge: from the Authorization header or the websocket init payload."""

from models.db import Database
from resolvers import users
from resolvers.users import Actor


def bearer(value: str | None) -> str | None:
    """The token inside ``Bearer <token>``, or None."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def authenticate(db: Database, authorization: str | None) -> Actor | None:
    """The actor behind an Authorization value, or None when it is missing or unknown."""
    token = bearer(authorization)
    return await users.actor_for_token(db=db, token=token) if token else None

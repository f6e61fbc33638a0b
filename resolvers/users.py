"""Accounts: bearer tokens (stored as hashes only) and the acting user of a request."""

import hashlib
import logging
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import DBAPIError
from sqlmodel import col, func, or_, select, update

from models.db import Database
from models.tables import ApiToken, User, utcnow
from resolvers import ids
from resolvers.errors import BadInputError, NotFoundError

TOKEN_PREFIX = "eg_"  # noqa: S105 (a prefix that makes tokens recognisable, not a secret)
# Last use is recorded to this precision: one write per user per minute, not per request.
LAST_USED_PRECISION = timedelta(minutes=1)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who is calling: every resolver that touches owned data takes one."""

    id: int
    name: str
    is_admin: bool
    token_id: int | None = None  # the token this request came with (None: the CLI)

    @classmethod
    def of(cls, user: User, token_id: int | None = None) -> "Actor":
        """The actor for a user row."""
        assert user.id is not None
        return cls(id=user.id, name=user.name, is_admin=user.is_admin, token_id=token_id)


def hash_token(token: str) -> str:
    """The stored form of a token. Tokens are 256 random bits, so a plain SHA-256 suffices."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh token and its stored hash."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token)


def clean_label(label: str) -> str:
    """A token's label with its whitespace tidied; at most 100 characters."""
    cleaned = " ".join(label.split())
    if len(cleaned) > 100:
        raise BadInputError("a token label is at most 100 characters")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in cleaned):
        raise BadInputError("a token label has no control characters")
    return cleaned


async def create_user(*, db: Database, name: str, is_admin: bool = False) -> tuple[User, str]:
    """Create a user with a first token, and return both; the token is never shown again."""
    name = name.strip()
    if not name or len(name) > 100:
        raise BadInputError("a user name is 1 to 100 characters")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        raise BadInputError("a user name has no control characters")
    token, hashed = new_token()
    user = User(name=name, is_admin=is_admin)
    async with db.write() as session:
        session.add(user)
        await session.flush()
        assert user.id is not None
        session.add(ApiToken(user_id=user.id, token_hash=hashed, label="first token"))
    return user, token


async def create_token(*, db: Database, user_id: int, label: str = "") -> tuple[ApiToken, str]:
    """Another token for a user (a device, a script); shown this once."""
    token, hashed = new_token()
    row = ApiToken(user_id=user_id, token_hash=hashed, label=clean_label(label))
    async with db.write() as session:
        session.add(row)
    return row, token


async def tokens_of(*, db: Database, user_id: int) -> list[ApiToken]:
    """A user's tokens, oldest first (their hashes stay in the database)."""
    async with db.read() as session:
        rows = await session.exec(
            select(ApiToken).where(ApiToken.user_id == user_id).order_by(col(ApiToken.id))
        )
        return list(rows.all())


async def revoke_token(*, db: Database, actor: Actor, token_id: int) -> ApiToken:
    """Revoke one of the actor's tokens (an admin: anyone's); NotFound otherwise. Requests
    with it are refused from then on."""
    async with db.write() as session:
        row = await session.get(ApiToken, token_id, with_for_update=True)
        if row is None or (row.user_id != actor.id and not actor.is_admin):
            raise NotFoundError("Token", ids.encode("ApiToken", token_id))
        await session.delete(row)
    return row


async def token_valid(*, db: Database, token_id: int, ttl: timedelta | None = None) -> bool:
    """Whether a token still holds: not revoked, not expired."""
    async with db.read() as session:
        row = await session.get(ApiToken, token_id)
    return row is not None and (ttl is None or row.created_at + ttl > utcnow())


async def user_by_name(*, db: Database, name: str) -> User | None:
    """The account with this name (the oldest, if several share it)."""
    async with db.read() as session:
        rows = await session.exec(select(User).where(User.name == name).order_by(col(User.id)))
        return rows.first()


async def actor_for_token(
    *, db: Database, token: str, ttl: timedelta | None = None
) -> Actor | None:
    """The actor a bearer token belongs to, or None for an unknown, revoked or expired one."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    async with db.read() as session:
        found = (
            await session.exec(
                select(ApiToken, User)
                .join(User, col(User.id) == col(ApiToken.user_id))
                .where(ApiToken.token_hash == hash_token(token))
            )
        ).first()
    if found is None:
        return None
    row, user = found
    now = utcnow()
    if ttl is not None and row.created_at + ttl <= now:
        return None
    if row.last_used_at is None or row.last_used_at <= now - LAST_USED_PRECISION:
        await _record_use(db, row, now)
    return Actor.of(user, token_id=row.id)


async def _record_use(db: Database, token: ApiToken, now: datetime) -> None:
    """Set ``last_used_at``, unless a concurrent request with the same token just did."""
    stale = now - LAST_USED_PRECISION
    try:
        async with db.write() as session:
            await session.exec(
                update(ApiToken)
                .where(
                    col(ApiToken.id) == token.id,
                    or_(col(ApiToken.last_used_at).is_(None), col(ApiToken.last_used_at) <= stale),
                )
                .values(last_used_at=now)
            )
    except DBAPIError:
        # Last use is a record, not a gate: a busy database must not refuse the request.
        log.warning("could not record the last use of token %s", token.id, exc_info=True)


async def count_users(*, db: Database) -> int:
    """How many accounts exist (zero on a fresh install)."""
    async with db.read() as session:
        return (await session.exec(select(func.count(col(User.id))))).one()


async def list_users(*, db: Database) -> list[User]:
    """Every account, oldest first (admins only, enforced by the caller's schema field)."""
    async with db.read() as session:
        return list((await session.exec(select(User).order_by(col(User.id)))).all())

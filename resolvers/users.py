"""Accounts: bearer tokens (stored as hashes only) and the acting user of a request."""

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import DBAPIError
from sqlmodel import col, func, or_, select, update

from models.db import Database
from models.tables import User, utcnow

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

    @classmethod
    def of(cls, user: User) -> "Actor":
        """The actor for a user row."""
        assert user.id is not None
        return cls(id=user.id, name=user.name, is_admin=user.is_admin)


def hash_token(token: str) -> str:
    """The stored form of a token. Tokens are 256 random bits, so a plain SHA-256 suffices."""
    return hashlib.sha256(token.encode()).hexdigest()


async def create_user(*, db: Database, name: str, is_admin: bool = False) -> tuple[User, str]:
    """Create a user and return it with its token, which is never retrievable again."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("a user name is 1 to 100 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    user = User(name=name, is_admin=is_admin, token_hash=hash_token(token))
    async with db.write() as session:
        session.add(user)
    return user, token


async def actor_for_token(
    *, db: Database, token: str, ttl: timedelta | None = None
) -> Actor | None:
    """The actor a bearer token belongs to, or None for an unknown or expired token."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    async with db.read() as session:
        user = (
            await session.exec(select(User).where(User.token_hash == hash_token(token)))
        ).first()
    if user is None:
        return None
    now = utcnow()
    if ttl is not None and user.token_issued_at + ttl <= now:
        return None
    if user.last_used_at is None or user.last_used_at <= now - LAST_USED_PRECISION:
        await _record_use(db, user, now)
    return Actor.of(user)


async def _record_use(db: Database, user: User, now: datetime) -> None:
    """Set ``last_used_at``, unless a concurrent request of the same user just did."""
    stale = now - LAST_USED_PRECISION
    try:
        async with db.write() as session:
            await session.exec(
                update(User)
                .where(
                    col(User.id) == user.id,
                    or_(col(User.last_used_at).is_(None), col(User.last_used_at) <= stale),
                )
                .values(last_used_at=now)
            )
    except DBAPIError:
        # Last use is a record, not a gate: a busy database must not refuse the request.
        log.warning("could not record the last use of user %s", user.id, exc_info=True)


async def count_users(*, db: Database) -> int:
    """How many accounts exist (zero on a fresh install)."""
    async with db.read() as session:
        return (await session.exec(select(func.count(col(User.id))))).one()


async def list_users(*, db: Database) -> list[User]:
    """Every account, oldest first (admins only, enforced by the caller's schema field)."""
    async with db.read() as session:
        return list((await session.exec(select(User).order_by(col(User.id)))).all())

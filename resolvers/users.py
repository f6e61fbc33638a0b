"""Accounts: bearer tokens (stored as hashes only) and the acting user of a request."""

import hashlib
import secrets
from dataclasses import dataclass

from sqlmodel import col, func, select

from models.db import Database
from models.tables import User

TOKEN_PREFIX = "eg_"  # noqa: S105 (a prefix that makes tokens recognisable, not a secret)


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


async def actor_for_token(*, db: Database, token: str) -> Actor | None:
    """The actor a bearer token belongs to, or None for an unknown token."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    async with db.read() as session:
        user = (
            await session.exec(select(User).where(User.token_hash == hash_token(token)))
        ).first()
    return Actor.of(user) if user else None


async def count_users(*, db: Database) -> int:
    """How many accounts exist (zero on a fresh install)."""
    async with db.read() as session:
        return (await session.exec(select(func.count(col(User.id))))).one()


async def list_users(*, db: Database) -> list[User]:
    """Every account, oldest first (admins only, enforced by the caller's schema field)."""
    async with db.read() as session:
        return list((await session.exec(select(User).order_by(col(User.id)))).all())

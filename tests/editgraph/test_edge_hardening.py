"""The edge under odd or hostile input: capped JSON bodies, typed errors instead of 500s,
expiring tokens and their last use."""

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select, update

from editgraph.settings import Settings
from models.db import Database
from models.tables import ApiToken, User, utcnow
from tests.helpers.api import Api, AppFactory, code_of

ME = "{ me { name } }"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_json_bodies_are_capped_before_they_are_read(
    make_api: AppFactory, tokens: dict[str, str]
) -> None:
    limit = 64 * 1024
    json_type = {"Content-Type": "application/json"}
    async with make_api(max_json_bytes=limit) as api:
        # Declared too large: refused on the header alone, with or without a token.
        for headers in ({}, auth(tokens["alice"])):
            refused = await api.client.post(
                "/graphql",
                content=b"{}",
                headers={**headers, **json_type, "Content-Length": str(300 * 1024 * 1024)},
            )
            assert refused.status_code == 413 and "EDITGRAPH_MAX_JSON_BYTES" in refused.text
        # Streamed without a length: counted as it arrives, and no longer read once over.
        sent = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            yield b'{"query": "{ me { name } }", "variables": {"pad": "'
            for _ in range(64):
                sent += 1
                yield b"x" * 16 * 1024
            yield b'"}}'

        streamed = await api.client.post(
            "/graphql", content=chunks(), headers={**auth(tokens["alice"]), **json_type}
        )
        assert streamed.status_code == 413
        assert sent < 8  # 64 KiB of the 1 MiB were taken in
        # Under the limit, nothing changes.
        padded = {"query": ME, "variables": {"pad": "x" * (limit // 2)}}
        ok = await api.client.post("/graphql", json=padded, headers=auth(tokens["alice"]))
        assert ok.status_code == 200 and ok.json()["data"]["me"]["name"] == "alice"


async def test_the_json_cap_is_one_mebibyte_by_default(api: Api, tokens: dict[str, str]) -> None:
    body = json.dumps({"query": ME, "variables": {"pad": "x" * (1024 * 1024)}})
    response = await api.client.post(
        "/graphql",
        content=body.encode(),
        headers={**auth(tokens["alice"]), "Content-Type": "application/json"},
    )
    assert response.status_code == 413


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


async def test_bodies_that_are_not_an_operation_are_a_400(api: Api, tokens: dict[str, str]) -> None:
    bodies = [
        b'"hello"',
        b"42",
        b"null",
        b'[{"query": "{ me { name } }"}, 3]',
        b"\xff\xfe{}",  # not UTF-8
        b'{"query": "{ me { name } }", "variables": {"v": ' + deep(200_000).encode() + b"}}",
    ]
    for token in (tokens["alice"], None):
        for body in bodies:
            response = await api.client.post(
                "/graphql",
                content=body,
                headers={"Content-Type": "application/json", **(auth(token) if token else {})},
            )
            assert response.status_code == 400, (body[:40], response.text)
    # Nesting that JSON can hold is an ordinary GraphQL error about the variable's type.
    typed = await api.query(
        tokens["alice"], "query($v: [Int]) { me { name } }", {"v": json.loads(deep(500))}
    )
    assert typed["data"] is None and "$v" in typed["errors"][0]["message"]


async def test_one_file_mapped_to_two_variables_is_a_400_without_a_path(
    api: Api, tokens: dict[str, str], media: dict[str, Path], settings: Settings
) -> None:
    operations = json.dumps(
        {
            "query": "mutation($a: Upload!, $b: Upload!) { "
            "a: uploadVideo(file: $a) { __typename } b: uploadVideo(file: $b) { __typename } }",
            "variables": {"a": None, "b": None},
        }
    )
    with media["clip"].open("rb") as fh:
        response = await api.client.post(
            "/graphql",
            data={"operations": operations, "map": '{"0": ["variables.a", "variables.b"]}'},
            files={"0": ("clip.mp4", fh, "video/mp4")},
            headers=auth(tokens["alice"]),
        )
    assert response.status_code == 400 and "one variable per file" in response.text
    assert str(settings.media_root) not in response.text and "/tmp" not in response.text
    assert list((settings.media_root / "temp").iterdir()) == []
    assert list((settings.media_root / "videos").iterdir()) == []


async def test_tokens_expire_after_the_ttl_and_record_their_last_use(
    make_api: AppFactory, db: Database, tokens: dict[str, str]
) -> None:
    async def user(name: str) -> ApiToken:
        """The user's one token (each fixture user has one)."""
        async with db.read() as session:
            return (
                await session.exec(
                    select(ApiToken).join(User).where(User.name == name)
                )
            ).one()

    async def set_times(name: str, **values: Any) -> None:
        owner = select(User.id).where(User.name == name).scalar_subquery()
        async with db.write() as session:
            await session.exec(
                update(ApiToken).where(col(ApiToken.user_id) == owner).values(**values)
            )

    assert (await user("alice")).last_used_at is None
    async with make_api(token_ttl_days=30) as api:
        before = utcnow()
        assert (await api.data(tokens["alice"], ME))["me"]["name"] == "alice"
        first_use = (await user("alice")).last_used_at
        assert first_use is not None and first_use >= before
        # Requests within the minute do not write again.
        await api.data(tokens["alice"], ME)
        assert (await user("alice")).last_used_at == first_use
        stale = utcnow() - timedelta(minutes=2)
        await set_times("alice", last_used_at=stale)
        await api.data(tokens["alice"], ME)
        last = (await user("alice")).last_used_at
        assert last is not None and last > stale
        # Alice's token was issued 31 days ago, Bob's 29: hers has expired.
        await set_times("alice", created_at=utcnow() - timedelta(days=31))
        await set_times("bob", created_at=utcnow() - timedelta(days=29))
        assert code_of(await api.query(tokens["alice"], ME)) == "UNAUTHENTICATED"
        assert (await api.data(tokens["bob"], ME))["me"]["name"] == "bob"
    # Without EDITGRAPH_TOKEN_TTL_DAYS tokens do not expire.
    async with make_api() as forever:
        assert (await forever.data(tokens["alice"], ME))["me"]["name"] == "alice"

"""Abuse resistance: query limits, production mode, render rate limits, hostile uploads."""

from pathlib import Path
from typing import Any

import pytest
from graphql import get_introspection_query
from sqlmodel import select

from editgraph.settings import Settings
from models.db import Database
from models.tables import Export
from resolvers import users
from tests.helpers.api import APPEND, CREATE, Api, AppFactory, code_of, upload

PRODUCTION: dict[str, Any] = {
    "env": "production",
    "secret_key": "s" * 40,
    "allowed_origins": ["https://app.test"],
}


def code(body: dict[str, Any]) -> str:
    result: str = body["errors"][0]["extensions"]["code"]
    return result


async def test_queries_over_a_limit_are_refused_before_they_run(
    make_api: AppFactory, tokens: dict[str, str]
) -> None:
    alice = tokens["alice"]
    async with make_api(max_query_depth=4, max_query_aliases=4, max_query_tokens=60) as api:
        deep = "{ projects { edges { node { versions { nodes { ops { type } } } } } } }"
        body = await api.query(alice, deep)
        assert code(body) == "QUERY_TOO_COMPLEX" and "deep" in body["errors"][0]["message"]
        assert body["data"] is None
        assert "errors" not in await api.query(alice, "{ projects { nodes { name } } }")
        # Aliases count wherever they are reached, fragments included, each time spread.
        fragments = (
            "fragment F on Query { a: me { id } b: me { id } } query { ...F ...F c: me { id } }"
        )
        body = await api.query(alice, fragments)
        assert code(body) == "QUERY_TOO_COMPLEX" and "5 aliases" in body["errors"][0]["message"]
        many = "{ " + " ".join(f"f{i}: __typename" for i in range(40)) + " }"
        body = await api.query(alice, many)
        assert code(body) == "QUERY_TOO_COMPLEX" and "tokens" in body["errors"][0]["message"]


async def test_batches_are_limited(make_api: AppFactory, tokens: dict[str, str]) -> None:
    auth = {"Authorization": f"Bearer {tokens['alice']}"}
    async with make_api(max_batch_operations=2) as api:
        two = [{"query": "{ me { name } }"}] * 2
        ok = await api.client.post("/graphql", json=two, headers=auth)
        assert (
            ok.status_code == 200 and [r["data"]["me"]["name"] for r in ok.json()] == ["alice"] * 2
        )
        refused = await api.client.post("/graphql", json=two + two[:1], headers=auth)
        assert refused.status_code == 400
        assert refused.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"


async def broken(**_: Any) -> list[Any]:
    raise RuntimeError("SELECT secret FROM users failed at /srv/editgraph/db.py:12")


async def test_production_hides_the_schema_and_masks_bugs(
    make_api: AppFactory,
    tokens: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice = tokens["alice"]
    async with make_api(**PRODUCTION) as api:
        page = await api.client.get("/graphql", headers={"Accept": "text/html"})
        assert b"graphiql" not in page.content.lower()
        body = await api.query(alice, "{ __schema { types { name } } }")
        assert body["errors"] and "__schema" in body["errors"][0]["message"]
        typo = await api.query(alice, "{ projcts { nodes { name } } }")
        assert "Did you mean" not in typo["errors"][0]["message"]
        # Expected errors keep their codes and messages.
        assert code(await api.query(None, "{ me { id } }")) == "UNAUTHENTICATED"
        # A bug is masked: no exception text, no SQL.
        monkeypatch.setattr(users, "list_users", broken)
        body = await api.query(tokens["root"], "{ users { name } }")
        assert body["errors"][0]["message"] == "Unexpected error."
        assert "SELECT" not in str(body)
    async with make_api() as dev:
        dev_typo = await dev.query(alice, "{ projcts { nodes { name } } }")
        assert "Did you mean" in dev_typo["errors"][0]["message"]


def test_production_refuses_to_start_without_allowed_origins() -> None:
    with pytest.raises(ValueError, match="EDITGRAPH_ALLOWED_ORIGINS"):
        Settings.model_validate({**PRODUCTION, "allowed_origins": []})
    assert Settings.model_validate(PRODUCTION).graphiql_enabled is False


async def test_render_work_is_rate_limited_per_operation(
    make_api: AppFactory, db: Database, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    limits: dict[str, Any] = {"rate_exports": 3, "rate_window_s": 3600}
    async with make_api(**limits) as api:
        await api.services.queue.pool.flushdb()  # the throwaway Redis of this run
        video = (await upload(api, alice, media["clip"]))["video"]["id"]
        pid = (await api.data(alice, CREATE, {"v": video, "name": "p"}))["createProject"][
            "project"
        ]["id"]
        for level in range(5):
            await api.data(
                alice, APPEND, {"p": pid, "ops": [{"brightness": {"brightness": level}}]}
            )
        # Five aliased exports in one request count as five.
        fields = " ".join(
            f"e{n}: requestExport(projectId: $p, version: {n}) {{ __typename }}"
            for n in range(1, 6)
        )
        body = await api.query(alice, f"mutation($p: ID!) {{ {fields} }}", {"p": pid})
        # The fourth is refused; mutation fields run in order and a refused one ends the request.
        limited = [e for e in body["errors"] if e["extensions"]["code"] == "RATE_LIMITED"]
        assert [e["path"] for e in limited] == [["e4"]]
        assert all(0 < e["extensions"]["retryAfter"] <= 3601 for e in limited)
        assert "at most 3 export renders" in limited[0]["message"]
    async with db.read() as session:
        assert len((await session.exec(select(Export))).all()) == 3
    # The count lives in Redis: another server process sees the same budget.
    async with make_api(**limits) as other:
        body = await other.query(
            alice,
            "mutation($p: ID!) { requestExport(projectId: $p, version: 0) { __typename } }",
            {"p": pid},
        )
        assert code(body) == "RATE_LIMITED"
        jobs = await other.services.queue.pool.keys("arq:job:export:*")
    assert len(jobs) == 3


ONE_FILE = {"0": ("a.mp4", b"0" * 10, "video/mp4")}
UPLOAD = {"operations": '{"query": "{ me { name } }"}', "map": '{"0": ["variables.f"]}'}


@pytest.mark.parametrize(
    ("fields", "files", "reason"),
    [
        pytest.param({f"f{n}": "x" for n in range(20)}, ONE_FILE, "too many parts", id="fields"),
        pytest.param(
            UPLOAD,
            {str(n): (f"{n}.mp4", b"0" * 1000, "video/mp4") for n in range(20)},
            "too many parts",
            id="files",
        ),
        pytest.param(
            {"operations": "x" * (2 * 1024 * 1024), "map": "{}"}, ONE_FILE, "over", id="big-field"
        ),
    ],
)
async def test_abusive_multipart_bodies_get_a_quick_400(
    api: Api,
    tokens: dict[str, str],
    settings: Settings,
    fields: dict[str, str],
    files: dict[str, Any],
    reason: str,
) -> None:
    response = await api.client.post(
        "/graphql",
        data=fields,
        files=files,
        headers={"Authorization": f"Bearer {tokens['alice']}"},
    )
    assert response.status_code == 400
    assert reason in response.text
    # Files staged before the limit was reached are gone too.
    assert list((settings.media_root / "temp").iterdir()) == []


# What GraphiQL sends to load the schema (graphql-js's getIntrospectionQuery, every option on).
INTROSPECTION = get_introspection_query(
    descriptions=True,
    specified_by_url=True,
    directive_is_repeatable=True,
    schema_description=True,
    input_value_deprecation=True,
    one_of=True,
)
# About 1,960 tokens under the 2,000 limit; graphql-core's overlapping-fields rule compares
# the 489 `me` fields pairwise (over a second of CPU on the old code).
REPEATED_ME = "{ " + "me { name } " * 489 + "}"


async def test_without_a_token_production_reads_no_document(make_api: AppFactory) -> None:
    async with make_api(**PRODUCTION) as api:
        # A syntax error, an over-long document or a body that is not even JSON all get
        # the same answer: graphql-core never saw them.
        for document in (REPEATED_ME, "{ me {", "{ " + "a " * 5000 + "}", INTROSPECTION):
            body = await api.query(None, document)
            assert code_of(body) == "UNAUTHENTICATED" and body["data"] is None, document[:20]
        garbage = await api.client.post(
            "/graphql", content=b"not json", headers={"Content-Type": "application/json"}
        )
        assert garbage.status_code == 200 and code_of(garbage.json()) == "UNAUTHENTICATED"


async def test_without_a_token_development_answers_only_the_schema_query(
    make_api: AppFactory,
) -> None:
    async with make_api() as api:
        # GraphiQL loads the schema before its Headers tab holds a token.
        schema = await api.data(None, INTROSPECTION)
        assert "Project" in {t["name"] for t in schema["__schema"]["types"]}
        assert (await api.data(None, "{ __typename }")) == {"__typename": "Query"}
        # Anything else is refused before validation: no "Cannot query field", no CPU spent.
        for document in (
            "{ " + "me { name } " * 200 + "}",
            "{ nope }",
            "{ __typename me { name } }",
            "mutation { __typename }",
            "query A { __typename } query B { me { name } }",
        ):
            body = await api.query(None, document)
            assert code_of(body) == "UNAUTHENTICATED", document[:30]
        # A stranger's document is parsed within a smaller token budget than a user's.
        for document in (REPEATED_ME, "{ __schema { types { " + "name " * 1200 + "} } }"):
            body = await api.query(None, document)
            assert code_of(body) == "QUERY_TOO_COMPLEX", document[:30]
            assert "more than 1000 tokens" in body["errors"][0]["message"]
        # Within it, repeating schema fields is bounded like any other repetition.
        body = await api.query(None, "{ __schema { types { " + "name " * 900 + "} } }")
        assert (
            code_of(body) == "QUERY_TOO_COMPLEX" and "comparisons" in body["errors"][0]["message"]
        )


async def test_validation_work_is_bounded(make_api: AppFactory, tokens: dict[str, str]) -> None:
    alice = tokens["alice"]
    repeated = "{ " + "me { name } " * 300 + "}"  # within graphql-core's own budget
    async with make_api() as api:
        for document in (repeated, REPEATED_ME):
            body = await api.query(alice, document)
            assert code_of(body) == "QUERY_TOO_COMPLEX", body
            assert "comparisons" in body["errors"][0]["message"] and body["data"] is None
        # Ordinary overlap (fragments sharing fields, a field asked twice) is still merged,
        # and a real conflict is still found.
        merged = await api.data(
            alice,
            "fragment A on User { name } fragment B on User { id name } "
            "{ me { ...A ...B name } me { id } }",
        )
        assert merged["me"]["name"] == "alice" and merged["me"]["id"]
        conflict = await api.query(alice, "{ me { x: name x: id } }")
        assert "conflict" in conflict["errors"][0]["message"]
        assert (await api.data(alice, INTROSPECTION))["__schema"]["queryType"]["name"] == "Query"
    async with make_api(max_field_comparisons=1_000_000) as roomy:
        assert (await roomy.data(alice, repeated))["me"]["name"] == "alice"

"""GraphQL over HTTP: application/graphql-response+json with meaningful status codes for the
clients that accept it, application/json with a 200 for every GraphQL response for the rest."""

from typing import Any

import httpx
import pytest

from editgraph.graphql_http import response_media_type
from tests.helpers.api import Api, AppFactory
from tests.helpers.db import SQLITE_ONLY

NEW = "application/graphql-response+json"
GRAPHIQL_ACCEPT = "application/graphql-response+json, application/json, multipart/mixed"


async def post(
    api: Api, body: Any, *, token: str | None = None, accept: str | None = NEW, **kw: Any
) -> httpx.Response:
    headers = dict(kw.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if accept is not None:
        headers["Accept"] = accept
    if isinstance(body, (bytes, str)):
        return await api.client.post("/graphql", content=body, headers=headers, **kw)
    return await api.client.post("/graphql", json=body, headers=headers, **kw)


def is_new_type(response: httpx.Response) -> bool:
    return response.headers["content-type"] == f"{NEW}; charset=utf-8"


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (NEW, NEW),
        (GRAPHIQL_ACCEPT, NEW),
        (f"application/json, {NEW};q=0.5", "application/json"),
        (f"application/json;q=0.5, {NEW}", NEW),
        (f"{NEW};q=0", "application/json"),
        ("text/html", "application/json"),
    ],
)
def test_the_media_type_follows_the_accept_header(accept: str | None, chosen: str) -> None:
    assert response_media_type(accept) == chosen


@SQLITE_ONLY  # the HTTP edge; the database plays no part
async def test_an_executed_request_is_a_200_with_data_even_when_a_field_fails(
    api: Api, tokens: dict[str, str]
) -> None:
    ok = await post(api, {"query": "{ me { name } }"}, token=tokens["alice"])
    assert ok.status_code == 200 and is_new_type(ok)
    assert ok.json() == {"data": {"me": {"name": "alice"}}}
    # A field error (an admin's field asked for by a user) has a path, and partial data.
    partial = await post(
        api, {"query": '{ me { name } gcRun(id: "1") { id } }'}, token=tokens["alice"]
    )
    assert partial.status_code == 200 and is_new_type(partial)
    body = partial.json()
    assert body["data"] == {"me": {"name": "alice"}, "gcRun": None}
    assert body["errors"][0]["path"] == ["gcRun"]
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # Even when the error reaches the root (a non-null field), the request executed: a 200
    # with "data": null, not a request error.
    nulled = await post(api, {"query": "{ me { name } users { name } }"}, token=tokens["alice"])
    assert nulled.status_code == 200 and is_new_type(nulled)
    assert nulled.json()["data"] is None
    assert nulled.json()["errors"][0]["path"] == ["users"]


@SQLITE_ONLY  # the HTTP edge; the database plays no part
@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"query": "{ me { name "}, 400, "Syntax Error"),
        ({"query": "{ me { shoeSize } }"}, 400, "shoeSize"),
        ({"query": "query($p: ID!) { project(id: $p) { name } }", "variables": {}}, 400, "$p"),
        (
            {"query": "query($p: ID!) { project(id: $p) { name } }", "variables": {"p": [1]}},
            400,
            "$p",
        ),
        ({"query": "{" + "me { name } " * 700 + "}"}, 400, "too"),
        # A subscription sent by POST (GraphiQL's Run before its editor caught up, say).
        (
            {"query": 'subscription { proxyReady(projectId: "UHJvamVjdDox") { id } }'},
            400,
            "served over the websocket",
        ),
    ],
)
async def test_a_request_that_never_executed_is_a_4xx_without_data(
    api: Api, tokens: dict[str, str], body: dict[str, Any], status: int, says: str
) -> None:
    refused = await post(api, body, token=tokens["alice"])
    assert refused.status_code == status, refused.text
    assert is_new_type(refused)
    answer = refused.json()
    assert "data" not in answer
    assert says in answer["errors"][0]["message"]
    # The same request as an older client sends it: a 200 and the GraphQL response as before.
    legacy = await post(api, body, token=tokens["alice"], accept="application/json")
    assert legacy.status_code == 200
    assert legacy.headers["content-type"].startswith("application/json")
    assert says in legacy.json()["errors"][0]["message"]


@SQLITE_ONLY  # the HTTP edge; the database plays no part
async def test_no_token_is_a_401_without_data_in_development_and_production(
    api: Api, make_api: AppFactory
) -> None:
    # Development: anonymous requests may only read the schema (GraphiQL's introspection).
    refused = await post(api, {"query": "{ me { name } }"})
    assert refused.status_code == 401 and is_new_type(refused)
    assert "data" not in refused.json()
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    schema = await post(api, {"query": "{ __schema { queryType { name } } }"})
    assert schema.status_code == 200
    assert schema.json()["data"]["__schema"]["queryType"]["name"] == "Query"
    # Production: refused before the body is read.
    async with make_api(graphiql=False) as closed:
        refused = await post(closed, {"query": "{ me { name } }"})
        assert refused.status_code == 401 and is_new_type(refused)
        assert "data" not in refused.json()
        legacy = await post(closed, {"query": "{ me { name } }"}, accept=None)
        assert legacy.status_code == 200 and legacy.json()["data"] is None


@SQLITE_ONLY  # the HTTP edge; the database plays no part
async def test_malformed_bodies_are_4xx_and_json_for_clients_of_the_specification(
    api: Api, tokens: dict[str, str]
) -> None:
    alice = tokens["alice"]
    headers = {"Content-Type": "application/json"}
    broken = await post(api, b'{"query": "{ me', token=alice, headers=headers)
    assert broken.status_code == 400 and is_new_type(broken)
    assert "data" not in broken.json() and broken.json()["errors"][0]["message"]
    not_a_string = await post(api, {"query": 42}, token=alice)
    assert not_a_string.status_code == 400 and "data" not in not_a_string.json()
    plain = await post(api, b"{ me { name } }", token=alice, headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415
    legacy = await post(api, b'{"query": "{ me', token=alice, headers=headers, accept=None)
    assert legacy.status_code == 400 and "parse" in legacy.text
    huge = await post(api, b"[" + b"1," * (600 * 1024) + b"1]", token=alice, headers=headers)
    assert huge.status_code == 413 and is_new_type(huge)
    assert "EDITGRAPH_MAX_JSON_BYTES" in huge.json()["errors"][0]["message"]


@SQLITE_ONLY  # the HTTP edge; the database plays no part
async def test_operations_by_get_are_405_and_post_only(api: Api, tokens: dict[str, str]) -> None:
    for query in ("{ me { name } }", 'mutation { createUser(name: "x") { __typename } }'):
        refused = await api.client.get(
            "/graphql",
            params={"query": query},
            headers={"Authorization": f"Bearer {tokens['alice']}", "Accept": NEW},
        )
        assert refused.status_code == 405
        assert refused.headers["allow"] == "POST"
        assert is_new_type(refused) and "POST" in refused.json()["errors"][0]["message"]
    # GraphiQL still opens in a browser.
    page = await api.client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()

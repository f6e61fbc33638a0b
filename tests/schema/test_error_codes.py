"""Every expected failure carries its code, on every transport, chosen by its type."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graphql import GraphQLError

from models.db import Database
from resolvers import errors
from resolvers.events import SubscriptionLimit
from resolvers.users import create_user
from tests.helpers.api import Api, AppFactory
from tests.helpers.websocket import first_answer

PRODUCTION: dict[str, Any] = {
    "env": "production",
    "secret_key": "s" * 40,
    "allowed_origins": ["https://t"],
}
CODES: list[tuple[errors.DomainError, str]] = [
    (errors.NotFoundError("Video", 7), "NOT_FOUND"),
    (errors.VersionConflictError(1, 2), "VERSION_CONFLICT"),
    (errors.InvalidMediaError("not a video"), "INVALID_MEDIA"),
    (errors.TooLargeError(10), "TOO_LARGE"),
    (errors.VideoInUseError([1]), "VIDEO_IN_USE"),
    (errors.InvalidOpsError([]), "INVALID_OPS"),
    (errors.BadInputError("not a cursor"), "BAD_USER_INPUT"),
    (errors.RateLimitedError("proxies", 10, 60, 5), "RATE_LIMITED"),
    (errors.ConfirmationRequiredError(), "CONFIRMATION_REQUIRED"),
    (errors.GcBusyError(1, "cli", datetime.now(UTC)), "GC_BUSY"),
    (errors.MediaMissingError("gone"), "MEDIA_MISSING"),
    (errors.StorageUnavailableError(), "STORAGE_UNAVAILABLE"),
    (SubscriptionLimit("at most 10 subscriptions"), "RATE_LIMITED"),
    (errors.UnauthenticatedError(), "UNAUTHENTICATED"),
    (errors.ForbiddenError("admins only"), "FORBIDDEN"),
    (errors.QueryTooComplexError("too deep"), "QUERY_TOO_COMPLEX"),
]


def every_domain_error() -> set[type[errors.DomainError]]:
    found: set[type[errors.DomainError]] = set()
    pending = [errors.DomainError]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.add(sub)
            pending.append(sub)
    return found


def test_every_domain_error_carries_its_code_into_any_graphql_error() -> None:
    assert {type(e) for e, _ in CODES} >= every_domain_error(), "give the new error a code"
    for error, code in CODES:
        assert error.extensions["code"] == code, type(error)
        # graphql-core copies the extensions of the error it wraps: no pass over results.
        wrapped = GraphQLError(str(error), original_error=error)
        assert wrapped.extensions == error.extensions and wrapped.message == error.message


async def project_of(api: Api, token: str, media: dict[str, Path]) -> str:
    upload = (await api.upload(token, media["clip"])).json()["data"]["uploadVideo"]
    created = await api.data(
        token,
        'mutation($v: ID!) { createProject(videoId: $v, name: "e") '
        "{ ... on ProjectCreated { project { id } } } }",
        {"v": upload["video"]["id"]},
    )
    pid: str = created["createProject"]["project"]["id"]
    return pid


PAST_HISTORY = "query($p: ID!) { project(id: $p) { ops(upToVersion: 5) { type } } }"


async def test_a_not_found_outside_a_union_says_not_found(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    pid = await project_of(api, tokens["alice"], media)
    body = await api.query(tokens["alice"], PAST_HISTORY, {"p": pid})
    [error] = body["errors"]
    assert error["extensions"] == {"code": "NOT_FOUND"}
    assert "Version 5" in error["message"]


async def test_errors_over_a_websocket_carry_their_codes(
    make_api: AppFactory, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    async with make_api(live=True) as api:
        base = api.base
        pid = await project_of(api, tokens["alice"], media)
        unconfirmed = await first_answer(
            base, tokens["root"], "mutation { gcDelete(confirm: false) { id } }", {}
        )
        past = await first_answer(base, tokens["alice"], PAST_HISTORY, {"p": pid})
    for message, code in ((unconfirmed, "CONFIRMATION_REQUIRED"), (past, "NOT_FOUND")):
        assert message["type"] == "next", message
        [error] = message["payload"]["errors"]
        assert error["extensions"]["code"] == code, error


async def test_the_token_limit_is_counted_not_read_from_a_message(
    make_api: AppFactory, db: Database
) -> None:
    _, token = await create_user(db=db, name="alice")
    async with make_api(max_query_tokens=60) as api:
        for document in (
            "{ " + "me { name } " * 16 + "}",  # 66 tokens
            "{ me { name } }\n" + "# a comment\n" * 70,  # comments count, as in graphql-core
        ):
            [error] = (await api.query(token, document))["errors"]
            assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX"}, error
            assert "more than 60 tokens" in error["message"] and "Syntax" not in error["message"]
        # Long in characters but few tokens: it runs.
        assert await api.data(token, "{ me { name } }" + " " * 500) == {"me": {"name": "alice"}}
        # A syntax error within the limit stays a syntax error, however long the text.
        [error] = (await api.query(token, "{ me { name } } }" + " " * 500))["errors"]
        assert "Syntax Error" in error["message"] and "code" not in error.get("extensions", {})


TYPO = "{ projcts { nodes { name } } }"
BAD_ENUM = """mutation($p: ID!, $ops: [OpInput!]!) {
  appendOps(projectId: $p, ops: $ops) { __typename } }"""


async def test_production_errors_suggest_no_schema_names(
    make_api: AppFactory, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    flip = {"p": "UHJvamVjdDox", "ops": [{"flip": {"axis": "HORIZONTL"}}]}
    async with make_api() as dev:
        # In development graphql-core suggests names, at validation and at execution.
        for document, variables in ((TYPO, {}), (BAD_ENUM, flip)):
            [error] = (await dev.query(alice, document, variables))["errors"]
            assert "Did you mean" in error["message"], error
    async with make_api(**PRODUCTION) as prod:
        for document, variables in ((TYPO, {}), (BAD_ENUM, flip)):
            [error] = (await prod.query(alice, document, variables))["errors"]
            assert "Did you mean" not in error["message"], error
            assert ("projcts" in error["message"]) or ("HORIZONTL" in error["message"])

"""GraphQL over HTTP: which media type answers a request, and with which status.

A client that accepts ``application/graphql-response+json`` gets it, and with it status
codes that mean something: a request that never executed (it did not parse, validate,
authenticate or coerce its variables) is a 4xx with no ``data`` entry; one that executed is
a 200 even when fields failed. Everyone else gets ``application/json`` and a 200 for any
GraphQL response, as clients written before the specification expect."""

from collections.abc import Mapping
from typing import Any

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
UNAUTHENTICATED = "UNAUTHENTICATED"


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0
    return 1.0


def response_media_type(accept: str | None) -> str:
    """``application/graphql-response+json`` when the Accept header lists it at least as
    high as ``application/json``; otherwise (no header, ``*/*``, only JSON, or neither)
    ``application/json``."""
    if not accept:
        return JSON
    best = {GRAPHQL_RESPONSE: 0.0, JSON: 0.0}
    for part in accept.split(","):
        kind, *params = part.split(";")
        kind = kind.strip().lower()
        if kind in ("*/*", "application/*"):
            kind = JSON  # the specification: a wildcard gets application/json
        if kind in best:
            best[kind] = max(best[kind], _quality(params))
    if best[GRAPHQL_RESPONSE] > 0 and best[GRAPHQL_RESPONSE] >= best[JSON]:
        return GRAPHQL_RESPONSE
    return JSON


def content_type(media_type: str) -> str:
    """The Content-Type header of a response in ``media_type``: always UTF-8."""
    return f"{media_type}; charset=utf-8"


def not_executed(response: Mapping[str, Any]) -> bool:
    """A response of a request that never executed: no data, and errors that belong to the
    request (parsing, validation, variables, authentication) rather than to a field, which
    would carry the field's ``path``."""
    errors = response.get("errors") or []
    return (
        response.get("data") is None
        and bool(errors)
        and all(isinstance(e, Mapping) and "path" not in e for e in errors)
    )


def request_error_status(errors: list[Mapping[str, Any]]) -> int:
    """The status of a request that did not execute: 401 without valid credentials, else 400."""
    codes = {(e.get("extensions") or {}).get("code") for e in errors}
    return 401 if UNAUTHENTICATED in codes else 400


def shape(media_type: str, response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The status and body of one GraphQL response in ``media_type``."""
    if media_type != GRAPHQL_RESPONSE or not not_executed(response):
        return 200, response
    body = {k: v for k, v in response.items() if k != "data"}
    return request_error_status(body["errors"]), body

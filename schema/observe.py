"""What each GraphQL operation did, for the operator: one log line per operation (name, type,
user, duration, outcome), expected errors logged without a traceback, and the same record
handed to whoever counts operations (editgraph's metrics)."""

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from schema.errors import unexpected

log = logging.getLogger("editgraph.graphql")
# A client names its operations; only plain names are kept (they become log fields and
# metric labels), anything else is counted under this one.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
OTHER = "other"


@dataclass(frozen=True)
class Operation:
    """One finished operation: its name (or "anonymous"), type, outcome ("ok" or the first
    error's code), seconds it took, and the caller's user id (None when anonymous)."""

    name: str
    type: str
    outcome: str
    seconds: float
    user_id: int | None


Observer = Callable[[Operation], None]


def outcome_of(errors: list[GraphQLError] | None, *, before_execution: bool) -> str:
    """"ok", or the code of the first error (INTERNAL_ERROR for a bug, INVALID_DOCUMENT
    for a document that does not parse or validate)."""
    if not errors:
        return "ok"
    first = errors[0]
    code = (first.extensions or {}).get("code")
    if isinstance(code, str):
        return code
    if unexpected(first):
        return "INTERNAL_ERROR"
    return "INVALID_DOCUMENT" if before_execution else "GRAPHQL_ERROR"


def observing(observer: Observer | None) -> Callable[[], SchemaExtension]:
    """The extension that logs each operation and hands it to ``observer``."""

    class Observe(SchemaExtension):
        def on_operation(self) -> Iterator[None]:
            started = time.perf_counter()
            yield
            context = self.execution_context
            seconds = time.perf_counter() - started
            try:
                kind = context.operation_type.value if context.graphql_document else "unknown"
            except RuntimeError:  # no operation of the requested name
                kind = "unknown"
            name = context.operation_name or "anonymous"
            if not _NAME.fullmatch(name):
                name = OTHER
            errors = context.pre_execution_errors
            before = bool(errors)
            if not before and context.result is not None:
                errors = context.result.errors
            caller = getattr(context.context, "caller", None)
            done = Operation(
                name=name,
                type=kind,
                outcome=outcome_of(errors, before_execution=before),
                seconds=seconds,
                user_id=getattr(caller, "id", None),
            )
            log.info(
                "%s %s %s in %.1f ms",
                done.type,
                done.name,
                done.outcome,
                seconds * 1000,
                extra={
                    "operation": done.name,
                    "operation_type": done.type,
                    "user_id": done.user_id,
                    "duration_ms": round(seconds * 1000, 1),
                    "outcome": done.outcome,
                },
            )
            if observer is not None:
                observer(done)

    return Observe


def log_errors(errors: list[GraphQLError]) -> None:
    """A bug's error with its traceback; an expected one (a domain error, a bad document)
    as one line, since the caller was told and nothing is broken."""
    for error in errors:
        if unexpected(error):
            log.error("unexpected error: %s", error.message, exc_info=error.original_error)
        else:
            code = (error.extensions or {}).get("code", "INVALID_DOCUMENT")
            log.info("%s: %s", code, error.message, extra={"code": code})

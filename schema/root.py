"""The assembled schema, and its SDL as committed in ``schema/schema.graphql``."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaskErrors,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from schema.errors import HANDLERS, QuietExecution, QuietValidation, unexpected
from schema.execution import Execution
from schema.limits import QueryLimits, limits_extension
from schema.mutation import Mutation
from schema.observe import Observer, log_errors, observing
from schema.query import Query
from schema.subscription import (
    ExportComplete,
    ProxyPlayable,
    ProxyReady,
    RenderCancelled,
    RenderFailed,
    RenderProgress,
    RenderQueued,
    Subscription,
)
from schema.types import Export, Project, Render, User, Video

SDL_PATH = Path(__file__).parent / "schema.graphql"
# Types reached only through an interface must be named for the schema to include them.
TYPES = [
    User,
    Video,
    Project,
    Render,
    Export,
    RenderQueued,
    RenderProgress,
    ProxyPlayable,
    ProxyReady,
    ExportComplete,
    RenderFailed,
    RenderCancelled,
]


class EditgraphSchema(strawberry.Schema):
    """Strawberry's schema, logging expected errors as one line each, bugs with traceback."""

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        log_errors(errors)


def build_schema(
    limits: QueryLimits,
    *,
    production: bool,
    max_batch: int = 1,
    observer: Observer | None = None,
) -> strawberry.Schema:
    """The schema with these query limits; production also hides introspection and bugs.
    Each operation is logged, and handed to ``observer`` (metrics) when there is one."""
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        observing(observer),
        limits_extension(limits),
        # Clients send the same few documents again and again: parse and validate each once
        # (the caches are module-level, shared by the per-request extension instances).
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
    ]
    if production:
        extensions += [
            DisableIntrospection,
            QuietValidation,
            lambda: MaskErrors(should_mask_error=unexpected),
        ]
    return EditgraphSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=TYPES,
        extensions=extensions,
        # Expected failures become union members where a field's union has one.
        exception_handlers=HANDLERS,
        # In production no error suggests schema names the caller did not write.
        execution_context_class=QuietExecution if production else Execution,
        config=StrawberryConfig(batching_config={"max_operations": max_batch}),
    )


def sdl() -> str:
    """The schema in SDL, as committed."""
    return build_schema(QueryLimits(), production=False).as_str() + "\n"

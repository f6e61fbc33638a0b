"""The assembled schema, and its SDL as committed in ``schema/schema.graphql``."""

from pathlib import Path

import strawberry
from strawberry.extensions import ParserCache, ValidationCache

from schema.extensions import ErrorCodes
from schema.mutation import Mutation
from schema.query import Query
from schema.subscription import (
    ExportComplete,
    ProxyReady,
    RenderCancelled,
    RenderFailed,
    RenderProgress,
    RenderQueued,
    Subscription,
)
from schema.types import Export, Project, Render, User, Video

SDL_PATH = Path(__file__).parent / "schema.graphql"

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    types=[
        User,
        Video,
        Project,
        Render,
        Export,
        RenderQueued,
        RenderProgress,
        ProxyReady,
        ExportComplete,
        RenderFailed,
        RenderCancelled,
    ],
    # Clients send the same few documents again and again: parse and validate each once
    # (the caches are module-level, shared by the per-request extension instances).
    extensions=[
        ErrorCodes,
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
    ],
)


def sdl() -> str:
    """The schema in SDL, as committed."""
    return schema.as_str() + "\n"

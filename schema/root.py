"""The assembled schema, and its SDL as committed in ``schema/schema.graphql``."""

from pathlib import Path

import strawberry

from schema.extensions import ErrorCodes
from schema.mutation import Mutation
from schema.query import Query
from schema.types import Project, User, Video

SDL_PATH = Path(__file__).parent / "schema.graphql"

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    types=[User, Video, Project],
    extensions=[ErrorCodes],
)


def sdl() -> str:
    """The schema in SDL, as committed."""
    return schema.as_str() + "\n"

"""Errors at the API, in one place.

A domain error becomes a member of a field's result union when that union has a member for
it (``HANDLERS``, strawberry's exception handlers), and a GraphQL error carrying its code
otherwise (graphql-core copies the error's ``extensions`` dict). In production, errors name
no schema fields or values the caller did not write (graphql-core's ``hide_suggestions``).
"""

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

import strawberry
from graphql import GraphQLError, Node, validate
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule
from strawberry.types.field import StrawberryField

from resolvers import errors as domain
from resolvers import ids
from schema.execution import Execution

E = TypeVar("E", bound=domain.DomainError)


@strawberry.type(description="The object does not exist, or is not yours.")
class NotFound:
    message: str

    @classmethod
    def of(cls, exc: domain.NotFoundError) -> "NotFound":
        return cls(message=exc.message)


@strawberry.type(description="The project moved on since the version you edited from.")
class VersionConflict:
    message: str
    current_version: int

    @classmethod
    def of(cls, exc: domain.VersionConflictError) -> "VersionConflict":
        return cls(message=exc.message, current_version=exc.current_version)


@strawberry.type(description="One problem in a batch of ops.")
class OpError:
    index: int
    field: str | None
    message: str


@strawberry.type(description="The batch has invalid ops; nothing was saved.")
class InvalidOps:
    message: str
    errors: list[OpError]

    @classmethod
    def of(cls, exc: domain.InvalidOpsError) -> "InvalidOps":
        return cls(
            message=exc.message,
            errors=[OpError(index=e.index, field=e.field, message=e.message) for e in exc.errors],
        )


@strawberry.type(description="The upload is not a video editgraph can edit; nothing was kept.")
class InvalidMedia:
    message: str

    @classmethod
    def of(cls, exc: domain.InvalidMediaError) -> "InvalidMedia":
        return cls(message=exc.message)


@strawberry.type(description="The upload is over the size limit; nothing was kept.")
class TooLarge:
    message: str
    limit_bytes: float

    @classmethod
    def of(cls, exc: domain.TooLargeError) -> "TooLarge":
        return cls(message=exc.message, limit_bytes=float(exc.limit_bytes))


@strawberry.type(description="Projects still use this video.")
class VideoInUse:
    message: str
    project_ids: list[strawberry.ID]

    @classmethod
    def of(cls, exc: domain.VideoInUseError) -> "VideoInUse":
        refs = [strawberry.ID(ids.encode("Project", p)) for p in exc.project_ids]
        return cls(message=exc.message, project_ids=refs)


class Member(Generic[E]):
    """Answers ``exception_type`` with ``error_type.of(exc)`` on every field whose result
    union has ``error_type``; elsewhere the error stays a GraphQL error with its code."""

    def __init__(self, exception_type: type[E], error_type: Any) -> None:
        self.exception_type = exception_type
        self.error_type = error_type

    def handle(self, exception: E, *, field: StrawberryField, info: Any) -> object:
        """The union member for ``exception``."""
        return self.error_type.of(exception)


HANDLERS: list[Member[Any]] = [
    Member(domain.NotFoundError, NotFound),
    Member(domain.VersionConflictError, VersionConflict),
    Member(domain.InvalidOpsError, InvalidOps),
    Member(domain.InvalidMediaError, InvalidMedia),
    Member(domain.TooLargeError, TooLarge),
    Member(domain.VideoInUseError, VideoInUse),
]


def graphql_error(
    exc: domain.DomainError,
    node: Node | None = None,
    *,
    kind: type[GraphQLError] = GraphQLError,
) -> GraphQLError:
    """A GraphQL error for ``exc`` where graphql-core wants one built (validation rules)."""
    return kind(exc.message, node, original_error=exc)


def unexpected(error: GraphQLError) -> bool:
    """Whether an error comes from a bug (masked in production) rather than from the caller."""
    original = error.original_error
    return original is not None and not isinstance(original, domain.DomainError | GraphQLError)


class QuietExecution(Execution):
    """Execution whose errors (bad variable values, for example) suggest no schema names."""

    @classmethod
    def build(cls, *args: Any, **kwargs: Any) -> Any:
        """graphql-core's executor, built with ``hide_suggestions``."""
        return super().build(*args, **{**kwargs, "hide_suggestions": True})


class QuietValidation(SchemaExtension):
    """Validation errors that suggest no field or type names ("Did you mean …?")."""

    def on_validate(self) -> Iterator[None]:
        yield
        context = self.execution_context
        errors = context.pre_execution_errors
        if not errors or context.graphql_document is None:
            return
        # Rare (an invalid document), so validated again rather than cached twice. The
        # list is changed in place: strawberry already holds it for the response.
        errors[:] = validate(
            context.schema._schema,
            context.graphql_document,
            (*context.validation_rules, MaybeNullValidationRule, OneOfInputValidationRule),
            hide_suggestions=True,
        )

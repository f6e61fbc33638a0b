"""Schema extensions: expected bad input becomes a GraphQL error with a code."""

from collections.abc import Iterator

from strawberry.extensions import SchemaExtension

from resolvers.errors import DomainError


class ErrorCodes(SchemaExtension):
    """Tag domain errors raised outside a result union (bad cursors, names) BAD_USER_INPUT."""

    def on_execute(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        for error in (result.errors or []) if result else []:
            if isinstance(error.original_error, DomainError):
                error.extensions = {**(error.extensions or {}), "code": "BAD_USER_INPUT"}

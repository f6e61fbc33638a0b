"""Query limits (depth, aliases through fragments, tokens) and the codes of expected errors."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql.language import DocumentNode
from graphql.validation import ASTValidationRule, ValidationContext
from strawberry.extensions import SchemaExtension

from resolvers.errors import DomainError, RateLimitedError

TOO_COMPLEX = {"code": "QUERY_TOO_COMPLEX"}


@dataclass(frozen=True)
class QueryLimits:
    """Each limit is a setting; a query over one is refused before it runs."""

    max_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 2000


def _measure(
    selections: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    memo: dict[str, tuple[int, int]],
    visiting: frozenset[str] = frozenset(),
) -> tuple[int, int]:
    """(depth, aliases) below a selection set; a fragment counts at every place it is spread."""
    if selections is None:
        return 0, 0
    depth = aliases = 0
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value.startswith("__"):
                continue  # introspection is bounded by the schema, and off in production
            below, inner = _measure(selection.selection_set, fragments, memo, visiting)
            depth = max(depth, below + 1)
            aliases += inner + (1 if selection.alias else 0)
        elif isinstance(selection, InlineFragmentNode):
            below, inner = _measure(selection.selection_set, fragments, memo, visiting)
            depth, aliases = max(depth, below), aliases + inner
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is None or name in visiting:
                continue  # unknown or cyclic fragments are other rules' errors
            if name not in memo:
                memo[name] = _measure(fragment.selection_set, fragments, memo, visiting | {name})
            below, inner = memo[name]
            depth, aliases = max(depth, below), aliases + inner
    return depth, aliases


def limit_rule(limits: QueryLimits) -> type[ASTValidationRule]:
    """A validation rule enforcing ``limits`` on every operation of a document."""

    class QueryLimitRule(ASTValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)

        def enter_document(self, node: DocumentNode, *_: Any) -> None:
            fragments = {
                d.name.value: d for d in node.definitions if isinstance(d, FragmentDefinitionNode)
            }
            memo: dict[str, tuple[int, int]] = {}
            for op in node.definitions:
                if not isinstance(op, OperationDefinitionNode):
                    continue
                depth, aliases = _measure(op.selection_set, fragments, memo)
                if depth > limits.max_depth:
                    self.report_error(
                        GraphQLError(
                            f"the query is {depth} levels deep; the limit is {limits.max_depth}",
                            op,
                            extensions=TOO_COMPLEX,
                        )
                    )
                if aliases > limits.max_aliases:
                    self.report_error(
                        GraphQLError(
                            f"the query uses {aliases} aliases; the limit is {limits.max_aliases}",
                            op,
                            extensions=TOO_COMPLEX,
                        )
                    )

    return QueryLimitRule


def limits_extension(limits: QueryLimits) -> type[SchemaExtension]:
    """An extension enforcing ``limits`` on every operation."""
    rule = limit_rule(limits)

    class Limits(SchemaExtension):
        def on_operation(self) -> Iterator[None]:
            context = self.execution_context
            context.parse_options["max_tokens"] = limits.max_tokens
            context.validation_rules = (*context.validation_rules, rule)
            yield

    return Limits


def classify(error: GraphQLError, *, production: bool) -> None:
    """Give an expected error its code; in production, drop field suggestions."""
    original = error.original_error
    if isinstance(original, RateLimitedError):
        error.extensions = {"code": "RATE_LIMITED", "retryAfter": original.retry_after}
    elif isinstance(original, DomainError):
        error.extensions = {**(error.extensions or {}), "code": "BAD_USER_INPUT"}
    elif original is None and "Document contains more than" in error.message:
        error.message = error.message.removeprefix("Syntax Error: ").split(" Parsing")[0]
        error.message = "the query is too long: " + error.message.lower()
        error.extensions = TOO_COMPLEX
    if production and original is None and " Did you mean " in error.message:
        # No field suggestions in production: they describe the schema to a stranger.
        error.message = error.message.split(" Did you mean ")[0]


def unexpected(error: GraphQLError) -> bool:
    """Whether an error comes from a bug (masked in production) rather than from the caller."""
    original = error.original_error
    return original is not None and not isinstance(original, DomainError | GraphQLError)

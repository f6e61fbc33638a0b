"""Query limits: who may send a document, depth, aliases through fragments, tokens,
validation work and variables. Each is checked by editgraph's own code, which raises
QUERY_TOO_COMPLEX (or UNAUTHENTICATED) itself."""

import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql.language import DocumentNode, Lexer, OperationType, Source, TokenKind
from graphql.validation import (
    ASTValidationRule,
    OverlappingFieldsCanBeMergedRule,
    ValidationContext,
)
from graphql.validation.validate import ValidationAbortedError
from strawberry.extensions import SchemaExtension

from resolvers.errors import BadInputError, QueryTooComplexError, UnauthenticatedError
from schema.context import Context
from schema.errors import graphql_error

# Without a token, a document may only ask for the schema. GraphiQL's introspection
# query is about 200 tokens; this leaves room and keeps a stranger's parse small.
ANONYMOUS_MAX_TOKENS = 1000
INTROSPECTION_FIELDS = frozenset({"__schema", "__type", "__typename"})


@dataclass(frozen=True)
class QueryLimits:
    """Each limit is a setting; a query over one is refused before it runs."""

    max_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 2000
    # graphql-core's overlapping-fields rule compares same-named fields pairwise (quadratic);
    # past this many comparisons the document is refused instead of checked.
    max_field_comparisons: int = 5000
    # Where GraphiQL is served, it may load the schema before the Headers tab has a token.
    anonymous_introspection: bool = False
    # Values in the variables (every list item and object field counts): turning a huge
    # ops list into inputs costs event-loop time before any resolver could refuse it.
    max_variable_values: int = 5000


def variable_values_over(variables: object, limit: int) -> bool:
    """Whether ``variables`` hold more than ``limit`` values (stops counting past it)."""
    pending, seen = [variables], 0
    while pending:
        value = pending.pop()
        seen += 1
        if seen > limit:
            return True
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def tokens_over(query: str, limit: int) -> bool:
    """Whether ``query`` holds more than ``limit`` tokens, comments included."""
    # Every token takes at least one character: almost every document stops here.
    if len(query) <= limit:
        return False
    # Clients send the same long documents again and again; remembered by digest, so the
    # memory is 32 bytes a document whatever its length.
    key = (hashlib.sha256(query.encode()).digest(), limit)
    over = _COUNTED.pop(key, None)
    if over is None:
        over = _counted_over(query, limit)
    _COUNTED[key] = over
    if len(_COUNTED) > 1024:
        _COUNTED.popitem(last=False)
    return over


_COUNTED: OrderedDict[tuple[bytes, int], bool] = OrderedDict()


def _counted_over(query: str, limit: int) -> bool:
    # graphql-core's own lexer, counting what its parser counts for ``max_tokens`` (every
    # token, comments too) and stopping past the limit (about 1 ms a thousand tokens); no
    # message is read.
    lexer = Lexer(Source(query))
    token, count = lexer.token, 0
    try:
        while count <= limit:
            token = lexer.read_next_token(token.end)
            if token.kind is TokenKind.EOF:
                return False
            count += 1
    except GraphQLSyntaxError:
        return False  # not a token: graphql-core's parse reports it
    return True


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
                    too_deep = f"the query is {depth} levels deep; the limit is {limits.max_depth}"
                    self.report_error(graphql_error(QueryTooComplexError(too_deep), op))
                if aliases > limits.max_aliases:
                    many = f"the query uses {aliases} aliases; the limit is {limits.max_aliases}"
                    self.report_error(graphql_error(QueryTooComplexError(many), op))

    return QueryLimitRule


def bounded_overlap_rule(max_comparisons: int) -> type[ASTValidationRule]:
    """graphql-core's overlapping-fields rule with a work budget of ``max_comparisons``."""

    class BoundedOverlappingFieldsRule(OverlappingFieldsCanBeMergedRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            # graphql-core charges two units per field comparison and aborts past its budget
            # (500,000 units by default: about a second of CPU on one document).
            self.rule_context.remaining_complexity_budget = 2 * max_comparisons

        def enter_selection_set(self, *args: Any) -> None:
            try:
                super().enter_selection_set(*args)
            except ValidationAbortedError:
                aborted = QueryTooComplexError(
                    "the query repeats the same fields too often to check (over "
                    f"{max_comparisons} comparisons of same-named fields); select each field "
                    "once per selection set"
                )
                raise graphql_error(aborted, kind=ValidationAbortedError) from None

    return BoundedOverlappingFieldsRule


def introspection_only(document: DocumentNode) -> bool:
    """Whether every operation is a query that asks only for the schema."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return bool(operations) and all(
        op.operation == OperationType.QUERY
        and all(
            isinstance(s, FieldNode) and s.name.value in INTROSPECTION_FIELDS
            for s in op.selection_set.selections
        )
        for op in operations
    )


def _anonymous(context: object) -> bool:
    return isinstance(context, Context) and context.caller is None


def _over_http(context: object) -> bool:
    return isinstance(context, Context) and not context.long_lived


def _subscribes(context: Any) -> bool:
    """Whether the operation to run is a subscription (False if there is none to run)."""
    if context.graphql_document is None:
        return False
    try:
        return bool(context.operation_type.value == "subscription")
    except RuntimeError:  # no operation of that name: validation says so
        return False


def _presented(context: object) -> bool:
    return isinstance(context, Context) and context.token_presented


def limits_extension(limits: QueryLimits) -> type[SchemaExtension]:
    """An extension enforcing ``limits`` on every operation."""
    rule = limit_rule(limits)
    overlap = bounded_overlap_rule(limits.max_field_comparisons)

    class Limits(SchemaExtension):
        def on_operation(self) -> Iterator[None]:
            context = self.execution_context
            tokens = limits.max_tokens
            if _anonymous(context.context):
                if not limits.anonymous_introspection:
                    raise UnauthenticatedError(_presented(context.context))  # before parsing
                tokens = min(tokens, ANONYMOUS_MAX_TOKENS)
            if variable_values_over(context.variables, limits.max_variable_values):
                raise QueryTooComplexError(
                    f"the variables hold more than {limits.max_variable_values} values; "
                    "send fewer (an appendOps batch takes at most EDITGRAPH_MAX_OPS_PER_BATCH ops)"
                )
            if context.query and tokens_over(context.query, tokens):
                raise QueryTooComplexError(
                    f"the query is too long: it has more than {tokens} tokens; send a shorter "
                    "document (pass long lists as variables)"
                )
            # The same bound for graphql-core's parser, which can then never meet it first.
            context.parse_options["max_tokens"] = tokens
            context.validation_rules = (
                *(
                    overlap if r is OverlappingFieldsCanBeMergedRule else r
                    for r in context.validation_rules
                ),
                rule,
            )
            yield

        def on_validate(self) -> Iterator[None]:
            context = self.execution_context
            # Parsed within the anonymous token limit; refused before graphql-core's rules.
            if _anonymous(context.context) and not (
                context.graphql_document and introspection_only(context.graphql_document)
            ):
                raise UnauthenticatedError(_presented(context.context))
            if _over_http(context.context) and _subscribes(context):
                raise BadInputError(
                    "subscriptions are served over the websocket at /graphql "
                    "(graphql-transport-ws), not over HTTP"
                )
            yield

    return Limits

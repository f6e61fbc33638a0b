"""The executor every operation runs on: graphql-core's, with a memo per subscription event,
and each event executed once per distinct subscription rather than once per subscriber."""

import asyncio
import json
from collections.abc import Awaitable
from typing import Any

from graphql import ExecutionResult, print_ast
from graphql.pyutils import RefMap
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# Where an event's payload keeps its results, by subscription (see ``Execution``).
RESULTS = "_editgraph_results"


class SharedData(dict[str, Any]):
    """The data of a result that the subscribers of one event share; ``encoded`` is its JSON
    payload once the first of them has been sent it (the view writes it, and it goes with the
    event: nothing outlives the event's subscribers)."""

    encoded: str | None = None


def _shared(result: Any) -> Any:
    """``result``, its data marked as shared (a subscription event always executes to an
    ``ExecutionResult``)."""
    data = result.data if isinstance(result, ExecutionResult) else None
    if isinstance(data, dict) and not isinstance(data, SharedData):
        result.data = SharedData(data)
    return result


async def _shared_later(result: Awaitable[Any]) -> Any:
    return _shared(await result)


class Execution(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, whose subscription events forget what they memoized and are
    executed once for every subscriber of the same kind.

    graphql-core 3.3 memoizes the subfields it collects (and @stream usages) by the identity
    of a field list, keeping the list alive, in a dict that a subscription's executor shares
    with the copy it makes for each event. Each event collects its fields anew, so nothing
    is ever found again and the dict grows by an entry per event until the subscription
    ends: measured ~130 KiB per renderEvents subscriber after 30 s of 10 users editing,
    freed only when it unsubscribes. An event's own memo still serves its lists of values.

    An event reaches every local subscriber of its project as the same payload object
    (``RenderEvent.once``). Subscribers that sent the same document with the same variables
    as the same user get the same result, so it is executed by the first of them and shared
    (the view then encodes it once, too): a thousand renderEvents subscribers of one project
    cost one execution per event, not a thousand.
    """

    _subscription_key: str | None = None
    _event: Any = None

    def build_per_event_executor(self, payload: Any) -> Any:
        """The executor of one event: graphql-core's copy, with empty memos of its own."""
        executor = super().build_per_event_executor(payload)
        assert isinstance(executor, Execution)  # a copy of this one
        executor._relevant_sub_fields = {}
        executor._stream_usages = RefMap()
        executor._event = payload
        executor._subscription_key = self.subscription_key()
        return executor

    def subscription_key(self) -> str:
        """What a subscriber's result depends on besides the event: its document, its
        variables and who it is (computed once per subscription)."""
        if self._subscription_key is None:
            caller = getattr(self.context_value, "caller", None)
            self._subscription_key = json.dumps(
                [
                    print_ast(self.operation),
                    sorted(print_ast(f) for f in self.fragment_definitions.values()),
                    self.variable_values.coerced,
                    getattr(caller, "id", None),
                ],
                sort_keys=True,
                default=str,
            )
        return self._subscription_key

    def execute_operation(self, serially: bool | None = None) -> Any:
        """An event's result: executed by its first subscriber of this kind, shared after."""
        event = self._event
        if event is None or not hasattr(event, "__dict__"):
            return super().execute_operation(serially)
        results: dict[str, Any] = event.__dict__.setdefault(RESULTS, {})
        key = self._subscription_key
        assert key is not None
        if key not in results:
            result = super().execute_operation(serially)
            if self.is_awaitable(result):
                results[key] = asyncio.ensure_future(_shared_later(result))
            else:
                results[key] = _shared(result)
        shared = results[key]
        # Shielded: a subscriber that leaves mid-execution must not cancel it for the rest.
        return asyncio.shield(shared) if isinstance(shared, asyncio.Future) else shared

"""A long subscription keeps its memory flat: each event's executor memoizes on its own."""

import tracemalloc
from collections.abc import AsyncGenerator

import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from schema.execution import Execution


@strawberry.type
class Inner:
    value: int


@strawberry.type
class Event:
    number: int

    @strawberry.field
    def inner(self) -> Inner:
        return Inner(value=self.number)


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def events(self, count: int) -> AsyncGenerator[Event, None]:
        for number in range(count):
            yield Event(number=number)


async def growth_over_events(execution: type[StrawberryGraphQLCoreExecutionContext]) -> int:
    """Bytes still allocated after 1,000 more events of one subscription than after 200."""
    schema = strawberry.Schema(
        query=Query, subscription=Subscription, execution_context_class=execution
    )
    events = await schema.subscribe(
        "subscription { events(count: 1200) { number inner { value } } }"
    )
    assert not isinstance(events, strawberry.types.ExecutionResult)
    tracemalloc.start()
    try:
        seen = 0
        async for result in events:
            assert not result.errors and result.data is not None
            seen += 1
            if seen == 200:
                before = tracemalloc.get_traced_memory()[0]
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


async def test_a_subscription_does_not_grow_with_each_event() -> None:
    # graphql-core's own executor keeps a memo entry per event for the subscription's life.
    assert await growth_over_events(StrawberryGraphQLCoreExecutionContext) > 512 * 1024
    assert await growth_over_events(Execution) < 64 * 1024

"""``Database.hold``: a named lock two write transactions cannot hold at once, on both
databases (on PostgreSQL an advisory lock; on SQLite the write transaction itself)."""

import asyncio

from models.db import Database
from models.tables import User


async def test_a_second_holder_of_a_name_waits_for_the_first_to_commit(db: Database) -> None:
    order: list[str] = []
    first_holds = asyncio.Event()

    async def first() -> None:
        async with db.write() as session:
            await db.hold(session, "sound:proxy/sound/ab/abc")
            first_holds.set()
            await asyncio.sleep(0.5)
            session.add(User(name="first"))
            order.append("first commits")

    async def second() -> None:
        await first_holds.wait()
        async with db.write() as session:
            await db.hold(session, "sound:proxy/sound/ab/abc")
            order.append("second holds")

    async def other_name() -> None:
        await first_holds.wait()
        if not db.is_sqlite:  # SQLite has one writer at a time whatever the name
            async with db.write() as session:
                await db.hold(session, "sound:proxy/sound/cd/cde")
                order.append("other name holds")

    await asyncio.gather(first(), second(), other_name())
    expected = ["first commits", "second holds"]
    if not db.is_sqlite:
        expected.insert(0, "other name holds")
    assert order == expected

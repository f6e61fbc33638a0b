"""ffmpeg's progress callback writes to the database (progress, segments, playable): when
ffmpeg ends while a callback is half-way through its transaction, the callback finishes and
the database is free for the next writer at once."""

import asyncio

from sqlalchemy import text

from jobs import runner
from models.db import Database

# A short ffmpeg run, read at its own pace (-re): 0.4 s, so the first callback starts before
# it ends (unpaced it could end before the first tick) and it ends during that callback.
SHORT = ["ffmpeg", "-nostdin", "-v", "error", "-progress", "pipe:1", "-re",
         "-f", "lavfi", "-i", "nullsrc=s=64x64:r=25:d=0.4", "-f", "null", "-"]  # fmt: skip


async def test_a_callback_half_way_through_a_write_is_finished_not_cut_off(db: Database) -> None:
    began: list[int] = []
    finished: list[int] = []

    async def on_progress(_: float) -> bool:
        async with db.write() as session:
            began.append(1)
            await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
            await asyncio.sleep(0.5)  # ffmpeg ends meanwhile
        finished.append(1)
        return True

    outcome = await runner.run_ffmpeg(
        SHORT, expected_duration=0.4, timeout_s=30, on_progress=on_progress, tick_s=0.02
    )
    assert outcome.returncode == 0, outcome.stderr
    assert began and len(finished) == len(began)
    # The next writer gets the database at once.
    async with asyncio.timeout(2), db.write() as session:
        await session.exec(text("SELECT 1"))  # type: ignore[call-overload]

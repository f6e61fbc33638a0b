"""Run ffmpeg as an asyncio child: progress from ``-progress pipe:1``, cancel, timeout, cleanup."""

import asyncio
import collections
import contextlib
import ctypes
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

TICK_S = 0.5


def die_with_parent() -> None:
    """Linux: the child gets SIGKILL if the worker dies without cleaning up (kill -9)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


@dataclass(frozen=True)
class Outcome:
    """How an ffmpeg run ended."""

    returncode: int
    stderr: str
    cancelled: bool = False
    timed_out: bool = False


async def run_ffmpeg(
    argv: list[str],
    *,
    expected_duration: float,
    timeout_s: float,
    on_progress: Callable[[float], Awaitable[bool]],
) -> Outcome:
    """Run ``argv``; ``on_progress(fraction)`` is called every tick and returns False to cancel."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=die_with_parent,
    )
    progress = 0.0
    tail: collections.deque[str] = collections.deque(maxlen=20)
    cancelled = False

    async def read_progress() -> None:
        nonlocal progress
        assert proc.stdout is not None
        async for raw in proc.stdout:
            key, _, value = raw.decode(errors="replace").strip().partition("=")
            if key in ("out_time_us", "out_time_ms") and value.lstrip("-").isdigit():
                seconds = int(value) / 1_000_000  # both keys are microseconds in ffmpeg
                if expected_duration > 0:
                    progress = max(progress, min(0.999, seconds / expected_duration))

    async def read_errors() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            tail.append(raw.decode(errors="replace").rstrip())

    async def watch() -> None:
        nonlocal cancelled
        while proc.returncode is None:
            await asyncio.sleep(TICK_S)
            if proc.returncode is None and not await on_progress(progress):
                cancelled = True
                proc.kill()
                return

    readers = [asyncio.create_task(read_progress()), asyncio.create_task(read_errors())]
    watcher = asyncio.create_task(watch())
    try:
        async with asyncio.timeout_at(asyncio.get_running_loop().time() + timeout_s):
            await asyncio.gather(*readers)
            returncode = await proc.wait()
    except TimeoutError:
        return Outcome(returncode=-9, stderr="\n".join(tail), timed_out=True)
    finally:
        # Whatever happened (timeout, cancel, our task cancelled), no ffmpeg outlives the job.
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        watcher.cancel()
        for task in (*readers, watcher):
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return Outcome(returncode=returncode, stderr="\n".join(tail), cancelled=cancelled)

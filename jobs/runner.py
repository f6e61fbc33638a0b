"""Run ffmpeg as an asyncio child: progress, cancel, timeout, memory and CPU limits, cleanup."""

import asyncio
import collections
import contextlib
import ctypes
import errno
import math
import os
import resource
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

TICK_S = 0.5
# Measured peaks of address space (x264 at 8 threads, 2 to 17 decoder threads): a proxy
# 0.5-1.4 GB, a 1080p export 1.0-2.1 GB; 4K exports need up to 5.2 GB and 8K 7-12 GB.
DEFAULT_MAX_MEMORY_MB = 4096
MEMORY_SETTING = "EDITGRAPH_RENDER_MAX_MEMORY_MB"
TIMEOUT_SETTING = "EDITGRAPH_RENDER_TIMEOUT_S"
TIMEOUT_PER_S_SETTING = "EDITGRAPH_RENDER_TIMEOUT_PER_S"
# CPU seconds beyond every core busy for the whole timeout: the CPU limit is a backstop for
# an ffmpeg whose worker cannot stop it, never stricter than the timeout itself.
CPU_GRACE_S = 5
# How ffmpeg and its libraries report an allocation the limit refused. x264 reports a refused
# allocation or thread stack only as an encoder that would not open; our own argv is valid.
_NO_MEMORY = (
    "cannot allocate memory",
    "out of memory",
    "malloc",
    "bad_alloc",
    "failed to map segment",
    "get_buffer() failed",
    "error while opening encoder",
)
_CRASHES = {-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS}
# ffmpeg exits 255 when a signal stops it (SIGXCPU as SIGTERM), 123 when several do. It runs
# in a session of its own and we only ever SIGKILL it, so those codes mean its CPU limit.
_STOPPED = {255, 123, -signal.SIGXCPU}


def die_with_parent() -> None:
    """Linux: the child gets SIGKILL if the worker dies without cleaning up (kill -9)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def timeout_for(base_s: float, per_output_s: float, output_s: float) -> float:
    """How long an ffmpeg may run: a base, and ``per_output_s`` for each second it writes
    (a 4-minute 1080p export takes minutes where a 10 s proxy takes seconds)."""
    return base_s + per_output_s * max(0.0, output_s)


def cpu_limit_s(timeout_s: float) -> int:
    """The CPU time an ffmpeg may use: all cores busy for the whole timeout, and a little."""
    return math.ceil(timeout_s * (os.cpu_count() or 1)) + CPU_GRACE_S


def _capped(wanted: int, which: int) -> int:
    """``wanted``, or less if the worker itself runs under a lower hard limit."""
    hard = resource.getrlimit(which)[1]
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def _limited(memory_bytes: int, cpu_s: int) -> Callable[[], None]:
    """What the child runs before exec: die with the worker, and its resource limits."""

    def apply() -> None:
        die_with_parent()
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        # SIGXCPU at the soft limit (ffmpeg stops cleanly), SIGKILL at the hard one.
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + CPU_GRACE_S))

    return apply


def _address_space(pid: int) -> int:
    """The child's peak address space in bytes so far (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmPeak:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass(frozen=True)
class Outcome:
    """How an ffmpeg run ended; ``limit`` says which resource limit stopped it, for a person."""

    returncode: int
    stderr: str
    cancelled: bool = False
    timed_out: bool = False
    limit: str | None = None


async def _wait_out(task: "asyncio.Task[None]") -> None:
    """Wait for ``task`` to end by itself, even if the caller is cancelled meanwhile (the
    cancellation is raised once it has ended); its own error, if any, is raised."""
    interrupted = False
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            interrupted = True
    if interrupted:
        raise asyncio.CancelledError
    if not task.cancelled() and (error := task.exception()) is not None:
        raise error


async def run_ffmpeg(
    argv: list[str],
    *,
    expected_duration: float,
    timeout_s: float,
    on_progress: Callable[[float], Awaitable[bool]],
    timeout_per_s: float = 0.0,
    max_memory_mb: int = DEFAULT_MAX_MEMORY_MB,
    max_cpu_s: int | None = None,
    tick_s: float = TICK_S,
) -> Outcome:
    """Run ``argv`` for at most ``timeout_s`` plus ``timeout_per_s`` per second of
    ``expected_duration``, under a memory limit and a CPU-time limit (default: from that
    timeout); ``on_progress(fraction)`` is called every ``tick_s`` and returns False to cancel."""
    allowed_s = timeout_for(timeout_s, timeout_per_s, expected_duration)
    memory = _capped(max_memory_mb * 1024 * 1024, resource.RLIMIT_AS)
    cpu_s = _capped(max_cpu_s or cpu_limit_s(allowed_s), resource.RLIMIT_CPU)
    memory_hit = f"the render needed more memory than {MEMORY_SETTING} allows ({max_memory_mb} MB)"
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_limited(memory, cpu_s),
            # A Ctrl-C meant for the worker reaches ffmpeg through the worker, which kills it.
            start_new_session=True,
            # glibc reserves 64 MB of address space per thread arena; RLIMIT_AS counts it.
            env={**os.environ, "MALLOC_ARENA_MAX": "2"},
        )
    except OSError as exc:
        if exc.errno != errno.ENOMEM:
            raise
        return Outcome(returncode=127, stderr=str(exc), limit=memory_hit)
    progress = 0.0
    peak = 0
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

    # The watcher is told to stop, never cancelled: ``on_progress`` writes to the database,
    # and a transaction cancelled half-way can leave SQLite's write lock taken.
    stopping = asyncio.Event()

    async def watch() -> None:
        nonlocal cancelled, peak
        while proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), tick_s)
            if stopping.is_set():
                return
            peak = max(peak, _address_space(proc.pid))
            if proc.returncode is None:
                try:
                    going = await on_progress(progress)
                except BaseException:
                    # Nobody would look at it any more: it stops, and the error is raised.
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    raise
                if not going:
                    cancelled = True
                    with contextlib.suppress(ProcessLookupError):  # it may have ended meanwhile
                        proc.kill()
                    return

    readers = [asyncio.create_task(read_progress()), asyncio.create_task(read_errors())]
    watcher = asyncio.create_task(watch())
    try:
        async with asyncio.timeout_at(asyncio.get_running_loop().time() + allowed_s):
            await asyncio.gather(*readers)
            returncode = await proc.wait()
    except TimeoutError:
        hit = (
            f"the render took longer than {allowed_s:g} s and was stopped: {TIMEOUT_SETTING} "
            f"({timeout_s:g} s) plus {TIMEOUT_PER_S_SETTING} ({timeout_per_s:g} s) for each of "
            f"the {expected_duration:.1f} s it writes; raise either to allow longer renders"
        )
        return Outcome(returncode=-9, stderr="\n".join(tail), timed_out=True, limit=hit)
    finally:
        # Whatever happened (timeout, cancel, our task cancelled), no ffmpeg outlives the job.
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        stopping.set()
        for task in readers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await _wait_out(watcher)
    stderr = "\n".join(tail)
    limit = None
    if returncode != 0 and not cancelled:
        if returncode in _STOPPED:
            limit = (
                f"the render used more than {cpu_s} s of CPU time (the limit that follows "
                f"the render timeout, {TIMEOUT_SETTING} and {TIMEOUT_PER_S_SETTING})"
            )
        elif (
            (returncode in _CRASHES and peak >= memory * 0.5)
            or peak >= memory * 0.9
            or any(sign in stderr.lower() for sign in _NO_MEMORY)
        ):
            limit = memory_hit
    return Outcome(returncode=returncode, stderr=stderr, cancelled=cancelled, limit=limit)

"""A large upload through `editgraph serve`, sent by curl in its own process: throughput vs
`sha256sum` of the same file, and the server's peak RSS growth."""

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from bench.common import emit, wait_healthy
from editgraph.redis_embed import EmbeddedRedis, free_port
from models.db import Database
from models.migrate import upgrade
from resolvers import users

MiB = 1024 * 1024
SIZE_MB = int(os.environ.get("EDITGRAPH_BENCH_UPLOAD_MB", "1024"))
RUNS = 3  # the median is reported
QUERY = (
    '{"query": "mutation($f: Upload!) { uploadVideo(file: $f) { __typename '
    '... on VideoUploaded { video { bytes } } ... on InvalidMedia { message } } }", '
    '"variables": {"f": null}}'
)


def make_source(path: Path, megabytes: int) -> None:
    """Raw 720p frames in Matroska: about 1.4 MB a frame, quick to write, a valid video."""
    frames = max(1, megabytes * MiB // (1280 * 720 * 3 // 2))
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30",
            "-frames:v",
            str(frames),
            "-c:v",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )


class PeakRss:
    """Sample a process's RSS (this one's by default) in a thread; ``growth`` is peak minus
    the starting value."""

    def __init__(self, pid: int | None = None) -> None:
        self.proc = psutil.Process(pid)
        self.start = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.start


def curl_upload(base: str, token: str, source: Path, kind: str) -> None:
    """Upload ``source`` to ``base``/graphql with curl, in its own process."""
    sent = subprocess.run(
        [
            "curl", "-sS", "--fail-with-body", f"{base}/graphql",
            "-H", f"Authorization: Bearer {token}",
            "-F", f"operations={QUERY}", "-F", 'map={"0": ["variables.f"]}',
            "-F", f"0=@{source};type={kind}",
        ],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    answer = json.loads(sent.stdout)["data"]["uploadVideo"]
    assert answer["__typename"] == "VideoUploaded", answer


async def user_token(url: str) -> str:
    db = Database(url)
    try:
        await upgrade(db)
        _, token = await users.create_user(db=db, name="bench")
        return token
    finally:
        await db.dispose()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as redis:
        work = Path(tmp)
        source = work / "big.mkv"
        make_source(source, SIZE_MB)
        warm_up = work / "small.mkv"
        make_source(warm_up, 2)
        size = source.stat().st_size
        start = time.perf_counter()
        subprocess.run(["sha256sum", str(source)], check=True, capture_output=True)
        sha_seconds = time.perf_counter() - start

        url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
        token = asyncio.run(user_token(url))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}
        env.update(
            EDITGRAPH_DATABASE_URL=url,
            EDITGRAPH_REDIS_URL=redis.url,
            EDITGRAPH_MEDIA_ROOT=str(work / "uploads"),
            EDITGRAPH_DATA_DIR=str(work / "data"),
            EDITGRAPH_EMBEDDED_WORKER="false",
            EDITGRAPH_MAX_UPLOAD_BYTES=str(8 * 1024 * MiB),
        )
        serve = [sys.executable, "-m", "editgraph.cli", "serve", "--port", str(port)]
        server = subprocess.Popen(
            serve, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base)
            curl_upload(base, token, warm_up, "video/x-matroska")
            timings, growths = [], []
            for run in range(RUNS):
                # A different pixel in the middle of each copy: new bytes, no deduplication.
                with source.open("r+b") as fh:
                    fh.seek(size // 2)
                    fh.write(bytes([run]))
                with PeakRss(server.pid) as rss:
                    start = time.perf_counter()
                    curl_upload(base, token, source, "video/x-matroska")
                    timings.append(time.perf_counter() - start)
                growths.append(rss.growth)
            upload_seconds = statistics.median(timings)
            # Writing the same bytes to the same filesystem, which an upload must also do:
            # past the page cache's dirty limit both run at the disk's pace.
            copies = []
            for run in range(RUNS):
                start = time.perf_counter()
                shutil.copyfile(source, work / "uploads" / "temp" / f"copy-{run}")
                copies.append(time.perf_counter() - start)
            copy_seconds = statistics.median(copies)
        finally:
            server.terminate()
            server.wait(timeout=60)
        mb = size / MiB
        emit(
            f"upload throughput ({mb:.0f} MiB, curl in its own process, editgraph serve)",
            mb / upload_seconds,
            "MiB/s",
            baseline=mb / sha_seconds,
            baseline_name="sha256sum of the same file",
            runs=[round(mb / t, 1) for t in timings],
        )
        emit(
            "upload throughput vs copying the file on the same filesystem",
            mb / upload_seconds,
            "MiB/s",
            baseline=mb / copy_seconds,
            baseline_name="shutil.copyfile of the same file into the media root",
            runs=[round(mb / t, 1) for t in copies],
        )
        growth = max(growths) / MiB
        emit("server peak RSS growth during an upload", growth, "MiB", file_mib=round(mb))


if __name__ == "__main__":
    main()

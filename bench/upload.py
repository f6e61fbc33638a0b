"""A large upload through /graphql: throughput vs `sha256sum` of the same file, and RSS growth."""

import asyncio
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from bench.common import emit, serve
from editgraph.app import create_app
from editgraph.redis_embed import EmbeddedRedis
from editgraph.settings import Settings
from models.db import Database
from models.migrate import upgrade
from resolvers import users

MiB = 1024 * 1024
SIZE_MB = int(os.environ.get("EDITGRAPH_BENCH_UPLOAD_MB", "1024"))
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


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as redis:
        work = Path(tmp)
        source = work / "big.mkv"
        make_source(source, SIZE_MB)
        size = source.stat().st_size
        start = time.perf_counter()
        subprocess.run(["sha256sum", str(source)], check=True, capture_output=True)
        sha_seconds = time.perf_counter() - start

        db = Database(f"sqlite+aiosqlite:///{work / 'bench.db'}")
        await upgrade(db)
        _, token = await users.create_user(db=db, name="bench")
        settings = Settings(env="test", redis_url=redis.url, media_root=work / "uploads")
        async with (
            serve(create_app(settings, db=db)) as base,
            httpx.AsyncClient(base_url=base, timeout=600) as client,
        ):
            with source.open("rb") as fh, PeakRss() as rss:
                start = time.perf_counter()
                response = await client.post(
                    "/graphql",
                    data={"operations": QUERY, "map": '{"0": ["variables.f"]}'},
                    files={"0": (source.name, fh, "video/x-matroska")},
                    headers={"Authorization": f"Bearer {token}"},
                )
                upload_seconds = time.perf_counter() - start
        await db.dispose()
        result = response.json()["data"]["uploadVideo"]
        assert result["__typename"] == "VideoUploaded", result
        mb = size / MiB
        emit(
            f"upload throughput ({mb:.0f} MiB, client and server in one process)",
            mb / upload_seconds,
            "MiB/s",
            baseline=mb / sha_seconds,
            baseline_name="sha256sum",
        )
        emit(
            "upload peak RSS growth (client + server)", rss.growth / MiB, "MiB", file_mib=round(mb)
        )


if __name__ == "__main__":
    asyncio.run(main())

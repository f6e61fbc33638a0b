"""A large `editgraph import vfxb`: by default 1,000 projects of 100 ops each (100,000 ops),
each on its own video, with an export each. Figures: projects per second against the work no
import can skip (hashing and probing each file, measured in the same run), and the peak RSS
growth of the importing process (files are read in chunks; one transaction per project)."""

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import emit
from bench.upload import PeakRss
from models.db import Database
from models.migrate import upgrade
from models.store import MediaStore
from resolvers import import_sources, imports
from resolvers.import_records import Options
from resolvers.presets import export_preset
from resolvers.probe import probe

PROJECTS = int(os.environ.get("EDITGRAPH_BENCH_IMPORT_PROJECTS", "1000"))
VERSIONS, OPS_PER_VERSION = 10, 10  # 100 ops a project
MiB = 1024 * 1024


def backend(root: Path) -> tuple[Path, Path]:
    """A VFXB backend: PROJECTS videos (one clip, each file with a few bytes of its own at
    the end, so each has its own SHA-256), their projects, ops and exports."""
    data, uploads = root / "data", root / "uploads"
    (uploads / "videos").mkdir(parents=True)
    data.mkdir()
    clip = root / "clip.mp4"
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
            "testsrc2=size=160x120:rate=25:duration=2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            str(clip),
        ],
        check=True,
    )
    body = clip.read_bytes()
    videos, projects, operations, exports = [], [], [], []
    for n in range(PROJECTS):
        name = f"videos/v{n}.mp4"
        (uploads / name).write_bytes(body + secrets.token_bytes(16))  # trailing bytes: ignored
        export = f"export/p{n}/v{VERSIONS}_final.mp4"
        (uploads / export).parent.mkdir(parents=True)
        os.link(clip, uploads / export)
        videos.append({"id": f"v{n}", "userId": f"u{n % 50}", "path": name})
        projects.append(
            {
                "id": f"p{n}",
                "userId": f"u{n % 50}",
                "name": f"project {n}",
                "videoId": f"v{n}",
                "currentVersion": VERSIONS,
            }
        )
        for version in range(1, VERSIONS + 1):
            for op in range(OPS_PER_VERSION):
                operations.append(
                    {
                        "projectId": f"p{n}",
                        "version": version,
                        "type": "brightness",
                        "params": {"brightness": (version * OPS_PER_VERSION + op) % 50},
                    }
                )
        exports.append({"id": f"e{n}", "projectId": f"p{n}", "version": VERSIONS, "key": export})
    for name, records in (
        ("videos", videos),
        ("projects", projects),
        ("editOperations", operations),
        ("exportVersions", exports),
    ):
        (data / f"{name}.json").write_text(json.dumps(records))
    return data, uploads


async def unavoidable(uploads: Path) -> float:
    """Seconds to hash and probe every video: what any import of these files must do."""
    start = time.perf_counter()
    for path in sorted((uploads / "videos").iterdir()):
        await asyncio.to_thread(imports.sha256_of, path)
        await probe(path)
    return time.perf_counter() - start


async def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="editgraph-bench-import-"))
    try:
        data, uploads = backend(root)
        baseline_s = await unavoidable(uploads)
        db = Database(f"sqlite+aiosqlite:///{root / 'bench.db'}")
        await upgrade(db)
        store = MediaStore(root / "media")
        store.ensure_layout()
        options = Options(operator="bench", export_preset=export_preset(crf=20, x264_preset="fast"))
        with PeakRss() as rss:
            start = time.perf_counter()
            source = import_sources.vfxb(data, uploads)
            report = await imports.run(
                db=db, store=store, queue=None, source=source, options=options
            )
            took = time.perf_counter() - start
        await db.dispose()
        assert report.created["project"] == PROJECTS, report.problems[:5]
        assert report.created["op"] == PROJECTS * VERSIONS * OPS_PER_VERSION
        emit(
            "import_projects_per_s",
            PROJECTS / took,
            "projects/s",
            baseline=PROJECTS / baseline_s,
            baseline_is="hashing and probing each source file, nothing else",
            projects=PROJECTS,
            ops=report.created["op"],
            seconds=round(took, 1),
        )
        emit("import_peak_rss_growth", rss.growth / MiB, "MiB", projects=PROJECTS)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())

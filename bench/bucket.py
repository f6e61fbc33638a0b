"""Media in a bucket (moto's S3 server on loopback), as a cluster runs it:

- a large upload through `editgraph serve`, sent by `curl` in its own process: throughput
  as a ratio to `sha256sum` of the same file, and the server's peak RSS growth;
- exports per minute with 1 and with 3 `editgraph worker` processes on this machine, and
  the CPU each worker (and its ffmpeg children) used.

`python -m bench.bucket`; EDITGRAPH_BENCH_UPLOAD_MB (1024), EDITGRAPH_BENCH_EXPORTS (6).
Needs PostgreSQL on 127.0.0.1:5432 (or EDITGRAPH_TEST_POSTGRES_URL) for the cluster part.
"""

import asyncio
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import obstore
import psutil

from bench.common import emit, scratch_postgres
from bench.upload import PeakRss, curl_upload, make_source
from editgraph.cluster import BUCKET, LOOPBACK_CREDENTIALS, Cluster
from models.bucket import s3_store
from models.db import Database
from resolvers import users

MiB = 1024 * 1024
UPLOAD_MB = int(os.environ.get("EDITGRAPH_BENCH_UPLOAD_MB", "1024"))
EXPORTS = int(os.environ.get("EDITGRAPH_BENCH_EXPORTS", "6"))
UPLOAD = "mutation($f: Upload!) { uploadVideo(file: $f) { ... on VideoUploaded { video { id } } } }"
CREATE = """mutation($v: ID!) { createProject(videoId: $v, name: "bench") {
  ... on ProjectCreated { project { id } } } }"""
EXPORT = "mutation($p: ID!) { requestExport(projectId: $p) { __typename } }"
STATUS = "query($p: ID!) { project(id: $p) { latestExport { status } } }"


def upload_figures(cluster: Cluster, token: str, source: Path, warm_up: Path) -> None:
    size = source.stat().st_size
    # One small upload first: the bucket client's runtime and connections are set up, as
    # on a server that has been up for a while.
    send(cluster, token, warm_up, "video/mp4")
    start = time.perf_counter()
    subprocess.run(["sha256sum", str(source)], check=True, capture_output=True)
    sha_s = time.perf_counter() - start
    server = cluster.children["server-1"].popen
    assert server is not None
    with PeakRss(server.pid) as rss:
        start = time.perf_counter()
        send(cluster, token, source, "video/x-matroska")
        upload_s = time.perf_counter() - start
    mb = size / MiB
    # What the endpoint itself takes: the same file put straight into it, in parts.
    assert cluster.s3_endpoint_url is not None
    bucket = s3_store(f"s3://{BUCKET}", endpoint=cluster.s3_endpoint_url, region="us-east-1")
    start = time.perf_counter()
    obstore.put(bucket, "bench/raw-put", source, chunk_size=8 * MiB, max_concurrency=2)
    raw_s = time.perf_counter() - start
    obstore.delete(bucket, "bench/raw-put")
    emit(
        "upload to a bucket vs the same file put straight into the endpoint",
        mb / upload_s,
        "MiB/s",
        baseline=mb / raw_s,
        baseline_name="obstore put of the file to the same endpoint, in 8 MiB parts",
    )
    emit(
        f"upload to a bucket ({mb:.0f} MiB, curl in its own process, moto on loopback)",
        mb / upload_s,
        "MiB/s",
        baseline=mb / sha_s,
        baseline_name="sha256sum",
    )
    emit("server RSS growth during that upload", rss.growth / MiB, "MiB")


def send(cluster: Cluster, token: str, source: Path, kind: str) -> None:
    """Upload with curl, in its own process, to the cluster's first server."""
    curl_upload(cluster.urls[0], token, source, kind)


async def exports_per_minute(cluster: Cluster, token: str, clip: Path) -> float:
    """Queue EXPORTS exports of distinct projects at once; exports finished per minute."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=cluster.urls[0], timeout=120, headers=headers) as http:
        projects = []
        for n in range(EXPORTS):
            # Distinct bytes per project: no export reuses another's file.
            copy = clip.with_name(f"clip-{n}.mp4")
            subprocess.run(
                ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(clip), "-c", "copy",
                 "-metadata", f"title=bench {n}", str(copy)],
                check=True,
            )  # fmt: skip
            operations = json.dumps({"query": UPLOAD, "variables": {"f": None}})
            sent = await http.post(
                "/graphql",
                data={"operations": operations, "map": '{"0": ["variables.f"]}'},
                files={"0": (copy.name, copy.read_bytes(), "video/mp4")},
            )
            video = sent.json()["data"]["uploadVideo"]["video"]["id"]
            made = await http.post("/graphql", json={"query": CREATE, "variables": {"v": video}})
            projects.append(made.json()["data"]["createProject"]["project"]["id"])
        await asyncio.sleep(5)  # the proxies of the new projects are out of the way
        start = time.perf_counter()
        for pid in projects:
            await http.post("/graphql", json={"query": EXPORT, "variables": {"p": pid}})
        while True:
            done = 0
            for pid in projects:
                body = (
                    await http.post("/graphql", json={"query": STATUS, "variables": {"p": pid}})
                ).json()
                latest = body["data"]["project"]["latestExport"]
                done += bool(latest and latest["status"] == "DONE")
            if done == len(projects):
                return len(projects) / ((time.perf_counter() - start) / 60)
            await asyncio.sleep(0.5)


def worker_cpu(cluster: Cluster) -> dict[str, float]:
    """CPU seconds each worker and the ffmpeg children it waited for used so far."""
    used = {}
    for name, process in cluster.children.items():
        if name.startswith("worker") and process.popen is not None:
            t = psutil.Process(process.popen.pid).cpu_times()
            used[name] = round(t.user + t.system + t.children_user + t.children_system, 1)
    return used


async def run_cluster(work: Path, database: str, workers: int, clip: Path) -> float:
    async with asyncio.timeout(1800):
        await scratch_postgres(database.rsplit("/", 1)[-1])
        env = {"EDITGRAPH_ENV": "test", "EDITGRAPH_RATE_EXPORTS": "100000"}
        with Cluster(
            work / f"cluster-{workers}", database_url=database, servers=1, workers=workers,
            extra_env=env,
        ) as cluster:  # fmt: skip
            db = Database(database)
            _, token = await users.create_user(db=db, name="bench")
            await db.dispose()
            if workers == 1 and UPLOAD_MB:
                source = work / "big.mkv"
                make_source(source, UPLOAD_MB)
                upload_figures(cluster, token, source, clip)
                source.unlink()
            if not EXPORTS:
                return 0.0
            before = worker_cpu(cluster)
            rate = await exports_per_minute(cluster, token, clip)
            after = worker_cpu(cluster)
        emit(
            f"exports per minute, {workers} worker(s) on {os.cpu_count()} cores "
            f"({EXPORTS} exports of a 10 s 640x360 clip)",
            rate,
            "exports/min",
            worker_cpu_s={k: round(after[k] - before.get(k, 0), 1) for k in after},
        )
        return rate


async def main() -> None:
    for name, value in LOOPBACK_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    url = await scratch_postgres("editgraph_bench_bucket")
    if url is None:
        print(json.dumps({"skipped": "bench.bucket needs PostgreSQL on 127.0.0.1:5432"}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = work / "clip.mp4"
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
             "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=440",
             "-t", "10", "-c:v", "libx264", "-g", "60", "-c:a", "aac", "-shortest", str(clip)],
            check=True,
        )  # fmt: skip
        one = await run_cluster(work, url, 1, clip)
        if not EXPORTS:
            return
        three = await run_cluster(work, url, 3, clip)
        emit("exports per minute, 3 workers vs 1", three, "exports/min", baseline=one)


if __name__ == "__main__":
    asyncio.run(main())

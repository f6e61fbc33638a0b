"""A full disk, for real (a tiny tmpfs as the media root): uploads say STORAGE_FULL, renders
wait for space and then finish, /healthz warns."""

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.api import AppFactory, new_project, project, upload
from tests.helpers.polling import until
from tests.helpers.worker import WorkerFactory

pytestmark = pytest.mark.slow
MiB = 1024 * 1024
EXPORT_STATE = """query($id: ID!) { project(id: $id) {
  versions(first: 1) { nodes { export { status bytes render { status error attempts } } } } } }"""


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path``; skips the test where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("no mount command: a real full disk needs a tmpfs (run as root on Linux)")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(root: Path) -> Path:
    """Write a file until the disk is full to the last byte; returns it (delete it to free)."""
    filler = root / "filler"
    chunk = 1 * MiB
    with filler.open("wb", buffering=0) as fh:
        while chunk:
            try:
                fh.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2
    return filler


async def test_an_upload_to_a_full_disk_is_storage_full_and_keeps_nothing(
    tmp_path: Path, make_api: AppFactory, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    tiny = tmp_path / "tiny.mp4"  # smaller than a write buffer: it fails when the file closes
    tiny.write_bytes(media["clip"].read_bytes()[:300])
    with tmpfs(tmp_path / "uploads", "4m") as root:  # the media root of the test's settings
        async with make_api(min_free_bytes=MiB) as api:
            c = api.client
            health = await c.get("/healthz")
            assert health.status_code == 200 and "disk" not in health.json()

            filler = fill(root)
            for source in (media["clip"], tiny):
                response = await api.upload(alice, source)
                assert response.status_code == 507, response.text
                assert response.text.startswith("STORAGE_FULL: ")
                assert "malformed" not in response.text and str(root) not in response.text
                assert list((root / "temp").iterdir()) == []
            health = await c.get("/healthz")
            # A warning: the server still answers, reads and edits still work.
            assert health.status_code == 200
            assert health.json()["disk"] == "low" and health.json()["status"] == "degraded"
            assert health.json()["disk_free_bytes"] < MiB

            filler.unlink()
            uploaded = await upload(api, alice, media["clip"])
            assert uploaded["__typename"] == "VideoUploaded"
            assert "disk" not in (await c.get("/healthz")).json()


async def test_a_render_on_a_full_disk_waits_for_space_then_finishes(
    make_api: AppFactory,
    run_worker: WorkerFactory,
    env: dict[str, str],
    tokens: dict[str, str],
    media: dict[str, Path],
) -> None:
    alice = tokens["alice"]
    with tmpfs(Path(env["EDITGRAPH_MEDIA_ROOT"]), "16m") as root:
        async with make_api() as api:
            pid = await new_project(api, alice, media["clip"])
            async with run_worker():

                async def first_proxy() -> bool:
                    latest = (await project(api, alice, pid))["latestProxy"]
                    return bool(latest) and latest["status"] == "DONE"

                await until(first_proxy, what="the first proxy")
                filler = fill(root)
                queued = await api.data(
                    alice,
                    "mutation($p: ID!) { requestExport(projectId: $p) { __typename } }",
                    {"p": pid},
                )
                assert queued["requestExport"]["__typename"] == "ExportQueued"

                async def export_state() -> dict[str, Any]:
                    data = await api.data(alice, EXPORT_STATE, {"id": pid})
                    state: dict[str, Any] = data["project"]["versions"]["nodes"][0]["export"]
                    assert state["status"] != "FAILED", state  # a full disk is not the edit's fault
                    return state

                async def waiting_for_space() -> dict[str, Any] | None:
                    state = await export_state()
                    error = state["render"]["error"] or ""
                    return state if "media storage is full" in error else None

                waiting = await until(waiting_for_space, within=60, what="the render to wait")
                assert waiting["render"]["attempts"] == 0  # waiting spends no attempt
                filler.unlink()

                async def done() -> dict[str, Any] | None:
                    state = await export_state()
                    return state if state["status"] == "DONE" else None

                finished = await until(done, within=60, what="the export after space returned")
            exports = list((root / "export").rglob("*_final.mp4"))
            assert [p.stat().st_size for p in exports] == [finished["bytes"]]
            assert finished["render"]["error"] is None

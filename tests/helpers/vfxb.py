"""A small VFXB backend on disk, as the issue describes its files: records in both shapes
(arrays and objects keyed by id), media in editgraph's layout, and the flaws an import must
catch (a duplicate, a wrong sha256, a missing file, an unknown op, a failed export)."""

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Vfxb:
    data: Path
    uploads: Path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_vfxb(root: Path, media: dict[str, Path]) -> Vfxb:
    """u1 owns p1 (v1: blur and brightness, v2: trim; exports v1 and v2, v2 pinned), p2
    (an archived export of v1), p4 (an unknown op) and p5 (on a duplicate of p1's source,
    no export of its current version); u2 owns p3, whose source has a wrong sha256."""
    data, uploads = root / "data", root / "uploads"
    for folder in ("videos", "export/p1", "archive"):
        (uploads / folder).mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(media["clip"], uploads / "videos/a.mp4")
    shutil.copyfile(media["other"], uploads / "videos/b.mp4")
    shutil.copyfile(media["clip"], uploads / "videos/a_copy.mp4")
    shutil.copyfile(media["other"], uploads / "videos/bad.mp4")
    shutil.copyfile(media["silent"], uploads / "export/p1/v1_final.mp4")
    shutil.copyfile(media["clip"], uploads / "export/p1/v2_final.mp4")
    shutil.copyfile(media["silent"], uploads / "archive/e3_v1_final.mp4")
    videos = [
        {
            "id": "v1",
            "userId": "u1",
            "filename": "a.mp4",
            "path": "videos/a.mp4",
            "sha256": sha256(uploads / "videos/a.mp4"),
            "refCount": 7,
        },
        {"id": "v2", "userId": "u1", "originalName": "b.mp4", "path": "videos/b.mp4"},
        {"id": "v3", "userId": "u1", "filename": "a copy.mp4", "path": "videos/a_copy.mp4"},
        {
            "id": "v4",
            "userId": "u2",
            "filename": "bad.mp4",
            "path": "videos/bad.mp4",
            "sha256": "0" * 64,
            "somethingElse": True,
        },
    ]
    projects = {
        "p1": {
            "userId": "u1",
            "name": "Holiday",
            "videoId": "v1",
            "currentVersion": 2,
            "createdAt": "2025-03-01T10:00:00Z",
        },
        "p2": {"userId": "u1", "title": "Trailer", "videoId": "v2", "currentVersion": 1},
        "p3": {"userId": "u2", "name": "Bad source", "videoId": "v4", "currentVersion": 0},
        "p4": {"userId": "u1", "name": "Sparkles", "videoId": "v1", "currentVersion": 1},
        "p5": {"userId": "u1", "name": "Copy", "videoId": "v3", "currentVersion": 1},
    }
    operations = [
        {
            "id": "o1",
            "projectId": "p1",
            "version": 1,
            "type": "gaussian-blur",
            "params": {"radius": 5},
            "timestamp": 1,
        },
        {
            "id": "o2",
            "projectId": "p1",
            "version": 1,
            "type": "brightness",
            "params": {"brightness": 20},
            "timestamp": 2,
        },
        {
            "id": "o3",
            "projectId": "p1",
            "version": 2,
            "type": "trim",
            "params": {"start": 0.5, "end": 1.5},
            "timestamp": 3,
        },
        {
            "id": "o4",
            "projectId": "p2",
            "version": 1,
            "type": "brightness",
            "params": {"brightness": 10},
        },
        {"id": "o5", "projectId": "p4", "version": 1, "type": "sparkle", "params": {}},
        {
            "id": "o6",
            "projectId": "p5",
            "version": 1,
            "type": "brightness",
            "params": {"brightness": 5},
        },
    ]
    exports = {
        "e1": {
            "projectId": "p1",
            "version": 1,
            "key": "export/p1/v1_final.mp4",
            "pinned": False,
            "status": "completed",
        },
        "e2": {"projectId": "p1", "version": 2, "path": "export/p1/v2_final.mp4", "pinned": True},
        "e3": {"projectId": "p2", "version": 1, "key": "archive/e3_v1_final.mp4"},
        "e4": {"projectId": "p5", "version": 0, "key": "export/p5/v0_final.mp4"},
        "e5": {
            "projectId": "p2",
            "version": 0,
            "key": "export/p2/v0_final.mp4",
            "status": "failed",
        },
    }
    for name, records in (
        ("videos", videos),
        ("projects", projects),
        ("editOperations", operations),
        ("exportVersions", exports),
    ):
        (data / f"{name}.json").write_text(json.dumps(records, indent=1))
    return Vfxb(data, uploads)


def tree(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` with its size: a folder's state, to compare."""
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }

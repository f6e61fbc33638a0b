"""The media store: files under the media root, addressed by keys like ``videos/{sha}.mp4``."""

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

AREAS = ("videos", "proxy", "export", "archive", "temp")


@dataclass(frozen=True)
class StagedFile:
    """An upload fully written to ``temp/``, with its SHA-256 computed on the way."""

    path: Path
    sha256: str
    bytes: int
    filename: str


class UploadTooLarge(Exception):
    """Raised by ``StagingFile.write`` when a file grows past its limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than the {limit} byte limit")
        self.limit = limit


class StagingFile:
    """A file being streamed into ``temp/``: hashed as written, removed unless finished."""

    def __init__(self, path: Path, filename: str, max_bytes: int) -> None:
        self.path = path
        self.filename = filename
        self.max_bytes = max_bytes
        self.size = 0
        self._hash = hashlib.sha256()
        self._file = path.open("xb")

    def write(self, chunk: bytes) -> None:
        """Append a chunk; raise ``UploadTooLarge`` (and discard) once past the limit."""
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.discard()
            raise UploadTooLarge(self.max_bytes)
        self._hash.update(chunk)
        self._file.write(chunk)

    def finish(self) -> StagedFile:
        """Close the file and describe it."""
        self._file.close()
        return StagedFile(self.path, self._hash.hexdigest(), self.size, self.filename)

    def discard(self) -> None:
        """Close and delete the partial file."""
        self._file.close()
        self.path.unlink(missing_ok=True)


class MediaStore:
    """Files under one root, in the seed's layout: videos, proxy, export, archive, temp."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def ensure_layout(self) -> None:
        """Create the area folders if they are missing."""
        for area in AREAS:
            (self.root / area).mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file behind a key; refuses keys that would leave the media root."""
        candidate = (self.root / key).resolve()
        if key.startswith("/") or not candidate.is_relative_to(self.root) or candidate == self.root:
            raise ValueError(f"media key {key!r} is outside the media root")
        return candidate

    def stage(self, filename: str, *, max_bytes: int) -> StagingFile:
        """Open a new uniquely named file under ``temp/`` for an incoming upload."""
        path = self.root / "temp" / f"upload-{secrets.token_hex(12)}.part"
        return StagingFile(path, filename, max_bytes)

    def adopt(self, staged: StagedFile, key: str) -> None:
        """Move a staged file to ``key``; if identical bytes are already there, drop it."""
        target = self.path(key)
        if target.exists():
            staged.path.unlink(missing_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        # Same filesystem, so the rename is atomic: readers see no file or the whole file.
        os.replace(staged.path, target)

    def temp_entries(self) -> list[Path]:
        """What is left in ``temp/`` (tests and the GC look here)."""
        return sorted((self.root / "temp").iterdir())

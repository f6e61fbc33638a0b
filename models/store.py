"""The media store: files under the media root, addressed by keys like ``videos/{sha}.mp4``."""

import contextlib
import errno
import hashlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from models.keys import AREAS, upload_temp

# The errors a full disk (or a full quota) raises.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


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


class StorageFull(Exception):
    """The media root has no space left; what was being written is discarded."""

    def __init__(self) -> None:
        super().__init__("the server's media storage is full: nothing was kept, try again later")


def is_storage_full(error: BaseException) -> bool:
    """Whether an error is the disk (or quota) being full."""
    return isinstance(error, OSError) and error.errno in NO_SPACE


class StagingFile:
    """A file being streamed into ``temp/``: hashed as written, removed unless finished."""

    def __init__(self, path: Path, filename: str, max_bytes: int) -> None:
        self.path = path
        self.filename = filename
        self.max_bytes = max_bytes
        self.size = 0
        self._hash = hashlib.sha256()
        try:
            self._file = path.open("xb")
        except OSError as exc:
            if is_storage_full(exc):
                raise StorageFull from exc
            raise

    def write(self, chunk: bytes) -> None:
        """Append a chunk; raise ``UploadTooLarge`` (and discard) once past the limit."""
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.discard()
            raise UploadTooLarge(self.max_bytes)
        self._hash.update(chunk)
        try:
            self._file.write(chunk)
        except OSError as exc:
            self._give_up(exc)

    def finish(self) -> StagedFile:
        """Close the file and describe it; ``StorageFull`` (and discard) if the disk is full."""
        try:
            self._file.close()  # flushes the last buffered bytes, which may not fit
        except OSError as exc:
            self._give_up(exc)
        return StagedFile(self.path, self._hash.hexdigest(), self.size, self.filename)

    def discard(self) -> None:
        """Close and delete the partial file."""
        with contextlib.suppress(OSError):  # unwritten bytes of a file deleted anyway
            self._file.close()
        self.path.unlink(missing_ok=True)

    def _give_up(self, exc: OSError) -> NoReturn:
        self.discard()
        if is_storage_full(exc):
            raise StorageFull from exc
        raise exc


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
        path = self.path(upload_temp())
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

    def free_bytes(self) -> int:
        """Space left for new files under the media root."""
        return shutil.disk_usage(self.root).free

    def temp_entries(self) -> list[Path]:
        """What is left in ``temp/`` (tests and the GC look here)."""
        return sorted((self.root / "temp").iterdir())

    def clean_temp(
        self, *, grace_s: float, live: Callable[[str], bool] = lambda _name: False
    ) -> tuple[int, int]:
        """Remove ``temp/`` entries nothing touched for ``grace_s`` seconds (left by a crash),
        except those ``live(name)`` claims; returns (entries, bytes) removed."""
        folder = self.root / "temp"
        if not folder.is_dir():
            return 0, 0
        cutoff = time.time() - grace_s
        removed = freed = 0
        for entry in folder.iterdir():
            try:
                touched, size = _last_touch(entry)
                if touched >= cutoff or live(entry.name):
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except FileNotFoundError:
                continue  # finished or cleaned by someone else meanwhile
            removed, freed = removed + 1, freed + size
        return removed, freed


def _last_touch(entry: Path) -> tuple[float, int]:
    """The newest change to an entry or anything under it, and its bytes. The inode change
    time counts too: a rename or a hard link keeps the old mtime, and that is not age."""
    stat = entry.lstat()
    touched, size = max(stat.st_mtime, stat.st_ctime), stat.st_size
    if entry.is_dir() and not entry.is_symlink():
        for inner in entry.rglob("*"):
            try:
                inner_stat = inner.lstat()
            except FileNotFoundError:
                continue
            touched = max(touched, inner_stat.st_mtime, inner_stat.st_ctime)
            size += inner_stat.st_size
    return touched, size

"""The media store: files addressed by keys like ``videos/{sha}.mp4``, under the media root
(here) or in a bucket (``models.bucket``)."""

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import NoReturn, Protocol

from models.keys import AREAS, aside_temp, upload_temp

# The errors a full disk (or a full quota) raises.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class Mirror(Protocol):
    """A copy of a staging file made elsewhere while it is written (a bucket upload)."""

    def written(self) -> None:
        """The local file is complete: copy the rest."""

    def abandon(self) -> None:
        """The file is not kept: stop, and remove what was copied."""


@dataclass(frozen=True)
class StagedFile:
    """An upload fully written to ``temp/``, with its SHA-256 computed on the way (and,
    with a bucket, its ``mirror`` streaming to a temp key meanwhile)."""

    path: Path
    sha256: str
    bytes: int
    filename: str
    mirror: Mirror | None = None

    def discard(self) -> None:
        """Drop an upload that is not kept: its local file and any copy of it."""
        self.path.unlink(missing_ok=True)
        if self.mirror is not None:
            self.mirror.abandon()


class UploadTooLarge(Exception):
    """Raised by ``StagingFile.write`` when a file grows past its limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than the {limit} byte limit")
        self.limit = limit


class StorageFull(Exception):
    """The media root has no space left; what was being written is discarded."""

    def __init__(self) -> None:
        super().__init__("the server's media storage is full: nothing was kept, try again later")


class StoreUnavailable(OSError):
    """The media store (a bucket) did not answer, or answered with an error: transient."""


def is_storage_full(error: BaseException) -> bool:
    """Whether an error is the disk (or quota) being full."""
    return isinstance(error, OSError) and error.errno in NO_SPACE


class StagingFile:
    """A file being streamed into ``temp/``: hashed as written, removed unless finished."""

    def __init__(
        self, path: Path, filename: str, max_bytes: int, mirror: Mirror | None = None
    ) -> None:
        self.path = path
        self.filename = filename
        self.max_bytes = max_bytes
        self.mirror = mirror
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
        if self.mirror is not None:
            self.mirror.written()
        return StagedFile(self.path, self._hash.hexdigest(), self.size, self.filename, self.mirror)

    def discard(self) -> None:
        """Close and delete the partial file."""
        with contextlib.suppress(OSError):  # unwritten bytes of a file deleted anyway
            self._file.close()
        self.path.unlink(missing_ok=True)
        if self.mirror is not None:
            self.mirror.abandon()

    def _give_up(self, exc: OSError) -> NoReturn:
        self.discard()
        if is_storage_full(exc):
            raise StorageFull from exc
        raise exc


@dataclass(frozen=True)
class Entry:
    """One stored file: its key, bytes, last change (epoch seconds), and what makes two names
    of one file the same (a hard link on disk; every object in a bucket is its own)."""

    key: str
    bytes: int
    modified: float
    identity: object


class MediaStore:
    """Media in the seed's layout (videos, proxy, export, archive, segments, temp), here as
    files under one root. ``BucketStore`` keeps the same keys in an S3-compatible bucket;
    the code above asks this interface and cannot tell which it has.

    Work files (ffmpeg's outputs, work folders, uploads being streamed in) live in
    ``scratch``, a local folder; ``publish`` places a finished one under its key."""

    # Links to media: False when the server signs its own /media links (``url`` is None).
    presigns = False
    # Whether a file can have two names (a hard link) so removing one frees nothing.
    hard_links = True

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

    def scratch(self, key: str) -> Path:
        """A local path for a ``temp/…`` key: a work file or folder of this process."""
        if not key.startswith("temp/"):
            raise ValueError(f"scratch key {key!r} is not under temp/")
        return self.path(key)

    def stage(self, filename: str, *, max_bytes: int) -> StagingFile:
        """Open a new uniquely named file under ``temp/`` for an incoming upload."""
        path = self.scratch(upload_temp())
        path.parent.mkdir(parents=True, exist_ok=True)
        return StagingFile(path, filename, max_bytes)

    def adopt(self, staged: StagedFile, key: str) -> None:
        """Place a staged upload at ``key``; if identical bytes are already there, drop it."""
        self.publish(staged.path, key, replace=False)

    # Reading

    def exists(self, key: str) -> bool:
        """Whether a file is stored under ``key``."""
        return self.path(key).is_file()

    def size(self, key: str) -> int | None:
        """The bytes stored under ``key``, or None."""
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    def read_bytes(self, key: str) -> bytes:
        """The whole of a (small) file; ``FileNotFoundError`` if there is none."""
        return self.path(key).read_bytes()

    def local(self, key: str) -> Path:
        """A local file with the bytes of ``key``, for ffmpeg to read; ``FileNotFoundError``
        if there is none. Here it is the file itself."""
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(key)
        return path

    def listing(self, prefix: str) -> list[Entry]:
        """Every file under a folder key (``segments``, ``proxy/sound/ab``), at any depth."""
        folder = self.path(prefix)
        found = []
        for path in folder.rglob("*") if folder.is_dir() else ():
            try:
                stat = path.lstat()
            except FileNotFoundError:
                continue  # removed while we looked
            if S_ISREG(stat.st_mode):
                key = path.relative_to(self.root).as_posix()
                found.append(Entry(key, stat.st_size, stat.st_mtime, (stat.st_dev, stat.st_ino)))
        return found

    # Writing

    def write_bytes(self, key: str, data: bytes, *, replace: bool = True) -> None:
        """Store small bytes at ``key`` at once (a reader sees no file or all of it); with
        ``replace=False`` a file already there stays."""
        target = self.path(key)
        if not replace and target.is_file():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
        staged.write_bytes(data)
        os.replace(staged, target)

    def publish(self, path: Path, key: str, *, replace: bool = True) -> bool:
        """Move a finished scratch file to ``key``. With ``replace=False`` a file already
        there stays and this one is dropped (returns False)."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if replace:
                # Same filesystem, so the rename is atomic: readers see no file or the whole.
                os.replace(path, target)
                return True
            try:
                os.link(path, target)
            except FileExistsError:
                return False
            return True
        finally:
            path.unlink(missing_ok=True)

    def copy(self, source: str, target: str) -> int:
        """Give the bytes of ``source`` the name ``target`` too (a hard link, or a copy
        across filesystems), unless ``target`` exists; returns the bytes this added to the
        store (0 for a link). ``FileNotFoundError`` if ``source`` is gone."""
        src, dst = self.path(source), self.path(target)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except FileExistsError:
            return 0
        except OSError:
            if not src.is_file():
                raise FileNotFoundError(source) from None
            temp = self.scratch(aside_temp())
            shutil.copyfile(src, temp)  # streamed, never the whole file in memory
            return temp.stat().st_size if self.publish(temp, target, replace=False) else 0
        return 0

    def bring(self, path: Path, key: str, *, replace: bool = False, link: bool = True) -> int:
        """Give a file from outside the store (an import's source, never changed) the name
        ``key``: a hard link on the same filesystem (``link``), else a streamed copy. A file
        already there stays if it has the same size, unless ``replace``. Returns the bytes
        this added to the store (0 for a link, or for a file that was there)."""
        target = self.path(key)
        if not replace and target.is_file() and target.stat().st_size == path.stat().st_size:
            return 0
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = self.scratch(aside_temp())
        temp.parent.mkdir(parents=True, exist_ok=True)
        try:
            if not link:
                raise OSError("copy asked for")
            os.link(path, temp)
            added = 0
        except OSError:  # another filesystem (or one without links): copy, never in memory
            shutil.copyfile(path, temp)
            added = temp.stat().st_size
        self.publish(temp, key, replace=True)  # an atomic rename over what was there
        return added

    def move(self, source: str, target: str) -> None:
        """Rename ``source`` to ``target`` (replacing it); ``FileNotFoundError`` if gone."""
        dst = self.path(target)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path(source), dst)

    def remove(self, key: str) -> int:
        """Remove one name of a file; returns the bytes freed (0 unless it was the last)."""
        path = self.path(key)
        try:
            stat = path.stat()
            path.unlink()
        except FileNotFoundError:
            return 0
        return stat.st_size if stat.st_nlink == 1 else 0

    def remove_folder(self, key: str) -> int:
        """Remove every file under a folder key, and the folder; returns bytes freed."""
        freed = sum(self.remove(entry.key) for entry in self.listing(key))
        folder = self.path(key)
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
        return freed

    # Folders written as they grow (a proxy's sound: ffmpeg's HLS output)

    def folder(self, key: str) -> Path:
        """Where a process writes the folder ``key``; others see it after ``sync_folder``.
        Here it is the stored folder itself."""
        path = self.path(key)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def sync_folder(self, path: Path, key: str) -> None:
        """Store what is new in a folder written at ``folder(key)``, playlists last."""

    def release_folder(self, path: Path, key: str) -> None:
        """A folder written at ``folder(key)`` is stored whole; a local copy may go (here
        it is the stored folder: it stays)."""

    def local_folder(self, key: str) -> Path:
        """A local copy of the stored folder ``key`` (here the folder itself)."""
        return self.path(key)

    # Links and space

    def url(self, key: str, ttl_s: int) -> str | None:
        """A presigned link to ``key``; None when the server signs ``/media`` links."""
        return None

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
        return clean_folder(self.root / "temp", grace_s=grace_s, live=live)


def clean_folder(folder: Path, *, grace_s: float, live: Callable[[str], bool]) -> tuple[int, int]:
    """Remove a local folder's entries untouched for ``grace_s`` that ``live`` does not
    claim; returns (entries, bytes) removed."""
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

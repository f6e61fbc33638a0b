"""Media in an S3-compatible bucket (AWS S3, R2, Ceph, SeaweedFS, MinIO), with the same keys
as the local folder, through obstore; and the local cache a worker reads sources from.

A bucket has no rename and no hard link: a key is written once, whole (a put is atomic),
and content-addressed keys are placed with a conditional write (``If-None-Match``), so two
servers storing the same bytes store them once. ffmpeg never reads a URL: what it reads
is downloaded into the cache first (size checked, and SHA-256 where the key names it),
and what it writes is made locally and uploaded.
"""

import contextlib
import functools
import hashlib
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError
from obstore.store import S3Store

from models.keys import aside_temp
from models.store import (
    Entry,
    MediaStore,
    StagedFile,
    StagingFile,
    StoreUnavailable,
    clean_folder,
)

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
# A single PUT is atomic and can be conditional; above this a file goes up in parts.
SMALL = 8 * 1024 * 1024
PART = 8 * 1024 * 1024
READ = 1024 * 1024  # what an upload's follower reads from disk at a time
# A cached file handed out this recently may be read again by a render still running (each
# ffmpeg of a segmented proxy opens its source anew): it is not evicted, even past the bound.
IN_USE_S = 3600
# An upload's follower gives up on a file that has not grown for this long (a request that
# was cut off without anyone discarding its file).
IDLE_S = 600
_SOURCE = re.compile(r"^videos/([0-9a-f]{64})\.[a-z0-9]+$")
_PLAYLIST_NAME = re.compile(r'URI="([^"/]+)"')


def s3_store(url: str, *, endpoint: str | None, region: str | None) -> S3Store:
    """The obstore client of ``s3://bucket/prefix``; credentials come from the standard
    AWS variables (or the instance's role)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"EDITGRAPH_STORAGE_URL {url!r} is not s3://bucket[/prefix]")
    client: ClientConfig = {
        "timeout": timedelta(minutes=5),
        "connect_timeout": timedelta(seconds=5),
    }
    if endpoint and endpoint.startswith("http://"):
        client["allow_http"] = True
    # A stopped endpoint fails a request within seconds, not minutes: renders are retried
    # by the queue, uploads answer with an error.
    retry: RetryConfig = {
        "max_retries": 3,
        "retry_timeout": timedelta(seconds=10),
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=2),
            "base": 2,
        },
    }
    options: dict[str, str] = {"conditional_put": "etag", "copy_if_not_exists": "multipart"}
    if endpoint:
        options["endpoint"] = endpoint
    if region:
        options["region"] = region
    return S3Store(
        parts.netloc,
        prefix=parts.path.strip("/") or None,
        client_options=client,
        retry_config=retry,
        **options,  # type: ignore[arg-type]  # S3Config keys, checked by obstore
    )


def _answering(method: Callable[P, R]) -> Callable[P, R]:
    """Turn the bucket's own errors (refused connections, 5xx after retries, denied
    credentials) into ``StoreUnavailable``; a missing object stays ``FileNotFoundError``."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except (FileNotFoundError, AlreadyExistsError):
            raise
        except BaseError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreUnavailable(f"the media bucket did not answer: {first}") from exc

    return call


class _Abandoned(Exception):
    """An upload's follower stops: the file is not kept."""


def _delete_quietly(bucket: S3Store, key: str) -> None:
    with contextlib.suppress(BaseError, OSError):
        obstore.delete(bucket, key)


class _Follower:
    """Uploads a file to a temp key while another thread writes it: it reads what is on
    disk as it arrives (nothing is held in memory but the part being sent) and sends it in
    parts; ``wait`` returns once the whole object is stored."""

    def __init__(self, bucket: S3Store, path: Path, key: str) -> None:
        self.bucket, self.path, self.key = bucket, path, key
        self.error: BaseException | None = None
        self._written = threading.Event()
        self._abandoned = threading.Event()
        self._adopted = False
        self._thread = threading.Thread(target=self._run, name="editgraph-upload", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        grown = time.monotonic()
        try:
            with (
                obstore.open_writer(
                    self.bucket, self.key, buffer_size=PART, max_concurrency=2
                ) as out,
                self.path.open("rb") as source,
            ):
                while True:
                    if self._abandoned.is_set():
                        raise _Abandoned  # leaving with an error aborts the multipart upload
                    finished = self._written.is_set()  # before the read: then EOF is the end
                    # A new bytes object each time: the writer keeps a reference to what it
                    # is given until that part is sent (a reused buffer would be overwritten).
                    chunk = source.read(READ)
                    if chunk:
                        out.write(chunk)
                        grown = time.monotonic()
                    elif finished:
                        break
                    elif time.monotonic() - grown > IDLE_S:
                        raise _Abandoned  # nobody is writing it any more
                    else:
                        time.sleep(0.01)
        except BaseException as exc:  # handed to wait(), in the caller's thread
            self.error = exc
        if self.error is not None or self._abandoned.is_set():
            with contextlib.suppress(BaseError, OSError):
                obstore.delete(self.bucket, self.key)

    def written(self) -> None:
        """The local file is complete."""
        self._written.set()

    def placed(self) -> None:
        """Its store has taken the temp object over (copied into place, and removed it)."""
        self._adopted = True

    def abandon(self) -> None:
        """Stop and remove the temp object, without waiting (this may run on the event
        loop): the thread removes it as it ends, or a short thread does if it has ended."""
        if self._adopted:
            return  # placed: adopt removed the temp object itself
        self._abandoned.set()
        if not self._thread.is_alive():
            threading.Thread(
                target=_delete_quietly, args=(self.bucket, self.key), daemon=True
            ).start()

    def wait(self) -> None:
        """Block until the whole file is stored under ``key``; raise what stopped it."""
        self._thread.join()
        if self.error is not None:
            first = (
                str(self.error).splitlines()[0] if str(self.error) else type(self.error).__name__
            )
            raise StoreUnavailable(f"the media bucket did not answer: {first}") from self.error


class BucketStore(MediaStore):
    """The media store on a bucket; ``cache`` is this process's local folder: scratch work
    files, and sources and mezzanines downloaded for ffmpeg (at most ``cache_bytes``, the
    least recently used evicted first)."""

    presigns = True
    hard_links = False
    # The largest object one server-side copy may make (S3's CopyObject and UploadPartCopy
    # limit); larger ones are streamed through the process.
    copy_limit = 5 * 1024**3

    def __init__(self, bucket: S3Store, *, cache: Path, cache_bytes: int) -> None:
        super().__init__(cache)
        self.bucket = bucket
        self.cache_bytes = cache_bytes
        self._objects = self.root / "objects"
        self._folders = self.root / "folders"
        self._lock = threading.Lock()
        self._synced: dict[str, dict[str, int]] = {}

    def ensure_layout(self) -> None:
        """Create the local cache folders, and check that the bucket answers and exists
        (a misnamed bucket would otherwise read as every file missing)."""
        for folder in (self.root / "temp", self._objects, self._folders):
            folder.mkdir(parents=True, exist_ok=True)
        try:
            next(iter(obstore.list(self.bucket, prefix="videos/", chunk_size=1)), None)
        except FileNotFoundError:
            raise StoreUnavailable(
                "the media bucket does not exist: check EDITGRAPH_STORAGE_URL"
            ) from None
        except BaseError as exc:
            if "NoSuchBucket" in str(exc) or "404 Not Found" in str(exc):
                raise StoreUnavailable(
                    "the media bucket does not exist: check EDITGRAPH_STORAGE_URL"
                ) from None
            # Down for now: requests fail cleanly until it is back.
            log.warning("the media bucket does not answer yet: %s", str(exc).splitlines()[0])

    def path(self, key: str) -> Path:
        """Stored media has no local path here; only scratch keys do (``scratch``)."""
        raise ValueError(f"media key {key!r} is in the bucket, not a file")

    def scratch(self, key: str) -> Path:
        """A local path for a ``temp/…`` key, in the cache folder."""
        if not key.startswith("temp/"):
            raise ValueError(f"scratch key {key!r} is not under temp/")
        return MediaStore.path(self, key)

    @_answering
    def stage(self, filename: str, *, max_bytes: int) -> StagingFile:
        """A new staging file for an incoming upload, streamed to a temp key in the bucket
        (in parts) while it is written and hashed; the local copy is what gets probed."""
        staging = super().stage(filename, max_bytes=max_bytes)
        staging.mirror = _Follower(self.bucket, staging.path, aside_temp())
        return staging

    @_answering
    def adopt(self, staged: StagedFile, key: str) -> None:
        """Place a staged (and probed) upload at its content key, once: its temp object is
        copied into place only if no one placed the same bytes first, then removed."""
        follower = staged.mirror
        if not isinstance(follower, _Follower):
            self.publish(staged.path, key, replace=False)
            return
        try:
            follower.wait()
            self._copy_absent(follower.key, key)
        finally:
            follower.placed()
            _delete_quietly(self.bucket, follower.key)  # a bucket that is down: clean_temp
            staged.path.unlink(missing_ok=True)

    # Reading

    @_answering
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        return self.size(key) is not None

    @_answering
    def size(self, key: str) -> int | None:
        """The bytes of the object ``key``, or None."""
        try:
            return int(obstore.head(self.bucket, key)["size"])
        except FileNotFoundError:
            return None

    @_answering
    def read_bytes(self, key: str) -> bytes:
        """The whole of a (small) object; ``FileNotFoundError`` if there is none."""
        return bytes(obstore.get(self.bucket, key).bytes())

    @_answering
    def local(self, key: str) -> Path:
        """A cached local copy of ``key``: downloaded once, checked against the object's
        size (and its SHA-256 when the key is one), kept while recently used."""
        size = self.size(key)
        if size is None:
            raise FileNotFoundError(key)
        cached = self._objects / key
        with self._lock, contextlib.suppress(FileNotFoundError):
            if cached.stat().st_size == size:
                os.utime(cached)  # handed out now: evicted last, and not while in use
                return cached
        cached.parent.mkdir(parents=True, exist_ok=True)
        part = cached.with_name(f".{cached.name}.{secrets.token_hex(6)}.part")
        digest, written = hashlib.sha256(), 0
        try:
            with part.open("wb") as out:
                for chunk in obstore.get(self.bucket, key).stream(min_chunk_size=PART):
                    digest.update(chunk)
                    written += out.write(chunk)
            expected = _SOURCE.match(key)
            if written != size or (expected and digest.hexdigest() != expected[1]):
                raise OSError(f"the download of {key} does not match what is stored")
            os.replace(part, cached)
        finally:
            part.unlink(missing_ok=True)
        self._evict(keep=cached)
        return cached

    @_answering
    def listing(self, prefix: str) -> list[Entry]:
        """Every object under a folder key, at any depth."""
        found = []
        for batch in obstore.list(self.bucket, prefix=prefix.rstrip("/") + "/"):
            for meta in batch:
                found.append(
                    Entry(
                        meta["path"],
                        int(meta["size"]),
                        meta["last_modified"].timestamp(),
                        meta["path"],
                    )
                )
        return found

    # Writing

    @_answering
    def write_bytes(self, key: str, data: bytes, *, replace: bool = True) -> None:
        """Store small bytes at ``key`` in one atomic put; ``replace=False`` keeps an object
        already there (a conditional put)."""
        with contextlib.suppress(AlreadyExistsError):
            obstore.put(self.bucket, key, data, mode="overwrite" if replace else "create")

    @_answering
    def publish(self, path: Path, key: str, *, replace: bool = True) -> bool:
        """Upload a finished scratch file to ``key`` and remove it locally. With
        ``replace=False`` an object already there stays (returns False)."""
        try:
            if replace:
                obstore.put(self.bucket, key, path, chunk_size=PART, max_concurrency=4)
                return True
            if path.stat().st_size <= SMALL:
                try:
                    obstore.put(self.bucket, key, path.read_bytes(), mode="create")
                except AlreadyExistsError:
                    return False
                return True
            # Large: in parts to a temp key, then a conditional copy into place.
            temp = aside_temp()
            obstore.put(self.bucket, temp, path, chunk_size=PART, max_concurrency=4)
            try:
                return self._copy_absent(temp, key)
            finally:
                obstore.delete(self.bucket, temp)
        finally:
            path.unlink(missing_ok=True)

    @_answering
    def bring(self, path: Path, key: str, *, replace: bool = False, link: bool = True) -> int:
        """Upload a file from outside the store (an import's source, never changed) to
        ``key``; an object already there stays if it has the same size, unless ``replace``.
        Returns the bytes this added."""
        if not replace and self.size(key) == path.stat().st_size:
            return 0
        temp = self.scratch(aside_temp())  # publish removes what it uploads: a copy
        temp.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, temp)
        size = temp.stat().st_size
        self.publish(temp, key, replace=True)
        return size

    @_answering
    def copy(self, source: str, target: str) -> int:
        """Copy ``source`` to ``target`` in the bucket unless ``target`` exists; returns the
        bytes this added. ``FileNotFoundError`` if ``source`` is gone."""
        if not self._copy_absent(source, target):
            return 0
        return self.size(target) or 0

    @_answering
    def move(self, source: str, target: str) -> None:
        """Copy ``source`` over ``target``, then delete ``source`` (a bucket cannot rename)."""
        size = self.size(source)
        if size is None:
            raise FileNotFoundError(source)
        if size <= self.copy_limit:
            obstore.copy(self.bucket, source, target, overwrite=True)
        else:
            self._stream(source, target)
        obstore.delete(self.bucket, source)

    def _copy_absent(self, source: str, target: str) -> bool:
        """Copy ``source`` to ``target`` unless ``target`` exists (False then). Within the
        store's copy limit, server-side and atomic; above it (S3 copies at most 5 GiB in
        one request) streamed through this process in parts, after a check that leaves a
        moment in which two copies of the same bytes may both be written (equal content)."""
        size = self.size(source)
        if size is None:
            raise FileNotFoundError(source)
        if size <= self.copy_limit:
            try:
                obstore.copy(self.bucket, source, target, overwrite=False)
            except AlreadyExistsError:
                return False
            return True
        if self.exists(target):
            return False
        self._stream(source, target)
        return True

    def _stream(self, source: str, target: str) -> None:
        """Copy an object too large for one server-side copy through this process: down to
        a scratch file, then up in parts (memory holds only the parts in flight)."""
        temp = self.scratch(aside_temp())
        temp.parent.mkdir(parents=True, exist_ok=True)
        try:
            with temp.open("wb") as out:
                for chunk in obstore.get(self.bucket, source).stream(min_chunk_size=PART):
                    out.write(chunk)
            obstore.put(self.bucket, target, temp, chunk_size=PART, max_concurrency=2)
        finally:
            temp.unlink(missing_ok=True)

    @_answering
    def remove(self, key: str) -> int:
        """Delete one object; returns its bytes (0 if it was not there)."""
        size = self.size(key)
        if size is None:
            return 0
        obstore.delete(self.bucket, key)
        return size

    @_answering
    def remove_folder(self, key: str) -> int:
        """Delete every object under a folder key; returns bytes freed."""
        entries = self.listing(key)
        if entries:
            obstore.delete(self.bucket, [e.key for e in entries])
        self._synced.pop(key, None)
        shutil.rmtree(self._folders / key, ignore_errors=True)
        return sum(e.bytes for e in entries)

    # Folders written as they grow

    def folder(self, key: str) -> Path:
        """A local folder to write ``key`` in; ``sync_folder`` uploads it."""
        path = self._folders / key
        path.mkdir(parents=True, exist_ok=True)
        return path

    @_answering
    def sync_folder(self, path: Path, key: str) -> None:
        """Upload what each playlist in the folder names and is not stored yet, then the
        playlist if it changed: a reader of the bucket never sees a playlist naming a
        missing file. Before a finished playlist goes up, the bucket itself is listed, so
        a file someone removed meanwhile is put back."""
        with self._lock:
            done = self._synced.setdefault(key, {})
        for playlist in sorted(path.glob("*.m3u8")):
            text = playlist.read_text()
            if done.get(playlist.name) == hash(text):
                continue
            names = [
                line for line in text.splitlines() if line and not line.startswith("#")
            ] + _PLAYLIST_NAME.findall(text)
            if "#EXT-X-ENDLIST" in text:
                stored = {e.key.rsplit("/", 1)[-1]: e.bytes for e in self.listing(key)}
                done.update({n: stored[n] for n in names if n in stored})
                for name in names:
                    if name not in stored:
                        done.pop(name, None)
            for name in names:
                file = path / name
                size = file.stat().st_size
                if done.get(name) != size:
                    obstore.put(self.bucket, f"{key}/{name}", file.read_bytes())
                    done[name] = size
            obstore.put(self.bucket, f"{key}/{playlist.name}", text.encode())
            done[playlist.name] = hash(text)

    def release_folder(self, path: Path, key: str) -> None:
        """The folder is stored whole: its local copy goes."""
        with self._lock:
            self._synced.pop(key, None)
        shutil.rmtree(path, ignore_errors=True)

    @_answering
    def local_folder(self, key: str) -> Path:
        """A local copy of every object under ``key``."""
        for entry in self.listing(key):
            self.local(entry.key)
        return self._objects / key

    # Links and space

    @_answering
    def url(self, key: str, ttl_s: int) -> str | None:
        """A presigned GET link (it honours Range) valid for ``ttl_s`` seconds."""
        return str(obstore.sign(self.bucket, "GET", key, timedelta(seconds=ttl_s)))

    def free_bytes(self) -> int:
        """Space left in the local cache (the bucket has none to report)."""
        return shutil.disk_usage(self.root).free

    @_answering
    def clean_temp(
        self, *, grace_s: float, live: Callable[[str], bool] = lambda _name: False
    ) -> tuple[int, int]:
        """Remove scratch entries and bucket ``temp/`` objects older than ``grace_s`` that
        ``live(name)`` does not claim; returns (entries, bytes) removed."""
        removed, freed = clean_folder(self.root / "temp", grace_s=grace_s, live=live)
        cutoff_parts = time.time() - grace_s
        for part in self._objects.rglob(".*.part"):  # downloads a crash cut short
            with contextlib.suppress(FileNotFoundError):
                if part.stat().st_mtime < cutoff_parts:
                    size = part.stat().st_size
                    part.unlink()
                    removed, freed = removed + 1, freed + size
        cutoff = time.time() - grace_s
        for entry in self.listing("temp"):
            if entry.modified < cutoff and not live(entry.key.rsplit("/", 1)[-1]):
                obstore.delete(self.bucket, entry.key)
                removed, freed = removed + 1, freed + entry.bytes
        return removed, freed

    def _evict(self, *, keep: Path) -> None:
        """Delete least recently used cached objects until the cache fits its bound."""
        in_use = time.time() - IN_USE_S
        with self._lock:
            files = []
            for path in self._objects.rglob("*"):
                with contextlib.suppress(FileNotFoundError):
                    stat = path.stat()
                    if path.is_file() and not path.name.endswith(".part"):
                        files.append((stat.st_mtime, stat.st_size, path))
            total = sum(size for _, size, _ in files)
            for mtime, size, path in sorted(files, key=lambda item: item[0]):
                if total <= self.cache_bytes:
                    break
                if path != keep and mtime < in_use:
                    path.unlink(missing_ok=True)
                    total -= size


def open_store(
    storage_url: str,
    *,
    media_root: Path,
    cache_dir: Path,
    cache_bytes: int,
    s3_endpoint: str | None = None,
    s3_region: str | None = None,
) -> MediaStore:
    """The media store a setting names: empty or a folder for files under ``media_root``
    (or that folder), ``s3://bucket/prefix`` for a bucket."""
    if not storage_url.startswith("s3://"):
        return MediaStore(Path(storage_url) if storage_url else media_root)
    bucket = s3_store(storage_url, endpoint=s3_endpoint, region=s3_region)
    return BucketStore(bucket, cache=cache_dir, cache_bytes=cache_bytes)

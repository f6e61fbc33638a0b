"""The media store's contract, on the local folder and on a bucket (moto on loopback)."""

import hashlib
import os
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from models.bucket import BucketStore
from models.store import MediaStore, StagedFile, StoreUnavailable
from tests.helpers.s3 import Endpoint

pytestmark = pytest.mark.both_storages


def scratch_file(store: MediaStore, name: str, data: bytes) -> Path:
    path = store.scratch(f"temp/{name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_written_bytes_read_back_and_a_conditional_write_keeps_the_first(
    store: MediaStore,
) -> None:
    store.write_bytes("segments/ab/abc.m4s", b"first")
    store.write_bytes("segments/ab/abc.m4s", b"second", replace=False)
    assert store.read_bytes("segments/ab/abc.m4s") == b"first"
    assert store.size("segments/ab/abc.m4s") == 5
    store.write_bytes("segments/ab/abc.m4s", b"third")
    assert store.read_bytes("segments/ab/abc.m4s") == b"third"
    assert not store.exists("segments/ab/missing.m4s")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("segments/ab/missing.m4s")


def test_publish_moves_a_scratch_file_in_and_never_overwrites_when_told(
    store: MediaStore,
) -> None:
    big = os.urandom(9 * 1024 * 1024)  # above one part: the bucket takes it in parts
    first = scratch_file(store, "a.mp4", big)
    assert store.publish(first, "export/1/v1_final.mp4", replace=False)
    assert not first.exists()
    late = scratch_file(store, "b.mp4", b"a late attempt")
    assert not store.publish(late, "export/1/v1_final.mp4", replace=False)
    assert not late.exists()
    assert store.read_bytes("export/1/v1_final.mp4") == big
    # Nothing is left under temp keys by a conditional placement.
    assert [e.key for e in store.listing("temp")] == []


def test_racing_placements_of_the_same_key_store_it_once(store: MediaStore) -> None:
    outcomes: list[bool] = []
    barrier = threading.Barrier(6)

    def place(n: int) -> None:
        path = scratch_file(store, f"race-{n}", f"upload {n}".encode())
        barrier.wait()
        outcomes.append(store.publish(path, "videos/race.mp4", replace=False))

    threads = [threading.Thread(target=place, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [False] * 5 + [True]
    assert store.read_bytes("videos/race.mp4").startswith(b"upload ")


def test_copy_move_and_remove_report_what_they_did(store: MediaStore) -> None:
    store.write_bytes("export/3/v2_final.mp4", b"x" * 100)
    # The bytes a copy adds: none for a hard link, all of them in a bucket.
    added = store.copy("export/3/v2_final.mp4", "archive/9_v2_final.mp4")
    assert added == (100 if isinstance(store, BucketStore) else 0)
    assert store.copy("export/3/v2_final.mp4", "archive/9_v2_final.mp4") == 0  # there already
    assert store.read_bytes("archive/9_v2_final.mp4") == b"x" * 100
    with pytest.raises(FileNotFoundError):
        store.copy("export/3/none.mp4", "archive/10_v2_final.mp4")
    # A name removed while another holds the bytes frees nothing on disk (a hard link);
    # in a bucket every object is its own.
    freed = store.remove("export/3/v2_final.mp4")
    assert freed == (100 if isinstance(store, BucketStore) else 0)
    assert store.remove("archive/9_v2_final.mp4") == 100
    assert store.remove("archive/9_v2_final.mp4") == 0
    store.write_bytes("videos/a.mp4", b"abc")
    store.move("videos/a.mp4", "temp/gc-aside")
    assert not store.exists("videos/a.mp4") and store.read_bytes("temp/gc-aside") == b"abc"


def test_listing_and_removing_a_folder(store: MediaStore) -> None:
    for name in ("init.mp4", "a0.m4s", "audio.m3u8"):
        store.write_bytes(f"proxy/sound/ab/abcd/{name}", name.encode())
    store.write_bytes("proxy/sound/ab/other/init.mp4", b"kept")
    listed = sorted(e.key for e in store.listing("proxy/sound/ab/abcd"))
    assert listed == [f"proxy/sound/ab/abcd/{n}" for n in ("a0.m4s", "audio.m3u8", "init.mp4")]
    assert all(e.modified > time.time() - 600 for e in store.listing("proxy/sound"))
    assert store.remove_folder("proxy/sound/ab/abcd") == len("init.mp4a0.m4saudio.m3u8")
    assert [e.key for e in store.listing("proxy/sound")] == ["proxy/sound/ab/other/init.mp4"]


def test_a_growing_folder_is_seen_whole_by_other_processes(store: MediaStore, storage: str) -> None:
    folder = store.folder("proxy/sound/cd/cdef")
    (folder / "init.mp4").write_bytes(b"init")
    (folder / "a0.m4s").write_bytes(b"zero")
    (folder / "a1.m4s").write_bytes(b"half-writ")  # not in the playlist yet
    (folder / "audio.m3u8").write_text('#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2,\na0.m4s\n')
    store.sync_folder(folder, "proxy/sound/cd/cdef")
    seen = {e.key.rsplit("/", 1)[1] for e in store.listing("proxy/sound/cd/cdef")}
    # A reader never finds the playlist naming a file that is not stored.
    assert {"init.mp4", "a0.m4s", "audio.m3u8"} <= seen
    (folder / "a1.m4s").write_bytes(b"one whole")
    (folder / "audio.m3u8").write_text(
        '#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2,\na0.m4s\n#EXTINF:2,\na1.m4s\n'
        "#EXT-X-ENDLIST\n"
    )
    store.sync_folder(folder, "proxy/sound/cd/cdef")
    copy = store.local_folder("proxy/sound/cd/cdef")
    assert (copy / "a1.m4s").read_bytes() == b"one whole"
    assert "#EXT-X-ENDLIST" in store.read_bytes("proxy/sound/cd/cdef/audio.m3u8").decode()


def test_a_local_copy_matches_the_stored_bytes(store: MediaStore) -> None:
    data = os.urandom(300_000)
    sha = hashlib.sha256(data).hexdigest()
    store.write_bytes(f"videos/{sha}.mp4", data)
    path = store.local(f"videos/{sha}.mp4")
    assert path.read_bytes() == data
    assert store.local(f"videos/{sha}.mp4") == path  # cached: not fetched twice
    with pytest.raises(FileNotFoundError):
        store.local("videos/none.mp4")


def test_a_source_whose_bytes_do_not_match_its_name_is_refused(
    store: MediaStore, storage: str
) -> None:
    if storage == "local":
        pytest.skip("a local file is read in place, not downloaded")
    store.write_bytes("videos/" + "0" * 64 + ".mp4", b"not what the name says")
    with pytest.raises(OSError, match="does not match"):
        store.local("videos/" + "0" * 64 + ".mp4")
    assert not list((store.root / "objects").rglob("*.mp4"))


def test_the_cache_keeps_to_its_bound_least_recently_used_first(
    s3: Endpoint, tmp_path: Path, storage: str
) -> None:
    if storage == "local":
        pytest.skip("only a bucket's store has a cache")
    store = s3.store(s3.new_bucket(), tmp_path / "cache", cache_bytes=250_000)
    for n in range(3):
        store.write_bytes(f"videos/{n}_s2_480p.mp4", bytes([n]) * 100_000)
    old = time.time() - 3600
    first = store.local("videos/0_s2_480p.mp4")
    os.utime(first, (old, old))  # used long ago
    second = store.local("videos/1_s2_480p.mp4")
    os.utime(second, (old + 60, old + 60))
    store.local("videos/2_s2_480p.mp4")
    cached = sorted(p.name for p in (tmp_path / "cache" / "objects").rglob("*.mp4"))
    assert cached == ["1_s2_480p.mp4", "2_s2_480p.mp4"]


def test_links_to_stored_files(store: MediaStore, storage: str) -> None:
    store.write_bytes("export/5/v1_final.mp4", bytes(range(256)) * 40)
    url = store.url("export/5/v1_final.mp4", 60)
    if storage == "local":
        assert url is None  # the server signs its own /media links
        return
    assert url is not None and "X-Amz-Signature" in url and "X-Amz-Expires=60" in url
    request = urllib.request.Request(url, headers={"Range": "bytes=256-511"})
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 206
        assert answer.read() == bytes(range(256))


@pytest.mark.parametrize("size", [1000, 9 * 1024 * 1024])
def test_a_staged_upload_is_placed_once_or_leaves_nothing(store: MediaStore, size: int) -> None:
    data = os.urandom(size)

    def staged() -> StagedFile:
        staging = store.stage("clip.mp4", max_bytes=1 << 30)
        for at in range(0, size, 65536):
            staging.write(data[at : at + 65536])
        return staging.finish()

    first = staged()
    assert first.sha256 == hashlib.sha256(data).hexdigest() and first.bytes == size
    store.adopt(first, f"videos/{first.sha256}.mp4")
    store.adopt(staged(), f"videos/{first.sha256}.mp4")  # the same bytes again: kept once
    assert store.read_bytes(f"videos/{first.sha256}.mp4") == data
    refused = staged()
    refused.discard()  # probed and refused
    deadline = time.time() + 10
    while store.listing("temp") and time.time() < deadline:
        time.sleep(0.05)
    assert [e.key for e in store.listing("videos")] == [f"videos/{first.sha256}.mp4"]
    assert store.listing("temp") == [] and store.temp_entries() == []


def test_a_finished_folder_is_stored_whole_even_if_someone_removed_part_of_it(
    store: MediaStore,
) -> None:
    folder = store.folder("proxy/sound/ef/efgh")
    (folder / "init.mp4").write_bytes(b"init")
    (folder / "a0.m4s").write_bytes(b"zero")
    (folder / "audio.m3u8").write_text('#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2,\na0.m4s\n')
    store.sync_folder(folder, "proxy/sound/ef/efgh")
    store.remove("proxy/sound/ef/efgh/a0.m4s")  # another process took it meanwhile
    (folder / "a1.m4s").write_bytes(b"one")
    (folder / "audio.m3u8").write_text(
        '#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2,\na0.m4s\n#EXTINF:2,\na1.m4s\n'
        "#EXT-X-ENDLIST\n"
    )
    store.sync_folder(folder, "proxy/sound/ef/efgh")
    store.release_folder(folder, "proxy/sound/ef/efgh")
    stored = {e.key.rsplit("/", 1)[1] for e in store.listing("proxy/sound/ef/efgh")}
    if isinstance(store, BucketStore):
        assert stored == {"init.mp4", "a0.m4s", "a1.m4s", "audio.m3u8"}
        assert not folder.exists()  # the worker's local copy went once it was stored
    else:  # the folder is the stored one: what was removed from it is gone from both
        assert stored == {"init.mp4", "a1.m4s", "audio.m3u8"}


def test_a_missing_bucket_is_refused_at_start(s3: Endpoint, tmp_path: Path, storage: str) -> None:
    if storage == "local":
        pytest.skip("a media root is created when missing")
    with pytest.raises(StoreUnavailable, match="does not exist"):
        s3.store("editgraph-no-such-bucket", tmp_path / "cache")


def test_objects_over_the_copy_limit_are_copied_and_moved_in_parts(
    s3: Endpoint, tmp_path: Path, storage: str
) -> None:
    if storage == "local":
        pytest.skip("a disk has no limit on copies")
    store = s3.store(s3.new_bucket(), tmp_path / "cache")
    store.copy_limit = 1024 * 1024  # S3 refuses one copy over 5 GiB: the same path, smaller
    data = os.urandom(3 * 1024 * 1024 + 17)
    store.write_bytes("export/7/v1_final.mp4", data)
    assert store.copy("export/7/v1_final.mp4", "archive/3_v1_final.mp4") == len(data)
    assert store.copy("export/7/v1_final.mp4", "archive/3_v1_final.mp4") == 0  # there already
    store.move("archive/3_v1_final.mp4", "export/7/v2_final.mp4")
    assert store.read_bytes("export/7/v2_final.mp4") == data
    assert not store.exists("archive/3_v1_final.mp4")
    big = scratch_file(store, "big.mp4", os.urandom(9 * 1024 * 1024))
    assert store.publish(big, "export/7/v3_final.mp4", replace=False)
    late = scratch_file(store, "late.mp4", os.urandom(9 * 1024 * 1024))
    assert not store.publish(late, "export/7/v3_final.mp4", replace=False)
    assert store.listing("temp") == []


def test_an_upload_cut_off_mid_body_leaves_nothing(store: MediaStore) -> None:
    staging = store.stage("clip.mp4", max_bytes=1 << 30)
    staging.write(os.urandom(3 * 1024 * 1024))
    staging.discard()  # the client went away before the end
    deadline = time.time() + 10
    while time.time() < deadline and (
        store.listing("temp")
        or any(t.name == "editgraph-upload" for t in threading.enumerate())
    ):
        time.sleep(0.05)
    assert store.listing("temp") == [] and store.temp_entries() == []
    assert not any(t.name == "editgraph-upload" for t in threading.enumerate())

"""Segmented proxies through the real render job, in process: what a player gets (frames,
sound, boundaries) and what the segment cache reuses, read from the renders' records."""

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, func, select

from jobs.proxy import AUDIO_PLAYLIST
from jobs.queue import ArqQueue
from jobs.render import proxy_part
from models import keys, redis_keys
from models.db import Database
from models.store import MediaStore
from models.tables import Blob, PlanSegment, Project, Render, Segment
from resolvers import ids, versions
from resolvers.users import Actor
from tests.helpers import measure
from tests.helpers.db import SQLITE_ONLY
from tests.helpers.domain import new_project
from tests.helpers.media import ffmpeg
from tests.helpers.polling import until
from tests.helpers.render_job import append, output_of, rendered, runtime, sound_of

# A frame counter a player can read back after encoding: frame n is a flat grey of luma
# 40 + 4 * (n mod 40), so a repeated or missing frame shows as a step that is not +4.
COUNTER = "nullsrc=s=192x108:r={rate},geq=lum='40+4*mod(N\\,40)':cb=128:cr=128"


# What ffmpeg makes of each edit, not the database: each test runs once, on SQLite.
pytestmark = SQLITE_ONLY


def counter_video(folder: Path, *, seconds: float, rate: str = "30") -> Path:
    """A frame counter with a steady tone, ``seconds`` long."""
    out = folder / f"counter-{rate.replace('/', '_')}-{seconds}.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", COUNTER.format(rate=rate),
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-shortest", str(out),
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def counter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return counter_video(tmp_path_factory.mktemp("segments"), seconds=7)


def lumas(path: Path) -> list[float]:
    return measure.signal(path, "YAVG")


def loudness(path: Path) -> list[float]:
    """RMS level (dBFS) of each 1/10 s of sound."""
    out = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a", "-af",
         "asetnsamples=n=4800:p=0,astats=metadata=1:reset=1,"
         "ametadata=print:key=lavfi.astats.Overall.RMS_level:file=-",
         "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    key = "lavfi.astats.Overall.RMS_level="
    return [float(x[len(key) :]) for x in out.splitlines() if x.startswith(key)]


def steps_of(values: list[float]) -> list[int]:
    """Frame numbers read back from the counter (mod 40)."""
    return [round((v - 40) / 4) % 40 for v in values]


async def encoded_by(db: Database, render: Render) -> int:
    async with db.read() as session:
        return (
            await session.exec(
                select(func.count()).select_from(Segment).where(Segment.render_id == render.id)
            )
        ).one()


async def planned(db: Database, render: Render) -> list[str]:
    async with db.read() as session:
        return list(
            (
                await session.exec(
                    select(PlanSegment.segment_key)
                    .where(PlanSegment.render_id == render.id)
                    .order_by(col(PlanSegment.position))
                )
            ).all()
        )


GRAY = {"type": "grayscale", "params": {}}


def count_sound_makers(rt: Any) -> list[str]:
    """The keys of the sounds ``rt``'s renders begin making from now on, one per start."""
    made: list[str] = []

    async def begun(key: str) -> None:
        made.append(key)

    rt.sound_begun = begun
    return made


async def project_of(db: Database, render: Render) -> Project:
    async with db.read() as session:
        project = await session.get(Project, render.project_id)
    assert project is not None
    return project


async def start(
    db: Database, queue: ArqQueue, store: MediaStore, actor: Actor, source: Path
) -> tuple[Any, Project, Render]:
    rt = runtime(db, queue, store)
    project = await new_project(db, queue, store, actor, source)
    async with db.read() as session:
        proxy = (await session.exec(select(Render).where(Render.project_id == project.id))).one()
    return rt, project, proxy


async def test_a_proxy_is_segments_with_every_frame_once_and_unbroken_sound(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, counter: Path
) -> None:
    rt, _, proxy = await start(db, queue, store, alice, counter)
    out = await output_of(rt, proxy)
    # 7 s at 30 fps: segments of 2 s, the last one 1 s.
    assert len(await planned(db, proxy)) == 4
    assert await encoded_by(db, proxy) == 4
    frames = steps_of(lumas(out))
    assert len(frames) == 210
    assert frames == [n % 40 for n in range(210)], "a frame is repeated or missing"
    info = measure.probe(out)
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert float(audio["duration"]) == pytest.approx(7.0, abs=0.05)
    # No silence anywhere, boundaries included: the quietest 1/10 s is still the tone.
    levels = loudness(out)
    assert len(levels) >= 70
    assert min(levels[:70]) > -30


async def test_two_proxies_racing_for_one_sound_both_get_it_whole(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, counter: Path
) -> None:
    # Two projects on one source: their sound is the same, stored once. Both proxies are
    # rendered at once; one makes the sound, the other waits for it and takes it whole.
    rt, _, first = await start(db, queue, store, alice, counter)
    _, _, second = await start(db, queue, store, alice, counter)
    makers = count_sound_makers(rt)
    outs = await asyncio.gather(output_of(rt, first), output_of(rt, second))
    assert len(makers) == 1, "the sound was made twice"
    folder = await sound_of(rt, first)
    assert folder == await sound_of(rt, second)
    assert "#EXT-X-ENDLIST" in (folder / AUDIO_PLAYLIST).read_text()
    for out in outs:
        audio = next(s for s in measure.probe(out)["streams"] if s["codec_type"] == "audio")
        assert float(audio["duration"]) == pytest.approx(7.0, abs=0.05)
        assert min(loudness(out)[:70]) > -30, "the sound has a gap"
    # A picture-only edit makes no sound: the stored one is listed as it is.
    before = (folder / "init.mp4").stat().st_ino
    _, edited = await append(rt, queue, alice, (await project_of(db, first)), [GRAY])
    await output_of(rt, edited)
    assert await sound_of(rt, edited) == folder
    assert (folder / "init.mp4").stat().st_ino == before and len(makers) == 1


async def test_a_text_over_two_seconds_encodes_only_the_segments_it_covers(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, counter: Path
) -> None:
    rt, project, proxy = await start(db, queue, store, alice, counter)
    await output_of(rt, proxy)
    first = await planned(db, proxy)
    text = {"type": "text", "params": {"text": "hello", "start": 2.5, "end": 3.5}}
    _, edited = await append(rt, queue, alice, project, [text])
    await output_of(rt, edited)
    second = await planned(db, edited)
    assert await encoded_by(db, edited) == 1
    assert [a == b for a, b in zip(first, second, strict=True)] == [True, False, True, True]


async def test_a_trim_reencodes_only_the_cut_segment_and_a_revert_nothing(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, counter: Path
) -> None:
    rt, project, proxy = await start(db, queue, store, alice, counter)
    await output_of(rt, proxy)
    first = await planned(db, proxy)
    trim = {"type": "trim", "params": {"start": 0.5, "end": 7}}
    _, trimmed = await append(rt, queue, alice, project, [trim])
    out = await output_of(rt, trimmed)
    assert await encoded_by(db, trimmed) == 1
    assert (await planned(db, trimmed))[1:] == first[1:]
    assert measure.duration(out) == pytest.approx(6.5, abs=0.05)
    frames = steps_of(lumas(out))
    assert frames == [n % 40 for n in range(15, 210)]
    assert project.id is not None
    _, _, back = await versions.revert_to_version(
        db=rt.db,
        queue=queue,
        actor=alice,
        project_id=project.id,
        version=0,
        expected_version=None,
    )
    await output_of(rt, back)
    assert await encoded_by(db, back) == 0
    assert await planned(db, back) == first
    # Its sound is version 0's, whole: the playlist ends, and every file it lists is there.
    # Version 0's and the trim's are two sounds; the revert shares version 0's folder.
    sound = await sound_of(rt, back)
    assert sound == await sound_of(rt, proxy) != await sound_of(rt, trimmed)
    listing = (sound / AUDIO_PLAYLIST).read_text()
    assert "#EXT-X-ENDLIST" in listing
    names = [line for line in listing.splitlines() if line and not line.startswith("#")]
    assert len(names) == 4 and all((sound / name).is_file() for name in names)


async def test_brightness_over_a_stretch_raises_luma_there_only(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, counter: Path
) -> None:
    rt, project, proxy = await start(db, queue, store, alice, counter)
    plain = lumas(await output_of(rt, proxy))
    bright = {"type": "brightness", "params": {"brightness": 30, "start": 2, "end": 4}}
    _, edited = await append(rt, queue, alice, project, [bright])
    lit = lumas(await output_of(rt, edited))
    assert len(lit) == len(plain)
    for index, (before, after) in enumerate(zip(plain, lit, strict=True)):
        inside = 60 <= index < 120
        assert (after - before > 20) == inside, f"frame {index}: {before:.1f} → {after:.1f}"


async def test_a_mezzanine_from_before_segments_is_made_again_once(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, counter: Path
) -> None:
    rt, project, proxy = await start(db, queue, store, alice, counter)
    async with db.write() as session:
        blob = (await session.exec(select(Blob))).one()
        old = f"videos/{blob.sha256}_480p.mp4"  # where the copy lived before
        shutil.copyfile(counter, store.path(old))
        blob.mezzanine_key = old
        session.add(blob)
    await output_of(rt, proxy)
    async with db.read() as session:
        blob = (await session.exec(select(Blob))).one()
    assert blob.mezzanine_key == keys.mezzanine(blob.sha256)
    assert not store.path(old).exists()
    made = store.path(blob.mezzanine_key)
    # A keyframe at every segment start (every 60 frames at 30 fps), and nowhere else.
    assert keyframes(made) == [0, 60, 120, 180]
    before = made.stat().st_mtime_ns
    _, again = await append(rt, queue, alice, project, [{"type": "grayscale", "params": {}}])
    await output_of(rt, again)
    assert made.stat().st_mtime_ns == before


def keyframes(path: Path) -> list[int]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=flags",
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [i for i, flags in enumerate(out.split()) if flags.startswith("K")]


async def test_an_appended_clip_encodes_only_its_own_segments(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, counter: Path
) -> None:
    rt, project, proxy = await start(db, queue, store, alice, counter)
    await output_of(rt, proxy)
    first = await planned(db, proxy)
    async with db.read() as session:
        video_id = (await session.exec(select(Project.source_video_id))).one()
    concat = {"type": "concat", "params": {"videoId": ids.encode("Video", video_id)}}
    _, joined = await append(rt, queue, alice, project, [concat])
    out = await output_of(rt, joined)
    second = await planned(db, joined)
    # The clip appended is the source itself: its segments are the ones already stored,
    # so nothing at all is encoded, and the picture counts up twice.
    assert second == first + first
    assert await encoded_by(db, joined) == 0
    assert steps_of(lumas(out)) == [n % 40 for n in range(210)] * 2


async def test_a_newer_edit_stops_the_older_proxy_and_reuses_what_it_finished(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, tmp_path: Path
) -> None:
    source = counter_video(tmp_path, seconds=20)
    rt, project, _ = await start(db, queue, store, alice, source)
    gray = {"type": "grayscale", "params": {}}
    _, older = await append(rt, queue, alice, project, [gray])
    edits: list[Any] = []
    seen: list[str] = []

    async def edit_after_the_third(key: str) -> None:
        # A newer edit lands between two segments of the older proxy.
        seen.append(key)
        if len(seen) == 3:
            text = {"type": "text", "params": {"text": "late", "start": 18, "end": 19}}
            edits.append(await append(rt, queue, alice, project, [text]))

    rt.segment_stored = edit_after_the_third
    stopped = await rendered(rt, older)
    rt.segment_stored = None
    assert len(seen) >= 3, stopped.error
    # Nothing of the stopped proxy but its segments: no file, no half-made sound.
    assert sorted(p.name for p in store.path(f"proxy/{project.id}").glob("*")) == [], (
        stopped.status,
        stopped.error,
    )
    # The sound it began is finished all the same (another proxy may be playing it).
    begun = await sound_of(rt, older)
    assert "#EXT-X-ENDLIST" in (begun / AUDIO_PLAYLIST).read_text()
    makers = count_sound_makers(rt)
    _, newer = edits[0]
    assert (stopped.status, stopped.error) == ("cancelled", "superseded by version 2")
    finished = await encoded_by(db, older)
    # It stops at its next look at the version (every tenth of a second, and when ffmpeg
    # ends): what it finished by then is kept.
    assert finished >= 3
    async with db.read() as session:
        kept = set(
            (await session.exec(select(Segment.key).where(Segment.render_id == older.id))).all()
        )
    await output_of(rt, newer)
    # Their sound is the same (neither edit touches it): the newer takes it as it is.
    assert await sound_of(rt, newer) == begun and makers == []
    # Everything the older render finished is reused; the rest, the last segment (with the
    # text) among them, is encoded once.
    wanted = set(await planned(db, newer))
    assert len(wanted & set(await planned(db, older))) == 9
    assert await encoded_by(db, newer) == len(wanted - kept) >= 1


@pytest.mark.parametrize(
    ("factor", "expected"),
    [(2.0, [n * 2 % 40 for n in range(105)]), (0.5, [n // 2 % 40 for n in range(420)])],
    ids=["faster", "slower"],
)
async def test_speed_picks_each_frame_on_its_grid_across_segment_boundaries(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    counter: Path,
    factor: float,
    expected: list[int],
) -> None:
    rt, project, _ = await start(db, queue, store, alice, counter)
    speed = {"type": "speed", "params": {"factor": factor}}
    _, edited = await append(rt, queue, alice, project, [speed])
    out = await output_of(rt, edited)
    assert steps_of(lumas(out)) == expected


def parted(db: Database, queue: ArqQueue, store: MediaStore) -> tuple[Any, Any, list[str]]:
    """A worker's runtime that offers parts of 2+ segments, and the keys it stores."""
    stored: list[str] = []
    rt = runtime(db, queue, store, proxy_parts=2, proxy_part_min_segments=2)

    async def record(key: str) -> None:
        stored.append(key)

    rt.segment_stored = record
    return rt, record, stored


async def test_an_idle_worker_encodes_the_second_part_of_a_long_proxy(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, tmp_path: Path
) -> None:
    source = counter_video(tmp_path, seconds=20)
    main, record_main, by_main = parted(db, queue, store)
    helper, record_helper, by_helper = parted(db, queue, store)
    _, project, proxy = await start(db, queue, store, alice, source)
    helping: list[asyncio.Task[str]] = []

    async def help_after_the_first(key: str) -> None:
        # The proxy has offered its second half (segments 5..9); an idle worker takes it up
        # once the first segment is there, and runs beside the proxy's own worker.
        await record_main(key)
        if len(by_main) == 1:
            jobs = [j for j in await queue.pool.queued_jobs() if j.function == "proxy_part"]
            assert [list(j.args[2:]) for j in jobs] == [[5, 5]]
            helping.append(asyncio.create_task(proxy_part({"runtime": helper}, *jobs[0].args)))

    async def helper_holds_on(key: str) -> None:
        # The helper, having claimed its part, stays at its first segment until the proxy's
        # own worker has finished the first part and met the claim.
        await record_helper(key)
        if len(by_helper) == 1:
            await until(lambda: asyncio.sleep(0, len(by_main) >= 5), within=30, what="part 1")
            await asyncio.sleep(0.5)

    main.segment_stored = help_after_the_first
    helper.segment_stored = helper_holds_on
    done = await rendered(main, proxy)
    helped = await helping[0]
    assert (helped, done.status) == ("done", "done"), done.error
    # Each segment encoded once, by one of the two; the proxy is whole and unbroken.
    plan_keys = await planned(db, done)
    assert by_main == plan_keys[:5] and by_helper == plan_keys[5:]
    out = done.output_key and store.path(done.output_key)
    assert out and steps_of(lumas(out)) == [n % 40 for n in range(600)]
    # A part offered again after the proxy is done does nothing.
    offered = [j for j in await queue.pool.queued_jobs() if j.function == "proxy_part"]
    assert await proxy_part({"runtime": helper}, *offered[0].args) == "skipped"
    assert project.id is not None


async def test_a_part_whose_worker_died_is_encoded_by_the_proxy_s_own(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, tmp_path: Path
) -> None:
    source = counter_video(tmp_path, seconds=20)
    main, record, by_main = parted(db, queue, store)
    _, _, proxy = await start(db, queue, store, alice, source)
    assert proxy.id is not None
    # A helper took the second part and died when the proxy's own worker reached it: its
    # claim is renewed until then, and lapses a second later.
    name = redis_keys.part_claim(proxy.id, 1, 5)
    claim = queue.pool.lock(name, timeout=10.0)
    assert await claim.acquire(blocking=False)
    lapsed: list[bool] = []

    async def keep_until_part_one(key: str) -> None:
        await record(key)
        if len(by_main) < 5:
            await claim.reacquire()
        elif len(by_main) == 5:
            await queue.pool.pexpire(name, 1000)
        elif len(by_main) == 6:
            # The first segment of the second part: stored only after the dead one's claim
            # lapsed (the proxy's own worker holds the part now).
            lapsed.append(not await claim.owned())

    main.segment_stored = keep_until_part_one
    done = await rendered(main, proxy)
    assert done.status == "done", done.error
    assert lapsed == [True]
    assert by_main == await planned(db, done)
    out = done.output_key and store.path(done.output_key)
    assert out and steps_of(lumas(out)) == [n % 40 for n in range(600)]

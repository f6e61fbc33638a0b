"""An op that validates renders: for every op type, random params (in range and around it) that
appendOps accepts must render a proxy through the real job, as long as validation says."""

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st
from sqlmodel import select

from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore
from models.tables import Video
from resolvers import colors, ids, ops, renders, versions, videos
from resolvers.errors import InvalidOpsError
from resolvers.users import Actor
from tests.helpers import measure
from tests.helpers.db import SQLITE_ONLY
from tests.helpers.domain import new_project, stage
from tests.helpers.media import make_kind, make_video
from tests.helpers.render_job import append, output_of, rendered, runtime

# Around each bound, so some of what is drawn is refused: the property is about what is not.
SECONDS = st.floats(min_value=-0.1, max_value=1.2, allow_nan=False)
PIXELS = st.integers(min_value=-2, max_value=80)
PERCENT = st.floats(min_value=-120, max_value=120, allow_nan=False)
COLOURS = st.one_of(
    st.sampled_from(sorted(colors.NAMES)),
    st.sampled_from(sorted(colors.NAMES)).map(str.upper),
    st.from_regex(r"#[0-9a-fA-F]{6}", fullmatch=True),
    st.text(max_size=12),
)
TOGGLE: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.just({}), st.fixed_dictionaries({"enabled": st.booleans()})
)


def optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


PARAMS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "trim": st.fixed_dictionaries({"start": SECONDS, "end": SECONDS}),
    "speed": st.fixed_dictionaries({"factor": st.floats(0.2, 4.5, allow_nan=False)}),
    "crop": st.fixed_dictionaries({"x": PIXELS, "y": PIXELS, "width": PIXELS, "height": PIXELS}),
    "rotate": st.fixed_dictionaries({"degrees": st.sampled_from([0, 90, 180, 270, 45])}),
    "flip": st.fixed_dictionaries({"axis": st.sampled_from(["horizontal", "vertical", "x"])}),
    "brightness": st.fixed_dictionaries({"brightness": PERCENT}),
    "contrast": st.fixed_dictionaries({"contrast": PERCENT}),
    "saturation": st.fixed_dictionaries({"saturation": PERCENT}),
    "gaussian-blur": st.fixed_dictionaries({"radius": st.floats(0, 60, allow_nan=False)}),
    "grayscale": TOGGLE,
    "fade": optional(inSeconds=SECONDS, outSeconds=SECONDS),
    "volume": st.fixed_dictionaries({"gainDb": st.floats(-70, 30, allow_nan=False)}),
    "mute": TOGGLE,
    "text": st.fixed_dictionaries(
        {"text": st.text(max_size=30)},
        optional={
            "x": PIXELS,
            "y": PIXELS,
            "size": st.integers(0, 600),
            "color": COLOURS,
            "start": SECONDS,
            "end": SECONDS,
        },
    ),
}


@pytest.fixture
def tiny(tmp_path: Path) -> list[Path]:
    """The sources edited: 1 s of 64x48, at 25 fps with sound, and at 29.97 fps silent."""
    return [
        make_video(tmp_path / "tiny.mp4", seconds=1, size="64x48"),
        make_video(tmp_path / "ntsc.mp4", seconds=1, size="64x48", rate="30000/1001", audio=False),
    ]


@SQLITE_ONLY  # the op is the subject, not the database
@pytest.mark.parametrize("op_type", sorted(ops.VOCABULARY))
@settings(
    max_examples=4,
    deadline=None,
    # A failing example is reported as drawn: shrinking renders again and again.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    # The database and media root are shared by the examples; each makes its own project.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(data=st.data())
async def test_an_op_that_validates_renders(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    tiny: list[Path],
    tmp_path: Path,
    op_type: str,
    data: st.DataObject,
) -> None:
    rt = runtime(db, queue, store)
    if op_type == "concat":
        kind = data.draw(st.sampled_from(["60fps-mono-48k", "portrait", "odd-size"]))
        other = await uploaded(db, queue, store, alice, make_kind(tmp_path, kind))
        public = ids.encode("Video", other.id or 0)
        params = {"videoId": data.draw(st.sampled_from([public, public[:-1], "", "VmlkZW86OTk="]))}
    else:
        params = data.draw(PARAMS[op_type], label="params")
    raw = [{"type": op_type, "params": params}]
    # Most of what is drawn is refused before anything is stored: refuse it cheaply first.
    parsed, errors = ops.parse(raw)
    lengths = {o.video_id: 1.0 for o in parsed if isinstance(o, ops.Concat)}
    if errors or ops.check(parsed, ops.Frame(64, 48, 1.0), lengths)[1]:
        reject()
    source = await uploaded(db, queue, store, alice, data.draw(st.sampled_from(tiny)))
    assert source.id is not None
    project = await versions.create_project(
        db=db, queue=queue, actor=alice, video_id=source.id, name="p"
    )
    try:
        version, proxy = await append(rt, queue, alice, project, raw)
    except InvalidOpsError:
        reject()  # a concat of a video id that is not the caller's
    done = await rendered(rt, proxy)
    assert (done.status, done.error) == ("done", None)
    assert done.output_key is not None
    # As long as validation says (ffmpeg ends a picture on a whole frame).
    output = measure.duration(store.path(done.output_key))
    assert output == pytest.approx(version.frame_duration, abs=0.1)


async def uploaded(
    db: Database, queue: ArqQueue, store: MediaStore, actor: Actor, path: Path
) -> Video:
    """The actor's video of ``path``, uploaded on first use."""
    async with db.read() as session:
        found = (await session.exec(select(Video).where(Video.filename == path.name))).first()
    if found is not None:
        return found
    video, _ = await videos.upload_video(
        db=db, queue=queue, store=store, actor=actor, staged=stage(store, path)
    )
    return video


def test_every_op_type_is_drawn() -> None:
    assert set(PARAMS) | {"concat"} == set(ops.VOCABULARY)


# Params that validated and then failed in ffmpeg, or were refused though ffmpeg draws them.
EDGES: list[tuple[str, dict[str, Any]]] = [
    ("trim", {"start": 3.2e-12, "end": 0.5}),  # was written as 3.2e-12, which trim refuses
    ("fade", {"inSeconds": 1e-107, "outSeconds": 0.5}),
    ("text", {"text": "hi", "color": "Gold", "start": 1e-9}),
    # The picture kept its old frame durations and ran 0.1 s past the sound (0.44 s for 0.33).
    ("speed", {"factor": 3.0015118808899484}),
]


@SQLITE_ONLY
@pytest.mark.parametrize(("op_type", "params"), EDGES, ids=[e[0] for e in EDGES])
async def test_edges_found_by_the_property_render(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    tiny: list[Path],
    op_type: str,
    params: dict[str, Any],
) -> None:
    rt = runtime(db, queue, store)
    project = await new_project(db, queue, store, alice, tiny[0])
    version, proxy = await append(rt, queue, alice, project, [{"type": op_type, "params": params}])
    output = await output_of(rt, proxy)
    assert measure.duration(output) == pytest.approx(version.frame_duration, abs=0.1)


@SQLITE_ONLY
async def test_the_proxy_of_the_smallest_crop_of_a_large_source_renders(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, tmp_path: Path
) -> None:
    rt = runtime(db, queue, store)
    large = make_video(tmp_path / "large.mp4", seconds=0.5, size="1280x720", audio=False)
    project = await new_project(db, queue, store, alice, large)
    crop = {"type": "crop", "params": {"x": 600, "y": 300, "width": 16, "height": 16}}
    version, proxy = await append(rt, queue, alice, project, [crop])
    # Its 480p copy holds the crop in 11x11 pixels: bordered up to the smallest video.
    assert measure.size(await output_of(rt, proxy)) == (16, 16)
    _, export = await renders.request_export(
        db=db,
        queue=queue,
        actor=alice,
        project_id=version.project_id,
        version=version.number,
        preset=rt.config.export,
    )
    assert measure.size(await output_of(rt, export)) == (16, 16)

"""Every op rendered for real, checked for the effect a person would see or hear."""

import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from jobs import edl
from jobs.runner import run_ffmpeg
from resolvers import ops
from resolvers.presets import PROXY, Preset, export_preset
from tests.helpers import measure
from tests.helpers.media import make_video

PRESET = export_preset(crf=23, x264_preset="ultrafast")
# Concat ops name videos by their row id.
BARS_ID, SILENT_ID = 1, 2


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, edl.Source]:
    folder = tmp_path_factory.mktemp("effects")
    made = {
        "bars": make_video(folder / "bars.mp4", seconds=2, size="320x240"),
        "black": make_video(
            folder / "black.mp4", seconds=2, size="320x240", pattern="color=c=black"
        ),
        "silent": make_video(folder / "silent.mp4", seconds=1.5, size="160x120", audio=False),
    }
    return {
        name: edl.Source(
            path, "mov", *measure.size(path), 25.0, measure.duration(path), name != "silent"
        )
        for name, path in made.items()
    }


async def render(
    tmp_path: Path,
    sources: dict[str, edl.Source],
    op_list: list[ops.Op],
    source: str = "bars",
    preset: Preset = PRESET,
) -> Path:
    src = sources[source]
    out = tmp_path / f"out-{secrets.token_hex(4)}.mp4"
    plan = edl.compile_edl(
        op_list=op_list,
        source=src,
        source_frame=ops.Frame(src.width, src.height, src.duration),
        concat_sources={SILENT_ID: sources["silent"], BARS_ID: sources["bars"]},
        preset=preset,
        output=out,
        workdir=tmp_path,
    )
    for path, text in plan.text_files.items():
        path.write_text(text)

    async def keep(_: float) -> bool:
        return True

    outcome = await run_ffmpeg(
        plan.argv, expected_duration=plan.duration, timeout_s=60, on_progress=keep
    )
    assert outcome.returncode == 0, outcome.stderr
    return out


async def test_trim_sets_the_duration(tmp_path: Path, sources: dict[str, edl.Source]) -> None:
    out = await render(tmp_path, sources, [ops.Trim(start=0.5, end=1.5)])
    assert measure.duration(out) == pytest.approx(1.0, abs=0.1)


async def test_speed_two_halves_the_duration(
    tmp_path: Path, sources: dict[str, edl.Source]
) -> None:
    out = await render(tmp_path, sources, [ops.Speed(factor=2)])
    assert measure.duration(out) == pytest.approx(1.0, abs=0.1)


async def test_crop_sets_the_dimensions(tmp_path: Path, sources: dict[str, edl.Source]) -> None:
    out = await render(tmp_path, sources, [ops.Crop(x=10, y=20, width=200, height=100)])
    assert measure.size(out) == (200, 100)


async def test_rotate_ninety_swaps_the_dimensions(
    tmp_path: Path, sources: dict[str, edl.Source]
) -> None:
    out = await render(tmp_path, sources, [ops.Rotate(degrees=90)])
    assert measure.size(out) == (240, 320)


async def test_brightness_raises_mean_luma(tmp_path: Path, sources: dict[str, edl.Source]) -> None:
    plain = await render(tmp_path, sources, [])
    bright = await render(tmp_path, sources, [ops.Brightness(brightness=20)])
    before = measure.mean(measure.signal(plain, "YAVG"))
    after = measure.mean(measure.signal(bright, "YAVG"))
    assert after > before + 20


async def test_grayscale_flattens_chroma(tmp_path: Path, sources: dict[str, edl.Source]) -> None:
    plain = await render(tmp_path, sources, [])
    gray = await render(tmp_path, sources, [ops.Grayscale()])
    spread = [
        hi - lo
        for hi, lo in zip(measure.signal(gray, "UMAX"), measure.signal(gray, "UMIN"), strict=True)
    ]
    assert max(spread) <= 4
    assert min(measure.signal(plain, "UMAX")) - max(measure.signal(plain, "UMIN")) > 50


async def test_gaussian_blur_lowers_detail(tmp_path: Path, sources: dict[str, edl.Source]) -> None:
    plain = await render(tmp_path, sources, [])
    blurred = await render(tmp_path, sources, [ops.GaussianBlur(radius=5)])
    edges_before = measure.mean(measure.signal(plain, "YAVG", vf="edgedetect"))
    edges_after = measure.mean(measure.signal(blurred, "YAVG", vf="edgedetect"))
    assert edges_after < edges_before * 0.5


async def test_fade_in_starts_black(tmp_path: Path, sources: dict[str, edl.Source]) -> None:
    out = await render(tmp_path, sources, [ops.Fade(in_seconds=1, out_seconds=0.5)])
    first = measure.signal(out, "YAVG", frames=1)
    middle = measure.signal(out, "YAVG")
    assert first[0] < 20  # limited-range black is 16
    assert max(middle) > 60


async def test_mute_is_silent(tmp_path: Path, sources: dict[str, edl.Source]) -> None:
    loud = await render(tmp_path, sources, [])
    muted = await render(tmp_path, sources, [ops.Mute()])
    assert measure.max_volume_db(loud) > -30
    assert measure.max_volume_db(muted) < -80


async def test_volume_changes_loudness(tmp_path: Path, sources: dict[str, edl.Source]) -> None:
    loud = await render(tmp_path, sources, [])
    quiet = await render(tmp_path, sources, [ops.Volume(gain_db=-20)])
    assert measure.max_volume_db(quiet) == pytest.approx(measure.max_volume_db(loud) - 20, abs=2)


async def test_concat_sums_durations_and_keeps_audio(
    tmp_path: Path, sources: dict[str, edl.Source]
) -> None:
    out = await render(tmp_path, sources, [ops.Concat(video_id=SILENT_ID)])
    assert measure.duration(out) == pytest.approx(2.0 + 1.5, abs=0.15)
    assert measure.size(out) == (320, 240)
    assert any(s["codec_type"] == "audio" for s in measure.probe(out)["streams"])


@pytest.mark.parametrize("preset", [PROXY, PRESET], ids=["proxy", "export"])
async def test_concat_of_the_same_video_twice_plays_it_twice(
    tmp_path: Path, sources: dict[str, edl.Source], preset: Preset
) -> None:
    twice: list[ops.Op] = [ops.Concat(video_id=SILENT_ID), ops.Concat(video_id=SILENT_ID)]
    out = await render(tmp_path, sources, twice, preset=preset)
    assert measure.duration(out) == pytest.approx(2.0 + 1.5 + 1.5, abs=0.15)


@pytest.mark.parametrize("preset", [PROXY, PRESET], ids=["proxy", "export"])
async def test_concat_of_the_source_itself_plays_it_twice(
    tmp_path: Path, sources: dict[str, edl.Source], preset: Preset
) -> None:
    out = await render(tmp_path, sources, [ops.Concat(video_id=BARS_ID)], preset=preset)
    assert measure.duration(out) == pytest.approx(2.0 + 2.0, abs=0.15)
    # The second half is the source again from its start, not frozen or black.
    first, second = (
        measure.signal(out, "YAVG", vf=f"trim={start}:{start + 0.5},setpts=PTS-STARTPTS")
        for start in (0, 2)
    )
    assert measure.mean(second) == pytest.approx(measure.mean(first), abs=2)


async def test_text_changes_pixels_inside_its_box_only(
    tmp_path: Path, sources: dict[str, edl.Source]
) -> None:
    plain = await render(tmp_path, sources, [], source="black")
    text = await render(
        tmp_path,
        sources,
        [ops.Text(text="HELLO 'editgraph': 100%", x=20, y=20, size=40)],
        source="black",
    )
    box = "crop=200:40:20:20"
    outside = "crop=100:100:200:130"
    assert (
        measure.mean(measure.signal(text, "YAVG", vf=box))
        > measure.mean(measure.signal(plain, "YAVG", vf=box)) + 20
    )
    assert measure.mean(measure.signal(text, "YAVG", vf=outside)) == pytest.approx(
        measure.mean(measure.signal(plain, "YAVG", vf=outside)), abs=2
    )


CASES: list[tuple[str, list[ops.Op], Callable[[Path], bool]]] = [
    ("flip", [ops.Flip(axis="horizontal")], lambda p: measure.size(p) == (320, 240)),
    (
        "saturation",
        [ops.Saturation(saturation=-100)],
        lambda p: max(measure.signal(p, "UMAX")) - min(measure.signal(p, "UMIN")) <= 4,
    ),
    (
        "contrast",
        [ops.Contrast(contrast=-100)],
        lambda p: max(measure.signal(p, "YMAX")) - min(measure.signal(p, "YMIN")) <= 10,
    ),
]


@pytest.mark.parametrize(("name", "op_list", "check"), CASES, ids=[c[0] for c in CASES])
async def test_other_ops_render_with_their_effect(
    tmp_path: Path,
    sources: dict[str, edl.Source],
    name: str,
    op_list: list[ops.Op],
    check: Callable[[Path], bool],
) -> None:
    assert check(await render(tmp_path, sources, op_list))


async def test_every_op_combined_on_a_source_without_audio(
    tmp_path: Path, sources: dict[str, edl.Source]
) -> None:
    every: list[ops.Op] = [
        ops.Trim(start=0, end=1.2),
        ops.Speed(factor=0.5),
        ops.Crop(x=0, y=0, width=150, height=110),
        ops.Rotate(degrees=270),
        ops.Flip(axis="vertical"),
        ops.Brightness(brightness=10),
        ops.Contrast(contrast=10),
        ops.Saturation(saturation=10),
        ops.GaussianBlur(radius=1),
        ops.Grayscale(),
        ops.Fade(in_seconds=0.2, out_seconds=0.2),
        ops.Volume(gain_db=-3),
        ops.Mute(),
        ops.Text(text="end", x=5, y=5),
        ops.Concat(video_id=BARS_ID),
    ]
    assert {type(o) for o in every} == set(ops.VOCABULARY.values())
    out = await render(tmp_path, sources, every, source="silent")
    assert measure.size(out) == (110, 150)
    assert measure.duration(out) == pytest.approx(2.4 + 2.0, abs=0.2)
    # The appended video brings audio, so the result has a track (silent where the source was).
    assert any(s["codec_type"] == "audio" for s in measure.probe(out)["streams"])

"""Concat across frame rates, sizes and audio formats: the render finishes at the version's
rate, and every part plays for its own length."""

from fractions import Fraction
from pathlib import Path

import pytest

from jobs import edl
from jobs.runner import run_ffmpeg
from resolvers import ops
from resolvers.presets import PROXY, Preset, export_preset
from tests.helpers import measure
from tests.helpers.media import SOURCE_KINDS, make_kind

EXPORT = export_preset(crf=23, x264_preset="ultrafast")
RATES = ["24fps-stereo-48k", "25fps-4x3-mono-44k", "29.97fps-stereo-44k", "30fps-silent"]
RATES.append("60fps-mono-48k")
# Long enough for a render that finishes, far shorter than one that never does.
TIMEOUT_S = 20


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, edl.Source]:
    """One 1 s source of each kind, as the compiler sees an uploaded original."""
    folder = tmp_path_factory.mktemp("kinds")
    found: dict[str, edl.Source] = {}
    for kind in SOURCE_KINDS:
        path = make_kind(folder, kind)
        info = measure.probe(path)
        video = next(s for s in info["streams"] if s["codec_type"] == "video")
        found[kind] = edl.Source(
            path,
            "mov",
            int(video["width"]),
            int(video["height"]),
            float(Fraction(video["avg_frame_rate"])),
            float(info["format"]["duration"]),
            any(s["codec_type"] == "audio" for s in info["streams"]),
        )
    return found


async def render(
    tmp_path: Path,
    kinds: dict[str, edl.Source],
    main: str,
    op_list: list[ops.Op],
    preset: Preset,
) -> Path:
    """Render ``op_list`` over ``main``; concat ops name kinds by their index in SOURCE_KINDS."""
    source = kinds[main]
    out = tmp_path / "out.mp4"
    plan = edl.compile_edl(
        op_list=op_list,
        source=source,
        source_frame=ops.Frame(source.width, source.height, source.duration),
        concat_sources={i + 1: kinds[k] for i, k in enumerate(SOURCE_KINDS)},
        preset=preset,
        output=out,
        workdir=tmp_path,
    )

    async def keep(_: float) -> bool:
        return True

    outcome = await run_ffmpeg(
        plan.argv, expected_duration=plan.duration, timeout_s=TIMEOUT_S, on_progress=keep
    )
    assert not outcome.timed_out, f"the render did not finish in {TIMEOUT_S} s"
    assert outcome.returncode == 0, outcome.stderr
    return out


def concat(kind: str) -> ops.Concat:
    return ops.Concat(video_id=list(SOURCE_KINDS).index(kind) + 1)


def streams(path: Path) -> dict[str, dict[str, str]]:
    return {s["codec_type"]: s for s in measure.probe(path)["streams"]}


@pytest.mark.parametrize("preset", [PROXY, EXPORT], ids=["proxy", "export"])
@pytest.mark.parametrize("main", RATES)
async def test_every_other_kind_appended_plays_at_the_versions_rate(
    tmp_path: Path, kinds: dict[str, edl.Source], main: str, preset: Preset
) -> None:
    others = [k for k in SOURCE_KINDS if k != main]
    out = await render(tmp_path, kinds, main, [concat(k) for k in others], preset)
    total = sum(kinds[k].duration for k in SOURCE_KINDS)
    assert measure.duration(out) == pytest.approx(total, abs=0.15)
    video, audio = streams(out)["video"], streams(out)["audio"]
    rate = Fraction(video["r_frame_rate"])
    assert rate == Fraction(edl.frame_rate(kinds[main].fps))
    # A constant rate: as many frames as the duration holds, no endless duplicates.
    assert int(video["nb_frames"]) == pytest.approx(float(total * rate), abs=3)
    assert float(audio["duration"]) == pytest.approx(total, abs=0.15)
    assert (int(audio["sample_rate"]), int(audio["channels"])) == (edl.SAMPLE_RATE, 2)
    # Every part is fitted into the first one's picture (cut to even sides).
    width, height = kinds[main].width, kinds[main].height
    assert measure.size(out) == (width // 2 * 2, height // 2 * 2)


@pytest.mark.parametrize(
    ("main", "appended"),
    [("30fps-silent", "24fps-stereo-48k"), ("29.97fps-stereo-44k", "60fps-mono-48k")],
)
async def test_a_sped_up_version_appends_at_its_own_rate(
    tmp_path: Path, kinds: dict[str, edl.Source], main: str, appended: str
) -> None:
    op_list: list[ops.Op] = [ops.Speed(factor=2), concat(appended), ops.Speed(factor=0.5)]
    out = await render(tmp_path, kinds, main, op_list, PROXY)
    total = (kinds[main].duration / 2 + kinds[appended].duration) * 2
    assert measure.duration(out) == pytest.approx(total, abs=0.15)
    rate = Fraction(streams(out)["video"]["r_frame_rate"])
    assert rate == Fraction(edl.frame_rate(kinds[main].fps))


@pytest.mark.parametrize(
    ("fps", "expected"),
    [(24.0, "24"), (30000 / 1001, "30000/1001"), (59.94005994005994, "60000/1001"), (0.0, "30")],
)
def test_the_versions_rate_is_the_sources_as_a_fraction(fps: float, expected: str) -> None:
    assert edl.frame_rate(fps) == expected

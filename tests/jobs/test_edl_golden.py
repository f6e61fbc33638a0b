"""Golden argv of each op, compiled for a 1080p source seen through its 480p mezzanine.

A change to the compiler shows here as a readable diff. After checking it is intended,
regenerate with ``EDITGRAPH_UPDATE_GOLDEN=1 pytest tests/jobs/test_edl_golden.py``.
"""

import json
import os
import sys
from pathlib import Path

import pytest

from jobs import edl
from resolvers import ops
from resolvers.presets import PROXY, export_preset

GOLDEN = Path(__file__).with_name("golden_argv.json")
SOURCE = edl.Source(Path("/media/videos/src.mp4"), "mov", 852, 480, 30.0, 10.0, True)
FRAME = ops.Frame(1920, 1080, 10.0)
OTHER = edl.Source(Path("/media/videos/other.mkv"), "matroska", 640, 360, 25.0, 4.0, False)
# Concat ops name videos by their row id.
SOURCE_ID, OTHER_ID = 1, 2
CASES: dict[str, list[ops.Op]] = {
    "none": [],
    "trim": [ops.Trim(start=1, end=4.5)],
    "speed": [ops.Speed(factor=4)],
    "crop": [ops.Crop(x=100, y=50, width=960, height=540)],
    "rotate-90": [ops.Rotate(degrees=90)],
    "rotate-180": [ops.Rotate(degrees=180)],
    "rotate-then-crop": [ops.Rotate(degrees=90), ops.Crop(x=0, y=0, width=1080, height=960)],
    "flip": [ops.Flip(axis="vertical")],
    "brightness": [ops.Brightness(brightness=20)],
    "contrast": [ops.Contrast(contrast=-30)],
    "saturation": [ops.Saturation(saturation=50)],
    "gaussian-blur": [ops.GaussianBlur(radius=5)],
    "grayscale": [ops.Grayscale()],
    "fade": [ops.Fade(in_seconds=1, out_seconds=2)],
    "volume": [ops.Volume(gain_db=-6)],
    "mute": [ops.Mute()],
    "text": [ops.Text(text="Hi", x=100, y=200, size=48, color="#ffcc00", start=1, end=3)],
    "concat": [ops.Concat(video_id=OTHER_ID)],
    "concat-twice": [ops.Concat(video_id=OTHER_ID), ops.Concat(video_id=OTHER_ID)],
    "concat-self": [ops.Concat(video_id=SOURCE_ID)],
}


def compiled(name: str, export: bool = False) -> str:
    preset = export_preset(crf=20, x264_preset="medium") if export else PROXY
    source = (
        edl.Source(Path("/media/videos/src.mp4"), "mov", 1920, 1080, 30.0, 10.0, True)
        if export
        else SOURCE
    )
    plan = edl.compile_edl(
        op_list=CASES[name],
        source=source,
        source_frame=FRAME,
        concat_sources={OTHER_ID: OTHER, SOURCE_ID: SOURCE},
        preset=preset,
        output=Path("/media/temp/out.mp4"),
        workdir=Path("/media/temp/work"),
    )
    return " ".join(plan.argv)


def current() -> dict[str, str]:
    result = {f"proxy/{name}": compiled(name) for name in CASES}
    result["export/none"] = compiled("none", export=True)
    result["export/crop"] = compiled("crop", export=True)
    return result


def test_every_op_has_a_golden_case() -> None:
    covered = {type(op) for case in CASES.values() for op in case}
    assert covered == set(ops.VOCABULARY.values())


@pytest.mark.parametrize("case", sorted(current()))
def test_argv_matches_golden(case: str) -> None:
    if os.environ.get("EDITGRAPH_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(current(), indent=2, sort_keys=True) + "\n")
    golden: dict[str, str] = json.loads(GOLDEN.read_text())
    assert current()[case] == golden[case]


@pytest.mark.parametrize(
    ("case", "reads"),
    [
        ("concat-twice", "file:/media/videos/other.mkv"),
        ("concat-self", "file:/media/videos/src.mp4"),
    ],
)
def test_a_file_read_twice_gets_an_input_each_time(case: str, reads: str) -> None:
    argv = compiled(case).split()
    assert [argv[i + 1] for i, arg in enumerate(argv) if arg == "-i"].count(reads) == 2


def test_a_history_past_the_recursion_limit_compiles_through_a_script() -> None:
    history: list[ops.Op] = [ops.Flip(axis="horizontal")] * (sys.getrecursionlimit() * 5)
    plan = edl.compile_edl(
        op_list=history,
        source=SOURCE,
        source_frame=FRAME,
        concat_sources={},
        preset=PROXY,
        output=Path("/media/temp/out.mp4"),
        workdir=Path("/media/temp/work"),
    )
    # The graph is too long for one argument (Linux stops at 128 KiB): it goes in a file.
    script = Path("/media/temp/work/filtergraph.txt")
    assert plan.argv[plan.argv.index("-filter_complex_script") + 1] == str(script)
    assert plan.text_files[script].count("hflip") == len(history)
    assert max(len(arg) for arg in plan.argv) < 4096


def test_untrusted_input_is_pinned_and_local_only() -> None:
    for argv in current().values():
        assert argv.startswith("ffmpeg -f mov -format_whitelist ")
        assert "-protocol_whitelist file,pipe -i file:/media/videos/src.mp4" in argv
        assert "-nostdin" in argv
        assert "-progress pipe:1" in argv
        assert "-movflags +faststart" in argv

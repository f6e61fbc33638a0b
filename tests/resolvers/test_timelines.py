"""A version as a timeline: OTIO round-trips every op; an EDL and FCP XML, read back by
their adapters, hold the cuts (source and record in/out) and say what they lost."""

from typing import Any

import opentimelineio as otio
import pytest

from resolvers import ops
from resolvers.timelines import Source, build, for_format, lost_in, ops_of

CLIP = Source("holiday.mp4", "a" * 64, 2.0, 25.0)
OTHER = Source("trailer.mp4", "b" * 64, 3.0, 25.0)
RAW: list[dict[str, Any]] = [
    {"type": "trim", "params": {"start": 0.4, "end": 1.6}},
    {"type": "concat", "params": {"videoId": "VmlkZW86Mg"}},  # video 2: OTHER
    {"type": "speed", "params": {"factor": 2}},
    {"type": "crop", "params": {"x": 0, "y": 0, "width": 64, "height": 48}},
    {"type": "rotate", "params": {"degrees": 90}},
    {"type": "flip", "params": {"axis": "horizontal"}},
    {"type": "brightness", "params": {"brightness": 20, "start": 0, "end": 1}},
    {"type": "contrast", "params": {"contrast": 10}},
    {"type": "saturation", "params": {"saturation": -30}},
    {"type": "gaussian-blur", "params": {"radius": 5}},
    {"type": "grayscale", "params": {}},
    {"type": "fade", "params": {"in_seconds": 0.5, "out_seconds": 0.5}},
    {"type": "volume", "params": {"gain_db": -6}},
    {"type": "mute", "params": {"start": 0.2, "end": 0.4}},
    {"type": "text", "params": {"text": "Hello", "start": 0.1, "end": 0.9}},
]


def stored(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    parsed, errors = ops.parse(raw)
    assert errors == [], errors
    return [ops.stored(op) for op in parsed if op is not None]


def test_every_op_type_round_trips_through_an_otio_file() -> None:
    effective = stored(RAW)
    assert {op["type"] for op in effective} == set(ops.VOCABULARY)  # every op type is here
    text = otio.adapters.write_to_string(build(CLIP, effective, {2: OTHER}), "otio_json")
    back = otio.adapters.read_from_string(text, "otio_json")
    assert ops_of(back) == effective
    track = back.tracks[0]
    clips = [item for item in track if isinstance(item, otio.schema.Clip)]
    assert [c.media_reference.target_url for c in clips] == ["holiday.mp4", "trailer.mp4"]
    assert clips[0].media_reference.metadata["editgraph"]["sha256"] == "a" * 64
    # trim: the first clip's source range; speed: a warp on each clip; fades: transitions.
    assert clips[0].source_range == otio.opentime.TimeRange(
        otio.opentime.RationalTime(10, 25), otio.opentime.RationalTime(30, 25)
    )
    assert [e.time_scalar for c in clips for e in c.effects] == [2.0, 2.0]
    assert sum(isinstance(i, otio.schema.Transition) for i in track) == 2
    assert [m.name for m in track.markers] == ["Hello"]
    assert lost_in("OTIO", effective) == []


@pytest.mark.parametrize(("fmt", "adapter"), [("CMX3600_EDL", "cmx_3600"), ("FCP_XML", "fcp_xml")])
def test_a_trim_and_a_concat_survive_an_edl_and_fcp_xml(fmt: str, adapter: str) -> None:
    blur = {"type": "gaussian-blur", "params": {"radius": 5, "start": 0, "end": 1}}
    effective = stored([*RAW[:2], blur])
    text = otio.adapters.write_to_string(
        for_format(fmt, build(CLIP, effective, {2: OTHER})), adapter
    )
    options = {"rate": 25} if adapter == "cmx_3600" else {}
    back = otio.adapters.read_from_string(text, adapter, **options)
    clips = [i for t in back.tracks for i in t if isinstance(i, otio.schema.Clip)]
    assert len(clips) == 2  # two events
    frames = [(c.source_range.start_time.value, c.source_range.duration.value) for c in clips]
    assert frames == [(10, 30), (0, 75)]  # source in and length
    record = [clip.range_in_parent() for clip in clips]
    assert [(r.start_time.value, r.end_time_exclusive().value) for r in record] == [
        (0, 30),
        (30, 105),
    ]
    assert lost_in(fmt, effective) == ["blur radius 5 at 0\u20131 s"]


def test_speed_in_an_edl_is_kept_as_m2_only() -> None:
    effective = stored([{"type": "speed", "params": {"factor": 2}}])
    assert lost_in("CMX3600_EDL", effective) == ["speed 2\u00d7 kept as M2 only"]
    assert lost_in("FCP_XML", effective) == ["speed factor 2"]

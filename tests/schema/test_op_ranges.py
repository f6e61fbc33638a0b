"""Effects on a stretch of the timeline, as clients send them: stored, shown, and refused
with the op and field named when the stretch does not fit."""

from pathlib import Path

from tests.helpers.api import APPEND, Api, new_project


async def test_ranged_effects_are_stored_and_shown_with_their_stretch(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])  # 2 s
    ops = [
        {"brightness": {"brightness": 20, "start": 0.5, "end": 1.5}},
        {"grayscaleRange": {"start": 1}},
        {"muteRange": {"end": 0.5}},
        {"grayscale": True},
        {"text": {"text": "hi", "start": 1, "end": 2}},
    ]
    result = (await api.data(alice, APPEND, {"p": pid, "ops": ops}))["appendOps"]
    assert result["__typename"] == "OpsAppended", result
    shown = result["version"]["ops"]
    assert shown[:4] == [
        {"type": "brightness", "params": {"brightness": 20.0, "start": 0.5, "end": 1.5}},
        {"type": "grayscale", "params": {"start": 1.0}},
        {"type": "mute", "params": {"end": 0.5}},
        {"type": "grayscale", "params": {}},  # the whole timeline, stored as before
    ]


async def test_a_stretch_that_does_not_fit_is_refused_with_its_field(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])  # 2 s
    ops = [
        {"brightness": {"brightness": 20, "start": 1.5, "end": 0.5}},
        {"saturation": {"saturation": 20, "end": 3}},
        {"volume": {"gainDb": -6, "start": 2}},
        {"grayscaleRange": {"start": -1}},
        {"trim": {"start": 0, "end": 1}},
        {"flip": {"axis": "VERTICAL", "start": 0.5, "end": 1.5}},
    ]
    result = (await api.data(alice, APPEND, {"p": pid, "ops": ops}))["appendOps"]
    assert result["__typename"] == "InvalidOps"
    found = [(e["index"], e["field"]) for e in result["errors"]]
    # The flip is checked against the trimmed timeline (1 s): its end is past it.
    assert found == [(0, None), (1, "end"), (2, "start"), (3, "start"), (5, "end")]
    messages = [e["message"] for e in result["errors"]]
    assert messages[0] == "end must be after start"
    assert "past the end of the video (2 s)" in messages[1]
    assert "past the end of the video (1 s)" in messages[4]

"""InvalidOps lists every problem of a batch at once: the params that do not parse and the ops
that do not fit the frame, each with its index and field."""

from pathlib import Path
from typing import Any

import pytest

from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore
from resolvers import versions
from resolvers.errors import InvalidOpsError
from resolvers.users import Actor
from tests.helpers.api import APPEND, Api
from tests.helpers.api import new_project as new_project_over_api
from tests.helpers.domain import counts, new_project

# The clip is 2 s of 160x120.
TRIM_PAST_THE_END = {"type": "trim", "params": {"start": 0, "end": 9}}
TOO_FAST = {"type": "speed", "params": {"factor": 10}}
CROP_OUTSIDE = {"type": "crop", "params": {"x": 100, "y": 0, "width": 100, "height": 50}}


async def test_a_batch_reports_parse_errors_and_frame_checks_together(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])
    assert project.id is not None
    with pytest.raises(InvalidOpsError) as caught:
        await versions.append_ops(
            db=db,
            queue=queue,
            actor=alice,
            project_id=project.id,
            raw_ops=[TRIM_PAST_THE_END, TOO_FAST, CROP_OUTSIDE],
            expected_version=None,
        )
    errors = caught.value.errors
    assert [(e.index, e.field) for e in errors] == [(0, "end"), (1, "factor"), (2, "width")]
    assert "past the end of the video (2 s)" in errors[0].message
    assert "less than or equal to 4" in errors[1].message
    assert "outside the 160 px frame" in errors[2].message
    assert await counts(db, project.id) == (1, 0)  # nothing stored


async def test_ops_after_one_that_does_not_parse_are_checked_without_it(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])
    assert project.id is not None
    raw_ops: list[dict[str, Any]] = [
        {"type": "rotate", "params": {"degrees": 45}},
        {"type": "blur", "params": {}},
        {"type": "trim", "params": {"start": 1, "end": 3}},  # past the end of 2 s
        {"type": "crop", "params": {"x": 0, "y": 0, "width": 160, "height": 120}},  # fits
        {"type": "text", "params": {"text": "hi", "x": 170}},  # outside 160 px
    ]
    with pytest.raises(InvalidOpsError) as caught:
        await versions.append_ops(
            db=db,
            queue=queue,
            actor=alice,
            project_id=project.id,
            raw_ops=raw_ops,
            expected_version=None,
        )
    found = [(e.index, e.field) for e in caught.value.errors]
    assert found == [(0, "degrees"), (1, "type"), (2, "end"), (4, "x")]


async def test_the_api_lists_every_problem_with_its_index_and_field(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    pid = await new_project_over_api(api, alice, media["clip"])
    batch = [
        {"trim": {"start": 0, "end": 9}},
        {"speed": {"factor": 10}},
        {"crop": {"x": 100, "y": 0, "width": 100, "height": 50}},
    ]
    result = (await api.data(alice, APPEND, {"p": pid, "ops": batch}))["appendOps"]
    assert result["__typename"] == "InvalidOps"
    assert [(e["index"], e["field"]) for e in result["errors"]] == [
        (0, "end"),
        (1, "factor"),
        (2, "width"),
    ]
    body = await api.query(alice, "{ projects { nodes { currentVersion } } }")
    assert body["data"]["projects"]["nodes"] == [{"currentVersion": 0}]


def text(color: str) -> dict[str, Any]:
    return {"type": "text", "params": {"text": "hi", "color": color}}


# Params that ffmpeg would refuse, or render as nothing, are refused when they are appended.
REFUSED: list[tuple[list[dict[str, Any]], list[tuple[int, str | None]]]] = [
    ([text("notacolor")], [(0, "color")]),
    ([text("#12345")], [(0, "color")]),
    ([text("white@0.5")], [(0, "color")]),
    ([{"type": "crop", "params": {"x": 0, "y": 0, "width": 8, "height": 120}}], [(0, "width")]),
    ([{"type": "trim", "params": {"start": 0, "end": 0.05}}], [(0, "end")]),
    (
        [
            {"type": "trim", "params": {"start": 0, "end": 0.3}},
            {"type": "speed", "params": {"factor": 4}},
        ],
        [(1, "factor")],
    ),
    ([{"type": "trim", "params": {"start": 0, "end": float("inf")}}], [(0, "end")]),
    ([{"type": "volume", "params": {"gainDb": float("nan")}}], [(0, "gainDb")]),
]


REFUSED_IDS = [
    "unknown-colour",
    "short-hex",
    "colour-with-alpha",
    "crop-under-16px",
    "trim-under-0.1s",
    "speed-under-0.1s",
    "infinite-end",
    "nan-gain",
]


@pytest.mark.parametrize(("raw_ops", "expected"), REFUSED, ids=REFUSED_IDS)
async def test_params_ffmpeg_cannot_render_are_refused(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    media: dict[str, Path],
    raw_ops: list[dict[str, Any]],
    expected: list[tuple[int, str | None]],
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])
    assert project.id is not None
    with pytest.raises(InvalidOpsError) as caught:
        await versions.append_ops(
            db=db,
            queue=queue,
            actor=alice,
            project_id=project.id,
            raw_ops=raw_ops,
            expected_version=None,
        )
    assert [(e.index, e.field) for e in caught.value.errors] == expected


async def test_colours_are_names_ffmpeg_knows_in_any_case_or_hex(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])
    assert project.id is not None
    _, version, _ = await versions.append_ops(
        db=db,
        queue=queue,
        actor=alice,
        project_id=project.id,
        raw_ops=[text("gold"), text("DarkSlateGray"), text("#FFcc00")],
        expected_version=None,
    )
    assert version.number == 1

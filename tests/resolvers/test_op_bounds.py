"""What one edit may cost: ops per batch and per version, the length and picture of a version."""

import sys
from pathlib import Path
from typing import Any

import pytest

from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore
from models.tables import Project
from resolvers import ids, ops, versions
from resolvers.errors import InvalidOpsError, OpError
from resolvers.users import Actor
from tests.helpers.api import APPEND, Api, AppFactory
from tests.helpers.api import new_project as new_project_over_api
from tests.helpers.domain import FLIP, counts, insert_history, new_project

SLOW = {"type": "speed", "params": {"factor": 0.25}}


async def refused(
    db: Database,
    queue: ArqQueue,
    actor: Actor,
    project: Project,
    raw_ops: list[dict[str, Any]],
    limits: ops.Limits = ops.DEFAULT_LIMITS,
) -> list[OpError]:
    """The errors of a batch that must be refused, after checking nothing was stored."""
    assert project.id is not None
    before = await counts(db, project.id)
    with pytest.raises(InvalidOpsError) as caught:
        await versions.append_ops(
            db=db,
            queue=queue,
            actor=actor,
            project_id=project.id,
            raw_ops=raw_ops,
            expected_version=None,
            limits=limits,
        )
    assert await counts(db, project.id) == before
    return caught.value.errors


async def test_the_slow_motion_bomb_is_refused_at_the_op_that_goes_too_far(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])  # 2 s
    errors = await refused(db, queue, alice, project, [SLOW] * 12)
    # 2 s x 4^6 = 2 h 16 min still fits in 4 h; each op after that would make it longer.
    assert [(e.index, e.field) for e in errors] == [(i, "factor") for i in range(6, 12)]
    assert "longer than the 4:00:00 a version may last" in errors[0].message

    # Six of them fit, and the version records the length it renders.
    assert project.id is not None
    _, version, _ = await versions.append_ops(
        db=db,
        queue=queue,
        actor=alice,
        project_id=project.id,
        raw_ops=[SLOW] * 6,
        expected_version=0,
    )
    assert version.frame_duration == pytest.approx(2 * 4**6)


async def test_a_concat_past_the_timeline_limit_names_the_video(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])  # 2 s
    other = await new_project(db, queue, store, alice, media["other"])  # 3 s
    concat = {"type": "concat", "params": {"videoId": ids.encode("Video", other.source_video_id)}}
    limits = ops.Limits(timeline_s=7)
    errors = await refused(db, queue, alice, project, [concat, concat], limits)
    assert [(e.index, e.field) for e in errors] == [(1, "videoId")]
    # Shortening first makes room: a trim never counts against the limit.
    assert project.id is not None
    trim = {"type": "trim", "params": {"start": 0, "end": 0.5}}
    _, version, _ = await versions.append_ops(
        db=db,
        queue=queue,
        actor=alice,
        project_id=project.id,
        raw_ops=[trim, concat, concat],
        expected_version=0,
        limits=limits,
    )
    assert version.frame_duration == pytest.approx(0.5 + 3 + 3, abs=0.05)


async def test_a_picture_over_the_frame_limit_must_be_cropped_first(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])  # 160x120
    limits = ops.Limits(frame_pixels=100 * 100)
    errors = await refused(db, queue, alice, project, [FLIP], limits)
    assert [(e.index, e.field) for e in errors] == [(0, None)]
    assert "160x120" in errors[0].message and "crop it first" in errors[0].message
    crop = {"type": "crop", "params": {"x": 0, "y": 0, "width": 100, "height": 100}}
    assert project.id is not None
    _, version, _ = await versions.append_ops(
        db=db,
        queue=queue,
        actor=alice,
        project_id=project.id,
        raw_ops=[crop, FLIP],
        expected_version=0,
        limits=limits,
    )
    assert (version.frame_width, version.frame_height) == (100, 100)


async def test_a_batch_over_the_cap_is_refused_before_it_is_parsed(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])
    # Not even valid ops: a batch this long is refused before any op is looked at.
    errors = await refused(db, queue, alice, project, [{"type": "nonsense"}] * 101)
    assert [(e.index, e.field) for e in errors] == [(100, None)]
    assert errors[0].message == "a batch may hold at most 100 ops; this one has 101"


async def test_a_version_holds_a_bounded_number_of_ops(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])
    assert project.id is not None
    limits = ops.Limits(ops_per_version=5)
    await versions.append_ops(
        db=db,
        queue=queue,
        actor=alice,
        project_id=project.id,
        raw_ops=[FLIP] * 3,
        expected_version=0,
        limits=limits,
    )
    errors = await refused(db, queue, alice, project, [FLIP] * 3, limits)
    assert [(e.index, e.field) for e in errors] == [(2, None)]
    assert "at most 5 ops" in errors[0].message and "3 already" in errors[0].message
    # A revert to an earlier version makes room again.
    await versions.revert_to_version(
        db=db, queue=queue, actor=alice, project_id=project.id, version=0, expected_version=None
    )
    await versions.append_ops(
        db=db,
        queue=queue,
        actor=alice,
        project_id=project.id,
        raw_ops=[FLIP] * 5,
        expected_version=2,
        limits=limits,
    )


async def test_a_history_longer_than_the_recursion_limit_loads_and_stops_growing(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])
    assert project.id is not None
    length = sys.getrecursionlimit() + 500
    await insert_history(db, project, length)
    loaded = await versions.effective_ops(db=db, actor=alice, project_id=project.id, up_to=None)
    assert [r.seq for r in loaded] == list(range(length))
    errors = await refused(db, queue, alice, project, [FLIP])
    assert [(e.index, e.field) for e in errors] == [(0, None)]
    assert "at most 1000 ops" in errors[0].message


async def test_ops_sent_as_variables_meet_the_batch_cap(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    pid = await new_project_over_api(api, alice, media["clip"])
    body = await api.data(alice, APPEND, {"p": pid, "ops": [{"mute": True}] * 101})
    assert body["appendOps"]["__typename"] == "InvalidOps"
    assert body["appendOps"]["errors"] == [
        {
            "index": 100,
            "field": None,
            "message": "a batch may hold at most 100 ops; this one has 101",
        }
    ]
    bomb = await api.data(alice, APPEND, {"p": pid, "ops": [{"speed": {"factor": 0.25}}] * 12})
    assert bomb["appendOps"]["__typename"] == "InvalidOps"
    assert [e["index"] for e in bomb["appendOps"]["errors"]] == list(range(6, 12))
    project = await api.data(
        alice, "query($id: ID!) { project(id: $id) { currentVersion } }", {"id": pid}
    )
    assert project["project"]["currentVersion"] == 0


async def test_a_huge_ops_list_is_refused_before_its_inputs_are_built(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    pid = await new_project_over_api(api, alice, media["clip"])
    # 20,000 ops fit in the JSON body cap; building 20,000 inputs would stall the server.
    body = await api.query(alice, APPEND, {"p": pid, "ops": [{"mute": True}] * 20_000})
    assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert "more than 5000 values" in body["errors"][0]["message"]
    project = await api.data(
        alice, "query($id: ID!) { project(id: $id) { currentVersion } }", {"id": pid}
    )
    assert project["project"]["currentVersion"] == 0


async def test_the_settings_set_the_limits(
    make_api: AppFactory, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    async with make_api(max_ops_per_batch=2, max_ops_per_version=3, max_timeline_s=5.0) as api:
        alice = tokens["alice"]
        pid = await new_project_over_api(api, alice, media["clip"])  # 2 s

        async def append(op_list: list[dict[str, Any]]) -> list[tuple[int, str | None]]:
            result = (await api.data(alice, APPEND, {"p": pid, "ops": op_list}))["appendOps"]
            return [(e["index"], e["field"]) for e in result.get("errors", [])]

        assert await append([{"mute": True}] * 3) == [(2, None)]
        assert await append([{"speed": {"factor": 0.25}}]) == [(0, "factor")]
        assert await append([{"mute": True}] * 2) == []
        assert await append([{"mute": True}] * 2) == [(1, None)]

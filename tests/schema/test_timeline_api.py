"""project.timeline as an editor asks for it: OTIO that reads back as the version's ops, an
EDL with its events and the list of what it lost."""

from pathlib import Path

import opentimelineio as otio

from resolvers.timelines import ops_of
from tests.helpers.api import APPEND, Api, code_of, new_project, upload

TIMELINE = """query($p: ID!, $f: TimelineFormat!, $v: Int) { project(id: $p) {
  timeline(format: $f, version: $v) { format text lost } } }"""


async def test_a_version_as_otio_and_as_an_edl(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])
    other = (await upload(api, alice, media["other"]))["video"]
    batch = [
        {"trim": {"start": 0.4, "end": 1.6}},
        {"concat": {"videoId": other["id"]}},
        {"gaussianBlur": {"radius": 5, "start": 0, "end": 1}},
    ]
    answer = await api.data(alice, APPEND, {"p": pid, "ops": batch})
    assert answer["appendOps"]["__typename"] == "OpsAppended"
    lossless = (await api.data(alice, TIMELINE, {"p": pid, "f": "OTIO"}))["project"]["timeline"]
    assert lossless["lost"] == []
    timeline = otio.adapters.read_from_string(lossless["text"], "otio_json")
    assert [op["type"] for op in ops_of(timeline)] == ["trim", "concat", "gaussian-blur"]
    clips = [i for i in timeline.tracks[0] if isinstance(i, otio.schema.Clip)]
    assert [c.media_reference.target_url for c in clips] == ["clip.mp4", "other.mp4"]
    assert clips[1].media_reference.metadata["editgraph"]["sha256"] == other["sha256"]
    edl = (await api.data(alice, TIMELINE, {"p": pid, "f": "CMX3600_EDL"}))["project"]["timeline"]
    assert edl["lost"] == ["blur radius 5 at 0\u20131 s"]
    events = [line for line in edl["text"].splitlines() if line[:3].isdigit()]
    assert len(events) == 2
    # Version 0 is the source alone; another user's project is not there.
    source = (await api.data(alice, TIMELINE, {"p": pid, "f": "FCP_XML", "v": 0}))["project"]
    assert "<xmeml" in source["timeline"]["text"] and source["timeline"]["lost"] == []
    assert (await api.data(tokens["bob"], TIMELINE, {"p": pid, "f": "OTIO"}))["project"] is None
    assert code_of(await api.query(alice, TIMELINE, {"p": pid, "f": "OTIO", "v": 9})) == "NOT_FOUND"

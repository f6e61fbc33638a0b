"""What changed between two versions, as a reviewer reads it: the common ancestor, the ops
each side added with their places, and a line per op, on linear and reverted histories."""

from pathlib import Path
from typing import Any

from tests.helpers.api import APPEND, REVERT, Api, code_of, new_project

DIFF = """query($p: ID!, $from: Int!, $to: Int!) { project(id: $p) { diff(from: $from, to: $to) {
  fromVersion toVersion commonAncestor summary
  removed { index version type params summary } added { index version type params summary } } } }"""


async def append(api: Api, token: str, pid: str, op: dict[str, Any]) -> None:
    answer = await api.data(token, APPEND, {"p": pid, "ops": [op]})
    assert answer["appendOps"]["__typename"] == "OpsAppended", answer


async def diff(api: Api, token: str, pid: str, old: int, new: int) -> dict[str, Any]:
    found: dict[str, Any] = (await api.data(token, DIFF, {"p": pid, "from": old, "to": new}))[
        "project"
    ]["diff"]
    return found


async def test_a_linear_history_and_a_revert(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])
    await append(api, alice, pid, {"gaussianBlur": {"radius": 5, "start": 0, "end": 1}})  # v1
    await append(api, alice, pid, {"trim": {"start": 0.5, "end": 1.5}})  # v2
    await append(api, alice, pid, {"brightness": {"brightness": 20}})  # v3
    forward = await diff(api, alice, pid, 1, 3)
    assert (forward["commonAncestor"], forward["removed"]) == (1, [])
    assert [(c["index"], c["version"], c["type"]) for c in forward["added"]] == [
        (1, 2, "trim"),
        (2, 3, "brightness"),
    ]
    assert forward["summary"] == [
        "added: the ops of v2\u2013v3",
        "trim 0.5\u20131.5 s added",
        "brightness 20 added",
    ]
    # v4 reverts to v1: against v3 it removes what v2 and v3 added, and adds nothing.
    reverted = await api.data(alice, REVERT, {"p": pid, "n": 1})
    assert reverted["revertToVersion"]["version"]["number"] == 4
    back = await diff(api, alice, pid, 3, 4)
    assert (back["commonAncestor"], back["added"]) == (1, [])
    assert [c["summary"] for c in back["removed"]] == ["trim 0.5\u20131.5 s", "brightness 20"]
    assert back["summary"][0] == "removed: the ops of v2\u2013v3"
    # The other way round, the same ops are added; a version against itself changes nothing.
    again = await diff(api, alice, pid, 4, 3)
    assert [c["type"] for c in again["added"]] == ["trim", "brightness"]
    assert await diff(api, alice, pid, 2, 2) == {
        "fromVersion": 2,
        "toVersion": 2,
        "commonAncestor": 2,
        "summary": [],
        "removed": [],
        "added": [],
    }
    # From the source (v0): the blur, with its range.
    first = await diff(api, alice, pid, 0, 1)
    assert first["summary"] == ["added: the ops of v1", "blur radius 5 at 0\u20131 s added"]
    missing = await api.query(alice, DIFF, {"p": pid, "from": 1, "to": 9})
    assert code_of(missing) == "NOT_FOUND"

"""The ownership matrix: another user's ids behave exactly like ids that do not exist."""

from pathlib import Path
from typing import Any

from tests.helpers.api import APPEND, CREATE, REVERT, Api, upload


async def snapshot(api: Api, token: str) -> dict[str, Any]:
    return await api.data(
        token,
        """{ videos { nodes { id filename } }
             projects { nodes { id name currentVersion ops { type params } exports { version }
                                versions(first: 100) { nodes { number parent } } } } }""",
    )


async def test_user_b_gets_not_found_for_every_field_that_takes_user_a_ids(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice, bob = tokens["alice"], tokens["bob"]
    video = (await upload(api, alice, media["clip"]))["video"]["id"]
    spare = (await upload(api, alice, media["other"]))["video"]["id"]
    project = (await api.data(alice, CREATE, {"v": video, "name": "mine"}))["createProject"][
        "project"
    ]["id"]
    await api.data(alice, APPEND, {"p": project, "ops": [{"grayscale": True}]})
    before = await snapshot(api, alice)
    missing_video = "VmlkZW86OTk5OQ"  # Video:9999
    missing_project = "UHJvamVjdDo5OTk5"  # Project:9999

    for vid in (video, missing_video):
        assert (await api.data(bob, "query($i: ID!) { video(id: $i) { id } }", {"i": vid}))[
            "video"
        ] is None
        assert (await api.data(bob, "query($i: ID!) { node(id: $i) { id } }", {"i": vid}))[
            "node"
        ] is None
        created = (await api.data(bob, CREATE, {"v": vid, "name": "x"}))["createProject"]
        assert created["__typename"] == "NotFound"
        deleted = await api.data(
            bob,
            "mutation($i: ID!) { deleteVideo(id: $i) { __typename } }",
            {"i": vid},
        )
        assert deleted["deleteVideo"]["__typename"] == "NotFound"

    messages = set()
    for pid in (project, missing_project):
        assert (await api.data(bob, "query($i: ID!) { project(id: $i) { id } }", {"i": pid}))[
            "project"
        ] is None
        assert (await api.data(bob, "query($i: ID!) { node(id: $i) { id } }", {"i": pid}))[
            "node"
        ] is None
        appended = (await api.data(bob, APPEND, {"p": pid, "ops": [{"mute": True}]}))["appendOps"]
        assert appended["__typename"] == "NotFound"
        messages.add(appended["message"].replace(pid, "<id>").split(" was")[0][:7])
        invalid = (await api.data(bob, APPEND, {"p": pid, "ops": [{"rotate": {"degrees": 1}}]}))[
            "appendOps"
        ]
        assert invalid["__typename"] == "NotFound"
        reverted = (await api.data(bob, REVERT, {"p": pid, "n": 0}))["revertToVersion"]
        assert reverted["__typename"] == "NotFound"

    # A concat of someone else's video fails exactly like one of a video that does not exist.
    bobs = (await upload(api, bob, media["silent"]))["video"]["id"]
    own = (await api.data(bob, CREATE, {"v": bobs, "name": "b"}))["createProject"]["project"]["id"]
    outcomes = []
    for vid in (spare, missing_video):
        result = (await api.data(bob, APPEND, {"p": own, "ops": [{"concat": {"videoId": vid}}]}))[
            "appendOps"
        ]
        outcomes.append((result["__typename"], result["errors"][0]["field"]))
    assert outcomes == [("InvalidOps", "videoId")] * 2

    # Renders and exports of A's project are as invisible as everything else.
    export = await api.data(
        alice,
        "mutation($p: ID!) { requestExport(projectId: $p) { ... on ExportQueued { export { id render { id } } } } }",
        {"p": project},
    )
    export_id = export["requestExport"]["export"]["id"]
    render_id = export["requestExport"]["export"]["render"]["id"]
    refused = await api.data(
        bob,
        "mutation($p: ID!) { requestExport(projectId: $p) { __typename } }",
        {"p": project},
    )
    assert refused["requestExport"]["__typename"] == "NotFound"
    cancelled = await api.data(
        bob, "mutation($i: ID!) { cancelRender(id: $i) { __typename } }", {"i": render_id}
    )
    assert cancelled["cancelRender"]["__typename"] == "NotFound"
    for hidden in (export_id, render_id):
        assert (await api.data(bob, "query($i: ID!) { node(id: $i) { id } }", {"i": hidden}))[
            "node"
        ] is None
    status = await api.data(
        alice, "query($i: ID!) { node(id: $i) { ... on Render { status } } }", {"i": render_id}
    )
    assert status["node"]["status"] == "QUEUED"
    before["projects"]["nodes"][0]["exports"] = [{"version": 1}]

    user_a = (await api.data(alice, "{ me { id } }"))["me"]["id"]
    assert (await api.data(bob, "query($i: ID!) { node(id: $i) { id } }", {"i": user_a}))[
        "node"
    ] is None
    assert (await api.data(bob, "{ videos { nodes { id } } }"))["videos"]["nodes"] == [{"id": bobs}]
    assert await snapshot(api, alice) == before

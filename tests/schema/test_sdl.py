"""schema/schema.graphql is generated from the code and committed; stale is a failure."""

from schema.root import SDL_PATH, sdl


def test_committed_schema_matches_the_code() -> None:
    assert SDL_PATH.read_text() == sdl(), "schema/schema.graphql is stale: run `make schema`"


def test_contract_names_are_present() -> None:
    text = sdl()
    for fragment in (
        "input OpInput @oneOf",
        "appendOps(projectId: ID!, ops: [OpInput!]!, expectedVersion: Int = null): AppendOpsResult!",
        "union AppendOpsResult = OpsAppended | VersionConflict | InvalidOps | NotFound",
        "interface Node",
        "type Video implements Node",
        "type Project implements Node",
        "scalar Upload",
    ):
        assert fragment in text

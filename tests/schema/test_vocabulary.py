"""The op vocabulary is defined once: GraphQL's OpInput follows the pydantic op models."""

from pathlib import Path
from typing import Any, Literal

import pytest
import strawberry
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLNonNull,
    GraphQLScalarType,
    Undefined,
)
from pydantic import Field, ValidationError
from strawberry.scalars import JSON

from resolvers import ops
from schema import inputs
from schema.limits import QueryLimits
from schema.root import build_schema
from tests.helpers.api import Api


class Vignette(ops.Op):
    """An op that is not in the vocabulary: only its model is written."""

    type = "vignette"
    description = "Darken the corners."
    strength: float = Field(default=0.5, ge=0, le=1)
    corner_shape: Literal["round", "square"] = "round"


VOCABULARY: dict[str, type[ops.Op]] = {"vignette": Vignette, "mute": ops.Mute}


@strawberry.input(one_of=True)
@inputs.one_key_per_op(VOCABULARY)
class EditInput:
    """Keys from a vocabulary with one more op."""


@strawberry.type
class Query:
    @strawberry.field
    def raw(self, op: EditInput) -> JSON:
        return JSON(inputs.to_raw(op, VOCABULARY))


def test_a_new_op_reaches_graphql_from_its_model_alone() -> None:
    schema = strawberry.Schema(query=Query)
    sdl = schema.as_str()
    assert (
        "input VignetteInput {\n  strength: Float! = 0.5\n  cornerShape: VignetteCornerShape! = ROUND\n}"
        in sdl
    )
    assert "enum VignetteCornerShape {\n  ROUND\n  SQUARE\n}" in sdl
    assert "input EditInput @oneOf {\n  vignette: VignetteInput\n  mute: Boolean\n" in sdl
    # A toggle that may act on a stretch of the timeline has a key for that too.
    assert "  muteRange: MuteRangeInput\n}" in sdl
    assert "input MuteRangeInput {\n  start: Float = null\n  end: Float = null\n}" in sdl

    def raw(document: str) -> Any:
        result = schema.execute_sync(document)
        assert result.errors is None, result.errors
        assert result.data is not None
        return result.data["raw"]

    sent = raw("{ raw(op: { vignette: { cornerShape: SQUARE } }) }")
    assert sent == {"type": "vignette", "params": {"strength": 0.5, "cornerShape": "square"}}
    assert Vignette.model_validate(sent["params"], context=ops.SENT).corner_shape == "square"
    assert raw("{ raw(op: { mute: true }) }") == {"type": "mute", "params": {"enabled": True}}
    # Bounds are the model's: GraphQL passes the value on, the model refuses it.
    over = raw("{ raw(op: { vignette: { strength: 2 } }) }")
    with pytest.raises(ValidationError, match="strength"):
        Vignette.model_validate(over["params"], context=ops.SENT)


def _base(graphql_type: Any) -> tuple[Any, bool]:
    if isinstance(graphql_type, GraphQLNonNull):
        return graphql_type.of_type, True
    return graphql_type, False


def _json_type(prop: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A property's JSON Schema without its null branch, and whether null is allowed."""
    branches = prop.get("anyOf")
    if branches is None:
        return prop, False
    [value] = [b for b in branches if b.get("type") != "null"]
    return {**prop, **value}, True


GRAPHQL_OF_JSON = {"number": "Float", "integer": "Int", "boolean": "Boolean"}


def test_op_input_agrees_with_the_published_params_schema_field_by_field() -> None:
    """What clients send (OpInput) and what ``opTypes`` tells them (JSON Schema) match in
    names, order, types, nullability, choices and defaults."""
    graphql = build_schema(QueryLimits(), production=False)._schema
    op_input = graphql.type_map["OpInput"]
    assert isinstance(op_input, GraphQLInputObjectType)
    ranged_toggles = [
        t
        for t, m in ops.VOCABULARY.items()
        if issubclass(m, ops.Toggle) and issubclass(m, ops.Ranged)
    ]
    expected = [
        name
        for t in ops.VOCABULARY
        for name in [ops.graphql_field(t)]
        + ([ops.graphql_field(t) + "Range"] * (t in ranged_toggles))
    ]
    assert list(op_input.fields) == expected
    assert ranged_toggles == ["grayscale", "mute"]
    for op_type, model in ops.VOCABULARY.items():
        key = op_input.fields[ops.graphql_field(op_type)]
        params_type, required = _base(key.type)
        assert not required
        schema = ops.params_schema(model)
        if issubclass(model, ops.Toggle):
            assert isinstance(params_type, GraphQLScalarType) and params_type.name == "Boolean"
            if op_type not in ranged_toggles:
                continue
            # Its stretch of the timeline comes through its second key: the params but
            # ``enabled``, which the Boolean key stands for.
            params_type, required = _base(
                op_input.fields[ops.graphql_field(op_type) + "Range"].type
            )
            assert not required
            schema = {**schema, "properties": dict(schema["properties"])}
            del schema["properties"]["enabled"]
        assert isinstance(params_type, GraphQLInputObjectType)
        assert list(params_type.fields) == list(schema["properties"]), op_type
        for name, field in params_type.fields.items():
            prop, nullable = _json_type(schema["properties"][name])
            base, non_null = _base(field.type)
            where = f"{op_type}.{name}"
            assert non_null != nullable, where
            has_default = field.default_value is not Undefined
            assert (name in schema.get("required", [])) == (non_null and not has_default), where
            assert has_default == ("default" in prop), where
            if isinstance(base, GraphQLEnumType):
                assert [v.value for v in base.values.values()] == prop["enum"], where
                assert not has_default or base.values[field.default_value].value == prop["default"]
                continue
            assert isinstance(base, GraphQLScalarType), where
            if prop["type"] == "string":
                assert base.name in ("String", "ID"), where
            else:
                assert base.name == GRAPHQL_OF_JSON[prop["type"]], where
            if has_default:
                assert field.default_value == prop["default"], where


# --- every bound the vocabulary publishes holds for GraphQL clients --------------------------

APPEND = """mutation($p: ID!, $ops: [OpInput!]!) { appendOps(projectId: $p, ops: $ops) {
  __typename ... on InvalidOps { errors { index field message } } } }"""


def _sample(prop: dict[str, Any]) -> Any:
    """A value of the right GraphQL type, within the bounds where that is easy."""
    if "enum" in prop:
        choice = prop["enum"][0]
        return choice.upper() if isinstance(choice, str) else choice
    if prop["type"] == "string":
        return "a" * max(1, prop.get("minLength", 1))
    low = prop.get("minimum", prop.get("exclusiveMinimum", 0) + 1)
    return int(low) if prop["type"] == "integer" else float(low)


def _past(prop: dict[str, Any]) -> list[Any]:
    """One value past each bound the property states."""
    step = 1 if prop.get("type") == "integer" else 0.5
    found: list[Any] = []
    if "minimum" in prop:
        found.append(prop["minimum"] - step)
    if "exclusiveMinimum" in prop:
        found.append(prop["exclusiveMinimum"])
    if "maximum" in prop:
        found.append(prop["maximum"] + step)
    if "exclusiveMaximum" in prop:
        found.append(prop["exclusiveMaximum"])
    if "minLength" in prop:
        found.append("a" * (prop["minLength"] - 1))
    if "maxLength" in prop:
        found.append("a" * (prop["maxLength"] + 1))
    if "pattern" in prop:
        found.append("not a colour!")
    if "enum" in prop and prop.get("type") == "integer":
        found.append(max(prop["enum"]) + 1)
    return found


def past_every_bound() -> list[tuple[dict[str, Any], str]]:
    """(OpInput value, the param it breaks) for each bound of each op's params schema."""
    cases = []
    for op_type, model in ops.VOCABULARY.items():
        if issubclass(model, ops.Toggle):
            continue
        schema = ops.params_schema(model)
        props = {n: _json_type(p)[0] for n, p in schema["properties"].items()}
        required = {n: _sample(props[n]) for n in schema.get("required", [])}
        for name, prop in props.items():
            for value in _past(prop):
                op = {ops.graphql_field(op_type): {**required, name: value}}
                cases.append((op, name))
    return cases


async def test_every_published_bound_is_enforced_for_graphql_clients(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    video = (await api.upload(alice, media["clip"])).json()["data"]["uploadVideo"]["video"]["id"]
    created = await api.data(
        alice,
        'mutation($v: ID!) { createProject(videoId: $v, name: "b") '
        "{ ... on ProjectCreated { project { id } } } }",
        {"v": video},
    )
    pid = created["createProject"]["project"]["id"]
    cases = past_every_bound()
    assert len(cases) > 30  # every op with params has bounds; a broken walk finds none
    body = await api.data(alice, APPEND, {"p": pid, "ops": [op for op, _ in cases]})
    assert body["appendOps"]["__typename"] == "InvalidOps"
    refused = {(e["index"], e["field"]) for e in body["appendOps"]["errors"]}
    missed = [op for index, (op, name) in enumerate(cases) if (index, name) not in refused]
    assert missed == []

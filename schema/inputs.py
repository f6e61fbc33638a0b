"""OpInput: one key per op (GraphQL @oneOf), generated from the op vocabulary.

Each op's pydantic model (``resolvers/ops.py``) is the one definition: its input type here
has the model's params under their API names, with GraphQL types and defaults taken from
the model. Bounds stay in the model (GraphQL cannot state them); ``to_raw`` hands the
params to it. An op without params (a ``Toggle``) is a Boolean key; one that may act on
a stretch of the timeline (grayscale, mute) has a second key for that, ``grayscaleRange``.
"""

import dataclasses
import inspect
import types
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, Literal, TypeVar, Union, cast, get_args, get_origin

import strawberry
from pydantic.alias_generators import to_pascal
from pydantic.fields import FieldInfo

from resolvers import ops

T = TypeVar("T")
_SCALARS = (bool, int, float, str)


def _attribute(op_type: str) -> str:
    """The Python attribute of an op's key: ``gaussian-blur`` is ``gaussian_blur``."""
    return op_type.replace("-", "_")


def _enum(name: str, values: tuple[str, ...]) -> type[Enum]:
    members = {value.upper().replace("-", "_"): value for value in values}
    # Enum's functional API makes a class; type checkers read the call as a member lookup.
    return strawberry.enum(cast("type[Enum]", Enum(name, members)))


def _graphql_type(model: type[ops.Op], name: str, field: FieldInfo) -> tuple[Any, Any]:
    """The GraphQL type of one param (ID for a row it names, an enum for a string choice),
    and its default in that type."""
    if any(isinstance(m, ops.RowRef) for m in field.metadata):
        return strawberry.ID, field.default
    annotation, optional, default = field.annotation, False, field.default
    if get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation):
        optional = True
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        if all(isinstance(c, str) for c in choices):
            annotation = _enum(model.__name__ + to_pascal(name), choices)
            default = annotation(default) if isinstance(default, str) else default
        elif all(isinstance(c, int) for c in choices):
            annotation = int  # e.g. degrees: 90, 180 or 270, checked by the model
        else:
            raise TypeError(f"{model.__name__}.{name}: mixed choices have no GraphQL type")
    elif annotation not in _SCALARS:
        raise TypeError(f"{model.__name__}.{name}: no GraphQL type for {annotation!r}")
    return (annotation | None if optional else annotation), default


def params_input(model: type[ops.Op], suffix: str = "Input") -> type:
    """The input type of an op's params, named after the model: ``Trim`` → ``TrimInput``."""
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__module__": __name__, "__annotations__": annotations}
    for name, field in model.model_fields.items():
        if field.exclude:
            continue  # a Toggle's ``enabled``: its Boolean key stands for it
        annotations[name], default = _graphql_type(model, name, field)
        alias = field.alias or name
        if field.is_required():
            namespace[name] = strawberry.field(name=alias)
        else:
            namespace[name] = strawberry.field(name=alias, default=default)
    return strawberry.input(type(f"{model.__name__}{suffix}", (), namespace))


def _range_key(op_type: str) -> str:
    """The Python attribute of a toggle's ranged key: ``grayscale_range``."""
    return _attribute(op_type) + "_range"


def one_key_per_op(vocabulary: Mapping[str, type[ops.Op]]) -> Callable[[type[T]], type[T]]:
    """Give a class one optional key per op of ``vocabulary``, before strawberry reads it."""

    def add_keys(cls: type[T]) -> type[T]:
        annotations = inspect.get_annotations(cls)
        for op_type, model in vocabulary.items():
            value = bool if issubclass(model, ops.Toggle) else params_input(model)
            annotations[_attribute(op_type)] = value | None
            key = strawberry.field(name=ops.graphql_field(op_type), default=strawberry.UNSET)
            setattr(cls, _attribute(op_type), key)
            if issubclass(model, ops.Toggle) and issubclass(model, ops.Ranged):
                annotations[_range_key(op_type)] = params_input(model, "RangeInput") | None
                ranged = strawberry.field(
                    name=ops.graphql_field(op_type) + "Range",
                    default=strawberry.UNSET,
                    description=f"{op_type} over a stretch of the timeline only",
                )
                setattr(cls, _range_key(op_type), ranged)
        cls.__annotations__ = annotations
        return cls

    return add_keys


@strawberry.input(one_of=True, description="One edit: set exactly one key.")
@one_key_per_op(ops.VOCABULARY)
class OpInput:
    """One key per op of ``ops.VOCABULARY``, added by ``one_key_per_op``."""


def to_raw(op: object, vocabulary: Mapping[str, type[ops.Op]] = ops.VOCABULARY) -> dict[str, Any]:
    """The ``{"type", "params"}`` form the domain validates, from the one key that is set."""
    for op_type, model in vocabulary.items():
        value = getattr(op, _attribute(op_type), strawberry.UNSET)
        if value is strawberry.UNSET or value is None:
            value = getattr(op, _range_key(op_type), strawberry.UNSET)
        if value is strawberry.UNSET or value is None:
            continue
        if isinstance(value, bool):
            # grayscale / mute: true applies the op; false is not an edit at all.
            return {"type": op_type, "params": {"enabled": value}}
        params = {
            model.model_fields[k].alias or k: (v.value if isinstance(v, Enum) else v)
            for k, v in dataclasses.asdict(value).items()
            if v is not None
        }
        return {"type": op_type, "params": params}
    return {"type": None, "params": {}}

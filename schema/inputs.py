"""OpInput: one key per op (GraphQL @oneOf); the keys' fields are the op's params."""

import dataclasses
from enum import Enum
from typing import Any

import strawberry
from pydantic.alias_generators import to_camel

from resolvers import ops


@strawberry.enum
class FlipAxis(Enum):
    HORIZONTAL = "horizontal"
    VERTICAL = "vertical"


@strawberry.input
class TrimInput:
    start: float
    end: float


@strawberry.input
class SpeedInput:
    factor: float


@strawberry.input
class CropInput:
    x: int
    y: int
    width: int
    height: int


@strawberry.input
class RotateInput:
    degrees: int


@strawberry.input
class FlipInput:
    axis: FlipAxis


@strawberry.input
class BrightnessInput:
    brightness: float


@strawberry.input
class ContrastInput:
    contrast: float


@strawberry.input
class SaturationInput:
    saturation: float


@strawberry.input
class GaussianBlurInput:
    radius: float


@strawberry.input
class FadeInput:
    in_seconds: float = 0
    out_seconds: float = 0


@strawberry.input
class VolumeInput:
    gain_db: float


@strawberry.input
class TextInput:
    text: str
    x: int = 0
    y: int = 0
    size: int = 32
    color: str = "white"
    start: float = 0
    end: float | None = None


@strawberry.input
class ConcatInput:
    video_id: strawberry.ID


@strawberry.input(one_of=True, description="One edit: set exactly one key.")
class OpInput:
    trim: TrimInput | None = strawberry.UNSET
    speed: SpeedInput | None = strawberry.UNSET
    crop: CropInput | None = strawberry.UNSET
    rotate: RotateInput | None = strawberry.UNSET
    flip: FlipInput | None = strawberry.UNSET
    brightness: BrightnessInput | None = strawberry.UNSET
    contrast: ContrastInput | None = strawberry.UNSET
    saturation: SaturationInput | None = strawberry.UNSET
    gaussian_blur: GaussianBlurInput | None = strawberry.UNSET
    grayscale: bool | None = strawberry.UNSET
    fade: FadeInput | None = strawberry.UNSET
    volume: VolumeInput | None = strawberry.UNSET
    mute: bool | None = strawberry.UNSET
    text: TextInput | None = strawberry.UNSET
    concat: ConcatInput | None = strawberry.UNSET


_BY_FIELD = {ops.graphql_field(name): name for name in ops.VOCABULARY}


def to_raw(op: OpInput) -> dict[str, Any]:
    """The ``{"type", "params"}`` form the domain validates, from the one key that is set."""
    for f in dataclasses.fields(op):
        value = getattr(op, f.name)
        if value is strawberry.UNSET or value is None:
            continue
        op_type = _BY_FIELD[to_camel(f.name)]
        if isinstance(value, bool):
            # grayscale / mute: true applies the op; false is not an edit at all.
            return {"type": op_type, "params": {"enabled": value}}
        params = {
            to_camel(k): (v.value if isinstance(v, Enum) else v)
            for k, v in dataclasses.asdict(value).items()
            if v is not None
        }
        return {"type": op_type, "params": params}
    return {"type": None, "params": {}}

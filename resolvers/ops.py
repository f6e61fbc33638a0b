"""The op vocabulary: one pydantic model per op, and validation against the frame it edits."""

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from models.db import canonical_json
from resolvers import colors, ids
from resolvers.errors import OpError
from resolvers.probe import MIN_DIMENSION

COLOR = re.compile(r"^(#[0-9a-fA-F]{6}|[A-Za-z]{3,20})$")
# Validation context of params as a client sent them: rows are named by public ids.
SENT = {"sent": True}


@dataclass(frozen=True)
class Frame:
    """What the picture and timeline look like at some point in the op list."""

    width: int
    height: int
    duration: float


@dataclass(frozen=True)
class Limits:
    """What one batch may hold and what a version may become (defaults: the settings')."""

    ops_per_batch: int = 100
    ops_per_version: int = 1000
    timeline_s: float = 4 * 3600.0
    # 8K DCI in either orientation: the largest standard frame.
    frame_pixels: int = 8192 * 4320


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class RowRef:
    """Marks a param that names a row: stored as the row's key (history must not depend on
    how the API spells ids), sent and shown as its public id."""

    kind: str


def _row_key(kind: str) -> BeforeValidator:
    def key_of(value: object, info: ValidationInfo) -> object:
        if not (isinstance(info.context, dict) and info.context.get("sent")):
            return value  # stored params hold the key itself
        if not isinstance(value, str) or len(value) > 100:
            raise ValueError(f"give the id of one of your {kind.lower()}s (a string)")
        decoded = ids.decode_any(value)
        if decoded is None or decoded[0] != kind:
            raise ValueError(f"{kind.lower()} {value} was not found")
        return decoded[1]

    return BeforeValidator(key_of)


VideoRef = Annotated[
    int,
    RowRef("Video"),
    _row_key("Video"),
    WithJsonSchema({"maxLength": 100, "minLength": 1, "type": "string"}),
    Field(ge=1),
]


class OpProblem(Exception):
    """An op that does not fit the frame it applies to."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class Op(BaseModel):
    """Base of every op: params are camelCase in JSON and GraphQL, extra keys are refused."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        allow_inf_nan=False,  # JSON may spell them (NaN, Infinity); no op means them
    )
    type: ClassVar[str]
    description: ClassVar[str]

    def apply(self, frame: Frame, concat_durations: dict[int, float]) -> Frame:
        """The frame after this op; ``OpProblem`` if the op does not fit."""
        return frame


class Trim(Op):
    type = "trim"
    description = "Keep only the part between start and end (seconds on the current timeline)."
    start: float = Field(ge=0)
    end: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "Trim":
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def apply(self, frame: Frame, concat_durations: dict[int, float]) -> Frame:
        if self.end > frame.duration + 1e-6:
            raise OpProblem(
                "end", f"end {self.end:g} s is past the end of the video ({frame.duration:g} s)"
            )
        return replace(frame, duration=self.end - self.start)


class Speed(Op):
    type = "speed"
    description = "Play faster or slower, audio included (factor 0.25 to 4)."
    factor: float = Field(ge=0.25, le=4)

    def apply(self, frame: Frame, concat_durations: dict[int, float]) -> Frame:
        return replace(frame, duration=frame.duration / self.factor)


class Crop(Op):
    type = "crop"
    description = "Keep a rectangle of the picture (pixels of the frame as it is at this point)."
    x: int = Field(ge=0)
    y: int = Field(ge=0)
    # A version is a video editgraph would accept as an upload: 16 px a side at least.
    width: int = Field(ge=MIN_DIMENSION)
    height: int = Field(ge=MIN_DIMENSION)

    def apply(self, frame: Frame, concat_durations: dict[int, float]) -> Frame:
        if self.x + self.width > frame.width:
            raise OpProblem(
                "width", f"x + width = {self.x + self.width} is outside the {frame.width} px frame"
            )
        if self.y + self.height > frame.height:
            raise OpProblem(
                "height",
                f"y + height = {self.y + self.height} is outside the {frame.height} px frame",
            )
        return replace(frame, width=self.width, height=self.height)


class Rotate(Op):
    type = "rotate"
    description = "Rotate clockwise by 90, 180 or 270 degrees."
    degrees: Literal[90, 180, 270]

    def apply(self, frame: Frame, concat_durations: dict[int, float]) -> Frame:
        if self.degrees == 180:
            return frame
        return replace(frame, width=frame.height, height=frame.width)


class Ranged(Op):
    """An effect that may act on a stretch of the timeline only: ``start`` and ``end`` in
    seconds of the timeline it edits; without them it acts on the whole timeline."""

    start: float | None = Field(default=None, ge=0, description="seconds; default: the start")
    end: float | None = Field(default=None, gt=0, description="seconds; default: the end")

    @model_validator(mode="after")
    def _ordered_range(self) -> "Ranged":
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def apply(self, frame: Frame, concat_durations: dict[int, float]) -> Frame:
        if self.end is not None and self.end > frame.duration + 1e-6:
            raise OpProblem(
                "end", f"end {self.end:g} s is past the end of the video ({frame.duration:g} s)"
            )
        if self.start is not None and self.start >= frame.duration:
            raise OpProblem(
                "start",
                f"start {self.start:g} s is not before the end of the video ({frame.duration:g} s)",
            )
        return frame

    def span(self, duration: float) -> tuple[float, float]:
        """Where the effect acts, in seconds of the timeline it edits."""
        return self.start or 0.0, duration if self.end is None else self.end


class Flip(Ranged):
    type = "flip"
    description = "Mirror the picture along an axis: horizontal or vertical."
    axis: Literal["horizontal", "vertical"]


class Brightness(Ranged):
    type = "brightness"
    description = "Lighten or darken (-100 to 100)."
    brightness: float = Field(ge=-100, le=100)


class Contrast(Ranged):
    type = "contrast"
    description = "Raise or lower contrast (-100 to 100)."
    contrast: float = Field(ge=-100, le=100)


class Saturation(Ranged):
    type = "saturation"
    description = "Raise or lower colour saturation (-100 to 100)."
    saturation: float = Field(ge=-100, le=100)


class GaussianBlur(Ranged):
    type = "gaussian-blur"
    description = "Blur the picture (radius 0.5 to 50 pixels)."
    radius: float = Field(ge=0.5, le=50)


class Toggle(Op):
    """An op without params; GraphQL sends it as ``true``, and ``false`` is no edit at all."""

    enabled: bool = Field(default=True, exclude=True)

    @field_validator("enabled")
    @classmethod
    def _on(cls, value: bool) -> bool:
        if not value:
            raise ValueError(f"{cls.type} takes true; false is not an edit, leave the op out")
        return value


class Grayscale(Toggle, Ranged):
    type = "grayscale"
    description = "Remove all colour."


class Fade(Op):
    type = "fade"
    description = "Fade in from black and out to black, audio included (seconds each)."
    in_seconds: float = Field(default=0, ge=0)
    out_seconds: float = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _some(self) -> "Fade":
        if self.in_seconds == 0 and self.out_seconds == 0:
            raise ValueError("give inSeconds or outSeconds")
        return self

    def apply(self, frame: Frame, concat_durations: dict[int, float]) -> Frame:
        if self.in_seconds + self.out_seconds > frame.duration + 1e-6:
            raise OpProblem(
                "outSeconds",
                f"the fades last {self.in_seconds + self.out_seconds:g} s, longer than the "
                f"video ({frame.duration:g} s)",
            )
        return frame


class Volume(Ranged):
    type = "volume"
    description = "Change loudness in decibels (-60 to 20)."
    gain_db: float = Field(ge=-60, le=20)


class Mute(Toggle, Ranged):
    type = "mute"
    description = "Silence the audio."


class Text(Op):
    type = "text"
    description = "Draw text at x, y (pixels) in a size and colour, between start and end."
    text: str = Field(min_length=1, max_length=500)
    x: int = Field(default=0, ge=0)
    y: int = Field(default=0, ge=0)
    size: int = Field(default=32, ge=4, le=512)
    color: str = Field(
        default="white",
        pattern=COLOR.pattern,
        description="#rrggbb or a colour name ffmpeg knows (ffmpeg -colors), e.g. gold",
    )
    start: float = Field(default=0, ge=0)
    end: float | None = Field(default=None, gt=0)

    @field_validator("color")
    @classmethod
    def _known(cls, value: str) -> str:
        if not colors.is_colour(value):
            raise ValueError(f"{value!r} is not a colour: give #rrggbb or a name like white")
        return value

    @model_validator(mode="after")
    def _clean(self) -> "Text":
        if any(not ch.isprintable() for ch in self.text):
            raise ValueError("text must not contain control characters")
        if self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def apply(self, frame: Frame, concat_durations: dict[int, float]) -> Frame:
        if self.x >= frame.width or self.y >= frame.height:
            raise OpProblem(
                "x" if self.x >= frame.width else "y",
                f"({self.x}, {self.y}) is outside the {frame.width}x{frame.height} frame",
            )
        if self.end is not None and self.end > frame.duration + 1e-6:
            raise OpProblem(
                "end", f"end {self.end:g} s is past the end of the video ({frame.duration:g} s)"
            )
        return frame

    def span(self, duration: float) -> tuple[float, float]:
        """Where the text shows, in seconds of the timeline it edits."""
        return self.start, duration if self.end is None else self.end


class Concat(Op):
    type = "concat"
    description = "Append another of your videos at the end (scaled to this frame)."
    video_id: VideoRef

    def apply(self, frame: Frame, concat_durations: dict[int, float]) -> Frame:
        other = concat_durations.get(self.video_id)
        if other is None:
            raise OpProblem("videoId", f"video {ids.encode('Video', self.video_id)} was not found")
        return replace(frame, duration=frame.duration + other)


VOCABULARY: dict[str, type[Op]] = {
    cls.type: cls
    for cls in (
        Trim,
        Speed,
        Crop,
        Rotate,
        Flip,
        Brightness,
        Contrast,
        Saturation,
        GaussianBlur,
        Grayscale,
        Fade,
        Volume,
        Mute,
        Text,
        Concat,
    )
}


def graphql_field(op_type: str) -> str:
    """The OpInput field for an op type: ``gaussian-blur`` is ``gaussianBlur``."""
    head, *rest = op_type.split("-")
    return head + "".join(part.capitalize() for part in rest)


def params_schema(op: type[Op]) -> dict[str, Any]:
    """The JSON Schema of an op's params, as clients send them."""
    return op.model_json_schema(by_alias=True)


def stored(op: Op) -> dict[str, Any]:
    """The canonical stored form, the seed's own shape: ``{"type": …, "params": {…}}``;
    a param naming a row holds the row's key."""
    return {"type": op.type, "params": op.model_dump(mode="json", by_alias=True, exclude_none=True)}


def shown(op_type: str, params: dict[str, Any]) -> dict[str, Any]:
    """Stored params as clients send them: each row a param names, by its public id."""
    model = VOCABULARY.get(op_type)
    if model is None:
        return params
    public = dict(params)
    for field in model.model_fields.values():
        ref = next((m for m in field.metadata if isinstance(m, RowRef)), None)
        key = field.alias or ""
        if ref is not None and isinstance(public.get(key), int):
            public[key] = ids.encode(ref.kind, public[key])
    return public


ROOT_HASH = hashlib.sha256(b"editgraph:ops:v1").hexdigest()


def chain_hash(previous: str, stored_ops: list[dict[str, Any]]) -> str:
    """Extend a version's op hash by more ops; op by op, so batching does not matter.

    A version's hash is fixed when the version is written: render content keys are built
    from it, and a revert copies it. A migration that rewrites stored params (0006) keeps
    the hashes, so they name the same edits as before; they are not recomputed from rows."""
    for op in stored_ops:
        previous = hashlib.sha256(f"{previous}\n{canonical_json(op)}".encode()).hexdigest()
    return previous


def parse(raw_ops: list[dict[str, Any]]) -> tuple[list[Op | None], list[OpError]]:
    """Type-check a batch of ``{"type", "params"}`` dicts as a client sent them (rows named
    by public ids); every problem is reported, and an op that does not parse is None in its
    place, so the frame checks of the others keep their indexes."""
    ops: list[Op | None] = []
    errors: list[OpError] = []
    for index, raw in enumerate(raw_ops):
        kind = raw.get("type")
        model = VOCABULARY.get(kind) if isinstance(kind, str) else None
        if model is None:
            ops.append(None)
            errors.append(OpError(index, "type", f"unknown op type {kind!r}"))
            continue
        try:
            ops.append(model.model_validate(raw.get("params") or {}, context=SENT))
        except ValidationError as exc:
            ops.append(None)
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"]) or None
                errors.append(OpError(index, loc, err["msg"].removeprefix("Value error, ")))
    if not raw_ops:
        errors.append(OpError(0, None, "a batch needs at least one op"))
    return ops, errors


def check_counts(*, batch: int, existing: int, limits: Limits) -> list[OpError]:
    """A batch over the per-batch cap, or one that takes a version past its op cap."""
    if batch > limits.ops_per_batch:
        return [
            OpError(
                limits.ops_per_batch,
                None,
                f"a batch may hold at most {limits.ops_per_batch} ops; this one has {batch}",
            )
        ]
    if existing + batch > limits.ops_per_version:
        return [
            OpError(
                max(0, limits.ops_per_version - existing),
                None,
                f"a version may have at most {limits.ops_per_version} ops and this one has "
                f"{existing} already; revert to an earlier version or start a new project",
            )
        ]
    return []


# The param that makes an op lengthen or shorten the timeline, named when it goes too far.
_LENGTHENS: dict[type[Op], str] = {Speed: "factor", Concat: "videoId"}
_SHORTENS: dict[type[Op], str] = {Speed: "factor", Trim: "end"}
# The shortest version: a few frames at any common rate (a shorter trim may hold no frame).
MIN_DURATION_S = 0.1


def _bounded(op: Op, before: Frame, after: Frame, limits: Limits) -> None:
    """``OpProblem`` if the op takes the version past what a version may become."""
    if after.duration > limits.timeline_s + 1e-6 and after.duration > before.duration:
        raise OpProblem(
            _LENGTHENS.get(type(op)),
            f"the video would last {_clock(after.duration)}, longer than the "
            f"{_clock(limits.timeline_s)} a version may last",
        )
    if after.duration < MIN_DURATION_S - 1e-9 and after.duration < before.duration:
        raise OpProblem(
            _SHORTENS.get(type(op)),
            f"the video would last {after.duration:.3g} s; a version lasts at least "
            f"{MIN_DURATION_S:g} s",
        )
    pixels = after.width * after.height
    # Only a crop makes the picture smaller: any other op on an oversized frame is refused.
    if pixels > limits.frame_pixels and pixels >= before.width * before.height:
        raise OpProblem(
            None,
            f"the picture is {after.width}x{after.height} ({pixels / 1e6:.1f} MP), more than "
            f"the {limits.frame_pixels / 1e6:.1f} MP a version may have; crop it first",
        )


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def check(
    ops: Sequence[Op | None],
    start: Frame,
    concat_durations: dict[int, float],
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[Frame, list[OpError]]:
    """Apply a new batch to the frame it edits, collecting each op that does not fit; an op
    that did not parse (None) is left out, and the ops after it are checked without it."""
    frame = start
    errors: list[OpError] = []
    for index, op in enumerate(ops):
        if op is None:
            continue
        try:
            after = op.apply(frame, concat_durations)
            _bounded(op, frame, after, limits)
            frame = after
        except OpProblem as problem:
            errors.append(OpError(index, problem.field, problem.message))
    return frame, errors

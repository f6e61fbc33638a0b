"""Segmented proxies, planned: a version's picture as a run of short segments, each named
by what it shows, so a segment rendered once is reused by every version that shows it.

The timeline is a list of pieces: a stretch of one source (the project's own, or an
appended video) played at some speed, with the picture ops that act on it. Segments are
placed in *source* time: frame ``m`` of a piece shows its source at ``m * speed / rate``
seconds, and segment ``j`` holds frames ``j*N … (j+1)*N - 1`` (N frames of about 2 s). A
trim moves a piece's ends but not this grid, so only the segments at a new cut change; an
appended clip adds its own segments; a revert names the same segments again.

Times of the ops are kept in *piece time*: ``v = source seconds / speed``. A trim leaves
them as they are, a speed change divides them by its factor, and a segment's key holds
them relative to its first frame, so the same look at the same frames has the same key
wherever it plays.
"""

import hashlib
import math
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from jobs.edl import frame_rate, segment_frames
from models.db import canonical_json
from resolvers import ops
from resolvers.presets import Preset

# Part of every segment key: bump it when the segment encoder's output changes.
RENDERER = "editgraph-segment-1"
_EPS = 1e-6


@dataclass(frozen=True)
class Look:
    """The picture where an op acts: the stream's size in pixels, and pixels per pixel of
    the logical frame (the 480p copy is smaller than the original)."""

    width: int
    height: int
    sx: float
    sy: float


@dataclass(frozen=True)
class Step:
    """One picture op on a piece, with the look it meets and where it acts (piece time;
    None: the whole piece)."""

    op: ops.Op
    look: Look
    span: tuple[float, float] | None = None


@dataclass(frozen=True)
class Piece:
    """A stretch ``[start, end)`` of one source, in source seconds, played at ``speed``."""

    source: int  # 0: the project's source; else the id of the appended video
    start: float
    end: float
    speed: float
    fit: tuple[int, int] | None  # an appended clip is fitted into the frame it joins
    steps: tuple[Step, ...] = ()

    @property
    def length(self) -> float:
        """Seconds on the timeline."""
        return (self.end - self.start) / self.speed

    @property
    def origin(self) -> float:
        """Piece time of the first instant shown."""
        return self.start / self.speed


@dataclass(frozen=True)
class Segment:
    """Frames ``[first, last)`` of one piece, and the key of what they show."""

    piece: int
    first: int
    last: int
    key: str

    @property
    def frames(self) -> int:
        return self.last - self.first


@dataclass(frozen=True)
class Plan:
    """A version's picture: its pieces, its segments in playback order, its frame rate."""

    pieces: tuple[Piece, ...]
    segments: tuple[Segment, ...]
    rate: Fraction
    per_segment: int  # N: frames in a whole segment
    look: Look  # the picture at the end of the op list (what the encoder gets)

    def runs(self, missing: set[str], among: list[Segment] | None = None) -> list[list[Segment]]:
        """Consecutive segments to encode (of ``among``, by default all), grouped so one
        ffmpeg makes each group: the same piece, adjacent frames. Timeline order, so the
        first segment comes first."""
        runs: list[list[Segment]] = []
        for segment in self.segments if among is None else among:
            if segment.key not in missing:
                continue
            last = runs[-1][-1] if runs else None
            if last is not None and last.piece == segment.piece and last.last == segment.first:
                runs[-1].append(segment)
            else:
                runs.append([segment])
        return runs


def split(run: list[Segment], parts: int, least: int) -> list[list[Segment]]:
    """A run cut into up to ``parts`` parts of at least ``least`` segments each, so idle
    workers can each encode one (a shorter run stays whole)."""
    count = min(parts, len(run) // max(1, least))
    if count < 2:
        return [run]
    size = -(-len(run) // count)
    return [run[at : at + size] for at in range(0, len(run), size)]


def timeline(
    op_list: list[ops.Op],
    frame: ops.Frame,
    stream: tuple[int, int],
    clips: dict[int, tuple[float, int, int]],
) -> tuple[list[Piece], Look]:
    """The pieces a version's ops make of its source (``frame`` logical, ``stream`` pixels
    of the file rendered from; ``clips`` the duration and pixels of each appended video),
    and the picture's look at the end."""
    look = Look(stream[0], stream[1], stream[0] / frame.width, stream[1] / frame.height)
    pieces = [Piece(0, 0.0, frame.duration, 1.0, None)]
    for op in op_list:
        length = sum(p.length for p in pieces)
        match op:
            case ops.Trim(start=start, end=end):
                pieces = _trim(pieces, start, end)
            case ops.Speed(factor=factor):
                pieces = [_faster(p, factor) for p in pieces]
            case ops.Concat(video_id=video_id):
                seconds, width, height = clips[video_id]
                # A clip of the frame's own size is not fitted: its segments are the ones
                # it has as a project of its own.
                fit = (
                    None
                    if (width, height) == (look.width, look.height)
                    else (look.width, look.height)
                )
                pieces = [*pieces, Piece(video_id, 0.0, seconds, 1.0, fit)]
            case ops.Volume() | ops.Mute():
                pass  # sound only: the audio track has it
            case ops.Fade(in_seconds=in_s, out_seconds=out_s):
                if in_s > 0:
                    fade_in = ops.Fade(in_seconds=in_s)
                    pieces = _act(pieces, Step(fade_in, look), (0.0, in_s), clip=False)
                if out_s > 0:
                    fade_out = ops.Fade(out_seconds=out_s)
                    span = (length - out_s, length)
                    pieces = _act(pieces, Step(fade_out, look), span, clip=False)
            case ops.Text() | ops.Ranged():
                span = op.span(length)
                whole = span[0] <= _EPS and span[1] >= length - _EPS
                plain = _unranged(op)
                pieces = _act(pieces, Step(plain, look), None if whole else span, clip=True)
            case ops.Crop() | ops.Rotate():
                pieces = [replace(p, steps=(*p.steps, Step(op, look))) for p in pieces]
                look = _reshaped(op, look)
            case _:
                raise ValueError(f"no segment rule for op {op.type!r}")
    return pieces, look


def _unranged(op: ops.Op) -> ops.Op:
    """The op without its place on the timeline (a step's span holds that)."""
    if isinstance(op, ops.Text):
        return op.model_copy(update={"start": 0.0, "end": None})
    return op.model_copy(update={"start": None, "end": None})


def _reshaped(op: ops.Op, look: Look) -> Look:
    match op:
        case ops.Crop(width=width, height=height):
            return replace(
                look,
                width=max(2, min(look.width, round(width * look.sx))),
                height=max(2, min(look.height, round(height * look.sy))),
            )
        case ops.Rotate(degrees=90 | 270):
            return Look(look.height, look.width, look.sy, look.sx)
    return look


def _trim(pieces: list[Piece], start: float, end: float) -> list[Piece]:
    kept: list[Piece] = []
    at = 0.0
    for piece in pieces:
        begin, finish = max(start, at), min(end, at + piece.length)
        if finish - begin > _EPS:
            kept.append(
                replace(
                    piece,
                    start=piece.start + (begin - at) * piece.speed,
                    end=piece.start + (finish - at) * piece.speed,
                )
            )
        at += piece.length
    return kept


def _faster(piece: Piece, factor: float) -> Piece:
    steps = tuple(
        replace(s, span=None if s.span is None else (s.span[0] / factor, s.span[1] / factor))
        for s in piece.steps
    )
    return replace(piece, speed=piece.speed * factor, steps=steps)


def _act(
    pieces: list[Piece], step: Step, span: tuple[float, float] | None, *, clip: bool
) -> list[Piece]:
    """``step`` added to every piece the timeline stretch ``span`` touches. A fade keeps its
    whole span (its ramp is measured from its start); other spans are clipped to the piece."""
    out: list[Piece] = []
    at = 0.0
    for piece in pieces:
        end_at = at + piece.length
        if span is None:
            out.append(replace(piece, steps=(*piece.steps, step)))
        elif span[0] < end_at - _EPS and span[1] > at + _EPS:
            lo, hi = (max(span[0], at), min(span[1], end_at)) if clip else span
            local = (piece.origin + lo - at, piece.origin + hi - at)
            out.append(replace(piece, steps=(*piece.steps, replace(step, span=local))))
        else:
            out.append(piece)
        at = end_at
    return out


def plan(
    *,
    op_list: list[ops.Op],
    frame: ops.Frame,
    stream: tuple[int, int],
    fps: float,
    clips: dict[int, tuple[float, int, int]],
    sources: dict[int, str],
    preset: Preset,
) -> Plan:
    """The segments of a version: ``sources`` names each source's bytes (SHA-256) by piece
    source number (0: the project's own)."""
    pieces, look = timeline(op_list, frame, stream, clips)
    rate = Fraction(frame_rate(fps))
    per = segment_frames(fps)
    segments: list[Segment] = []
    for index, piece in enumerate(pieces):
        first, last = frame_range(piece, rate)
        for j in range(first // per, (last - 1) // per + 1 if last > first else first // per):
            lo, hi = max(first, j * per), min(last, (j + 1) * per)
            key = segment_key(piece, lo, hi, rate, sources[piece.source], preset)
            segments.append(Segment(index, lo, hi, key))
    return Plan(tuple(pieces), tuple(segments), rate, per, look)


def frame_range(piece: Piece, rate: Fraction) -> tuple[int, int]:
    """Frames ``[first, last)`` of a piece on its source's grid."""
    first = math.ceil(piece.origin * rate - _EPS)
    last = math.ceil(piece.end / piece.speed * rate - _EPS)
    return first, max(first, last)


def _micro(seconds: float) -> int:
    return round(seconds * 1_000_000)


def steps_within(piece: Piece, first: int, last: int, rate: Fraction) -> list[Step]:
    """The piece's steps that act on frames ``[first, last)``, spans made relative to the
    first frame: a span covering them all is dropped (the op acts on every frame)."""
    begin, end = first / rate, last / rate
    kept: list[Step] = []
    for step in piece.steps:
        if step.span is None:
            kept.append(step)
            continue
        lo, hi = step.span
        if hi <= begin + _EPS or lo >= end - _EPS:
            continue  # acts elsewhere
        fade = isinstance(step.op, ops.Fade)
        if not fade and lo <= begin + _EPS and hi >= end - _EPS:
            kept.append(replace(step, span=None))
            continue
        kept.append(replace(step, span=(lo - float(begin), hi - float(begin))))
    return kept


def segment_key(
    piece: Piece, first: int, last: int, rate: Fraction, sha256: str, preset: Preset
) -> str:
    """What a segment shows, hashed: the renderer and preset, the source bytes, its frames
    on the source grid and speed, and the ops acting on them relative to its first frame."""
    described: dict[str, Any] = {
        "renderer": RENDERER,
        "preset": preset.key,
        "source": sha256,
        "rate": str(rate),
        "speed": _micro(piece.speed),
        "frames": [first, last],
        "fit": list(piece.fit) if piece.fit else None,
        "steps": [
            {
                "op": ops.stored(step.op),
                "look": [
                    step.look.width,
                    step.look.height,
                    _micro(step.look.sx),
                    _micro(step.look.sy),
                ],
                "span": None if step.span is None else [_micro(t) for t in step.span],
            }
            for step in steps_within(piece, first, last, rate)
        ],
    }
    return hashlib.sha256(canonical_json(described).encode()).hexdigest()

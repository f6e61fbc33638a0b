"""A version's edit as a timeline other editing tools read: OpenTimelineIO (lossless), or a
CMX 3600 EDL or Final Cut Pro XML (lossy: the answer lists what the format cannot hold).

The op list becomes: trims the clips' source ranges; speed a LinearTimeWarp on each clip;
concat one more clip; fades transitions from and to a gap; text a marker and an effect;
every other op an Effect. Each element that stands for an op carries the op (and its place
in the list) in its ``editgraph`` metadata, so reading an OTIO file back gives the op list."""

from dataclasses import dataclass, field
from typing import Any

import opentimelineio as otio
from sqlmodel import col, select

from models.db import Database
from models.tables import Blob, EditOperation, Project, Video
from resolvers import ids
from resolvers.diffs import describe
from resolvers.errors import NotFoundError
from resolvers.projects import get_project
from resolvers.users import Actor
from resolvers.versions import effective_in

RT, TR = otio.opentime.RationalTime, otio.opentime.TimeRange
ADAPTERS = {"OTIO": "otio_json", "CMX3600_EDL": "cmx_3600", "FCP_XML": "fcp_xml"}
KEY = "editgraph"
# Ops that become clips, ranges or warps: what an EDL or FCP XML keeps (speed: in part).
STRUCTURAL = {"trim", "concat", "speed"}


@dataclass(frozen=True)
class Source:
    """A video a timeline's clips play: its name, bytes and length."""

    name: str
    sha256: str
    duration: float
    fps: float


@dataclass
class _Piece:
    source: Source
    start: float  # seconds of the source
    end: float
    speed: float = 1.0
    op: dict[str, Any] | None = None  # the concat that brought it, if one did

    @property
    def length(self) -> float:
        """Seconds it lasts on the timeline."""
        return (self.end - self.start) / self.speed


@dataclass
class Exported:
    format: str
    text: str
    lost: list[str] = field(default_factory=list)


def _record(index: int, op: dict[str, Any]) -> dict[str, Any]:
    return {KEY: {"index": index, "op": op}}


def _trim(pieces: list[_Piece], start: float, end: float) -> list[_Piece]:
    """The pieces of the timeline between ``start`` and ``end`` seconds."""
    kept, at = [], 0.0
    for piece in pieces:
        begin, finish = at, at + piece.length
        at = finish
        low, high = max(begin, start), min(finish, end)
        if high <= low:
            continue
        kept.append(
            _Piece(
                piece.source,
                piece.start + (low - begin) * piece.speed,
                piece.start + (high - begin) * piece.speed,
                piece.speed,
                piece.op,
            )
        )
    return kept


def build(
    first: Source, effective: list[dict[str, Any]], sources: dict[int, Source]
) -> otio.schema.Timeline:
    """The OTIO timeline of an effective op list (stored form) over ``first``; ``sources``
    are the concat targets by video id."""
    pieces = [_Piece(first, 0.0, first.duration)]
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    fades: list[tuple[int, dict[str, Any]]] = []
    rate = round(first.fps) or 25
    for index, op in enumerate(effective):
        kind, params = op["type"], op["params"]
        if kind == "trim":
            pieces = _trim(pieces, float(params["start"]), float(params["end"]))
            track.metadata.setdefault(KEY, {}).setdefault("trims", []).append(
                {"index": index, "op": op}
            )
        elif kind == "speed":
            for piece in pieces:
                piece.speed *= float(params["factor"])
            track.metadata.setdefault(KEY, {}).setdefault("speeds", []).append(
                {"index": index, "op": op}
            )
        elif kind == "concat":
            target = sources[int(params["videoId"])]
            pieces.append(_Piece(target, 0.0, target.duration, 1.0, _record(index, op)))
        elif kind == "fade":
            fades.append((index, op))
        elif kind == "text":
            end = params.get("end")
            start = float(params.get("start") or 0)
            length = (float(end) - start) if end is not None else 1.0 / rate
            track.markers.append(
                otio.schema.Marker(
                    name=str(params.get("text", "")),
                    marked_range=TR(RT(start * rate, rate), RT(length * rate, rate)),
                    metadata=_record(index, op),
                )
            )
            track.effects.append(
                otio.schema.Effect(effect_name="text", metadata={KEY: {"marker": index}})
            )
        else:
            track.effects.append(otio.schema.Effect(effect_name=kind, metadata=_record(index, op)))
    for piece in pieces:
        reference = otio.schema.ExternalReference(
            target_url=piece.source.name,
            available_range=TR(RT(0, rate), RT(round(piece.source.duration * rate), rate)),
            metadata={KEY: {"sha256": piece.source.sha256}},
        )
        clip = otio.schema.Clip(
            name=piece.source.name,
            media_reference=reference,
            source_range=TR(
                RT(round(piece.start * rate), rate),
                RT(round((piece.end - piece.start) * rate), rate),
            ),
            metadata=piece.op or {},
        )
        if piece.speed != 1.0:
            clip.effects.append(otio.schema.LinearTimeWarp(time_scalar=piece.speed))
        track.append(clip)
    for index, op in fades:
        params = op["params"]
        fade_in = float(params.get("inSeconds") or 0)  # the stored form's names
        fade_out = float(params.get("outSeconds") or 0)
        meta = _record(index, op)
        if fade_in:
            track.insert(0, otio.schema.Gap(source_range=TR(RT(0, rate), RT(0, rate))))
            track.insert(
                1,
                otio.schema.Transition(
                    transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                    in_offset=RT(0, rate),
                    out_offset=RT(round(fade_in * rate), rate),
                    metadata=meta,
                ),
            )
            meta = {KEY: {"fade": index}}  # the op is recorded once
        if fade_out:
            track.append(
                otio.schema.Transition(
                    transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                    in_offset=RT(round(fade_out * rate), rate),
                    out_offset=RT(0, rate),
                    metadata=meta,
                )
            )
            track.append(otio.schema.Gap(source_range=TR(RT(0, rate), RT(0, rate))))
    timeline = otio.schema.Timeline(name=first.name)
    timeline.tracks.append(track)
    return timeline


def ops_of(timeline: otio.schema.Timeline) -> list[dict[str, Any]]:
    """The op list an editgraph OTIO timeline stands for (the round trip of ``build``)."""
    found: dict[int, dict[str, Any]] = {}

    def take(metadata: Any) -> None:
        record = _plain(metadata).get(KEY) if metadata is not None else None
        if isinstance(record, dict) and "op" in record and "index" in record:
            found[int(record["index"])] = _plain(record["op"])

    for track in timeline.tracks:
        mine = _plain(track.metadata).get(KEY) or {}
        for name in ("trims", "speeds"):
            for record in mine.get(name, []):
                found[int(record["index"])] = _plain(record["op"])
        for effect in track.effects:
            take(effect.metadata)
        for marker in track.markers:
            take(marker.metadata)
        for item in track:
            take(item.metadata)
    return [found[i] for i in sorted(found)]


def _plain(value: Any) -> Any:
    """OTIO's metadata containers as plain dicts and lists (numbers as they were)."""
    if isinstance(value, str):
        return value
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "__iter__"):
        return [_plain(v) for v in value]
    return value


def lost_in(fmt: str, effective: list[dict[str, Any]]) -> list[str]:
    """What an EDL or FCP XML of this op list cannot hold, in plain words."""
    if fmt == "OTIO":
        return []
    lost = []
    for op in effective:
        kind, params = op["type"], op["params"]
        if kind == "speed" and fmt == "CMX3600_EDL":
            lost.append(f"speed {float(params['factor']):g}\u00d7 kept as M2 only")
        elif kind not in STRUCTURAL or (kind == "speed" and fmt == "FCP_XML"):
            lost.append(describe(kind, params))
    return lost


async def export(
    *, db: Database, actor: Actor, project_id: int, version: int | None, fmt: str
) -> Exported:
    """A version (default: current) of one of the actor's projects as a timeline in ``fmt``."""
    project = await get_project(db=db, actor=actor, project_id=project_id)
    number = project.current_version if version is None else version
    async with db.read() as session:
        rows = await effective_in(session, project_id, number)
        exists = await session.get(Project, project_id)
        if exists is None or number < 0 or number > project.current_version:
            raise NotFoundError(f"Version {number} of project", ids.encode("Project", project_id))
        wanted = {project.source_video_id} | {r.video_id for r in rows if r.video_id is not None}
        found = (
            await session.exec(
                select(Video, Blob.sha256)
                .join(Blob, col(Blob.id) == col(Video.blob_id))
                .where(col(Video.id).in_(wanted))
            )
        ).all()
    sources = {v.id: Source(v.filename, sha, v.duration, v.fps) for v, sha in found if v.id}
    effective = [_stored(row) for row in rows]
    timeline = build(sources[project.source_video_id], effective, sources)
    text = otio.adapters.write_to_string(for_format(fmt, timeline), ADAPTERS[fmt])
    return Exported(fmt, text, lost_in(fmt, effective))


def _stored(row: EditOperation) -> dict[str, Any]:
    params = dict(row.params)
    if row.type == "concat" and row.video_id is not None:
        params["videoId"] = row.video_id
    return {"type": row.type, "params": params}


def for_format(fmt: str, timeline: otio.schema.Timeline) -> otio.schema.Timeline:
    """What a lossy format's adapter can take: no zero-length gaps or transitions (the CMX
    adapter raises on a fade-out to a gap at the end), no track effects."""
    if fmt == "OTIO":
        return timeline
    plain = otio.schema.Timeline(name=timeline.name)
    for track in timeline.tracks:
        copy = otio.schema.Track(name=track.name, kind=track.kind)
        for item in track:
            if isinstance(item, otio.schema.Clip):
                copy.append(item.deepcopy())
        plain.tracks.append(copy)
    return plain

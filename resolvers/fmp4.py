"""Fragmented MP4, at the box level: what segmented proxies need and nothing more.

A proxy segment is encoded as a self-contained fragmented MP4 (``ftyp moov moof mdat``).
It is kept as two parts: the initialisation section (``ftyp moov``), the same for every
segment of one encoder setting and frame size, and the media section (``moof mdat``). A
segment is cached by what it shows, not by where it plays, so its decode time is set when
it is served or assembled: ``placed`` rewrites the ``tfdt`` box of each fragment.
"""

import struct
from collections.abc import Iterator
from dataclasses import dataclass

_HEADER = struct.Struct(">I4s")
_CONTAINERS = {b"moof", b"traf", b"moov", b"trak", b"mdia"}


class NotFragmented(ValueError):
    """Bytes that are not the fragmented MP4 a segment encode writes."""


@dataclass(frozen=True)
class Box:
    kind: bytes
    start: int  # offset of the box header
    end: int  # offset just past the box
    header: int  # header length: 8, or 16 with a 64-bit size


def boxes(
    data: bytes | bytearray | memoryview, start: int = 0, end: int | None = None
) -> Iterator[Box]:
    """The boxes laid one after another in ``data[start:end]``."""
    end = len(data) if end is None else end
    offset = start
    while offset + 8 <= end:
        size, kind = _HEADER.unpack_from(data, offset)
        header = 8
        if size == 1:
            if offset + 16 > end:
                raise NotFragmented("a box header is cut short")
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:
            size = end - offset
        if size < header or offset + size > end:
            raise NotFragmented(f"box {kind!r} at {offset} runs past the end")
        yield Box(kind, offset, offset + size, header)
        offset += size
    if offset != end:
        raise NotFragmented("trailing bytes after the last box")


def split(data: bytes) -> tuple[bytes, bytes]:
    """(initialisation section, media section) of a self-contained fragmented MP4."""
    top = list(boxes(data))
    first = next((i for i, b in enumerate(top) if b.kind == b"moof"), None)
    if first is None or not any(b.kind == b"moov" for b in top[:first]):
        raise NotFragmented("no moov before the first moof")
    return data[: top[first].start], data[top[first].start :]


def _children(data: bytes | bytearray, box: Box) -> Iterator[Box]:
    return boxes(data, box.start + box.header, box.end)


def timescale(init: bytes) -> int:
    """The time scale of the (first) track: ``moov/trak/mdia/mdhd``."""
    for box in _walk(init, [b"moov", b"trak", b"mdia", b"mdhd"]):
        version = init[box.start + box.header]
        at = box.start + box.header + (20 if version == 1 else 12)
        return int(struct.unpack_from(">I", init, at)[0])
    raise NotFragmented("no mdhd in the initialisation section")


def _walk(data: bytes | bytearray, path: list[bytes]) -> Iterator[Box]:
    level: Iterator[Box] = boxes(data)
    for depth, kind in enumerate(path):
        found = [b for b in level if b.kind == kind]
        if depth == len(path) - 1:
            yield from found
            return
        level = (child for parent in found for child in _children(data, parent))


def decode_times(media: bytes) -> list[int]:
    """The base decode time of each fragment, in time-scale units."""
    return [_tfdt(media, box)[1] for box in _walk(media, [b"moof", b"traf", b"tfdt"])]


def duration(media: bytes, default_sample_duration: int | None = None) -> tuple[int, int]:
    """(samples, duration in time-scale units) of a media section, from its ``trun`` boxes.

    Sample durations are read from each ``trun``, else from the ``tfhd`` default."""
    samples = total = 0
    for traf in _walk(media, [b"moof", b"traf"]):
        default = default_sample_duration
        for child in _children(media, traf):
            body = child.start + child.header
            flags = int.from_bytes(media[body + 1 : body + 4], "big")
            if child.kind == b"tfhd":
                at = body + 8 + (8 if flags & 0x1 else 0) + (4 if flags & 0x2 else 0)
                if flags & 0x8:
                    default = struct.unpack_from(">I", media, at)[0]
            elif child.kind == b"trun":
                count = struct.unpack_from(">I", media, body + 4)[0]
                at = body + 8 + (4 if flags & 0x1 else 0) + (4 if flags & 0x4 else 0)
                per = sum(4 for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit)
                samples += count
                if flags & 0x100:
                    total += sum(
                        struct.unpack_from(">I", media, at + i * per)[0] for i in range(count)
                    )
                elif default is not None:
                    total += count * default
                else:
                    raise NotFragmented("a fragment's sample durations are not stated")
    return samples, total


def _tfdt(data: bytes | bytearray, box: Box) -> tuple[int, int]:
    """(version, base decode time) of a ``tfdt`` box."""
    body = box.start + box.header
    version = data[body]
    if version == 1:
        return 1, int(struct.unpack_from(">Q", data, body + 4)[0])
    return 0, int(struct.unpack_from(">I", data, body + 4)[0])


def placed(media: bytes, decode_time: int) -> bytes:
    """The media section moved to start at ``decode_time``: every fragment's ``tfdt`` is
    shifted by the same amount, so fragments inside the segment keep their spacing."""
    found = list(_walk(media, [b"moof", b"traf", b"tfdt"]))
    if not found:
        raise NotFragmented("no tfdt in the media section")
    shift = decode_time - _tfdt(media, found[0])[1]
    out = bytearray(media)
    for box in found:
        version, value = _tfdt(out, box)
        body = box.start + box.header
        if version == 1:
            struct.pack_into(">Q", out, body + 4, value + shift)
        elif 0 <= value + shift < 2**32:
            struct.pack_into(">I", out, body + 4, value + shift)
        else:
            raise NotFragmented("a 32-bit tfdt cannot hold this decode time")
    return bytes(out)


def avc_codec(init: bytes) -> str:
    """The RFC 6381 name of an H.264 track (``avc1.64001e``) from its ``avcC`` box, which
    players want in a master playlist; empty if there is none."""
    at = init.find(b"avcC")
    if at < 0 or at + 8 > len(init):
        return ""
    profile, compatibility, level = init[at + 5], init[at + 6], init[at + 7]
    return f"avc1.{profile:02x}{compatibility:02x}{level:02x}"

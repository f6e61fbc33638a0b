"""Test media, generated with ffmpeg's lavfi sources: seconds long, small frames."""

import struct
import subprocess
from pathlib import Path


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; fail the test if it fails."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def make_video(
    path: Path,
    *,
    seconds: float = 2.0,
    size: str = "160x120",
    rate: int = 25,
    audio: bool = True,
    pattern: str = "testsrc2",
) -> Path:
    """Encode an H.264 (+AAC) MP4 from a test pattern; returns ``path``."""
    sep = ":" if "=" in pattern else "="  # a pattern may carry its own options (color=c=black)
    args = ["-f", "lavfi", "-i", f"{pattern}{sep}size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    args += ["-c:a", "aac", "-shortest"] if audio else []
    ffmpeg(*args, str(path))
    return path


def make_hostile(folder: Path) -> dict[str, Path]:
    """Files that must be refused at upload, by name."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        files[name] = folder / f"{name}.mp4"
        files[name].write_bytes(data)

    def made(name: str, *args: str) -> bytes:
        path = folder / name
        ffmpeg(*args, str(path))
        return path.read_bytes()

    put("empty", b"")
    put("text", b"just some notes about my holiday\n" * 20)
    put("playlist", b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n")
    put("concat_list", b"ffconcat version 1.0\nfile '/etc/passwd'\n")
    put("truncated", make_video(folder / "whole.mp4", seconds=2).read_bytes()[:20_000])
    put("image", made("image.png", "-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1"))
    put("audio_only", made("audio.m4a", "-f", "lavfi", "-i", "sine=duration=1", "-f", "mp4"))
    wide = make_video(folder / "wide.mp4", seconds=0.4, size="8208x16", rate=5, audio=False)
    put("absurd_dimensions", wide.read_bytes())
    local_playlist = b"#EXTM3U\n#EXTINF:10.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
    put("avi_with_playlist", crafted_avi(16, 16, subtitle=local_playlist))
    put("claims_100000x100000", crafted_avi(100_000, 100_000))
    put(
        "zero_duration",
        made(
            "noframes.mp4",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x64:rate=5:duration=1",
            "-frames:v",
            "0",
            "-c:v",
            "libx264",
        ),
    )
    return files


def _chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def crafted_avi(width: int, height: int, subtitle: bytes | None = None) -> bytes:
    """A hand-built AVI of two raw 16x16 frames that may lie about its size and may carry a
    GAB2 subtitle (the shape of the known attack that hides a playlist in an AVI)."""
    frame = bytes([200, 50, 50]) * 16 * 16
    avih = struct.pack(
        "<14I", 40000, 0, 0, 0x10, 2, 0, 2 if subtitle else 1, 0, width, height, 0, 0, 0, 0
    )

    def strh(kind: bytes, size: int, w: int, h: int) -> bytes:
        return struct.pack(
            "<4s4sIHHIIIIIIIIhhhh",
            kind,
            b"\0" * 4,
            0,
            0,
            0,
            0,
            1,
            25,
            0,
            2,
            size,
            0xFFFFFFFF,
            0,
            0,
            0,
            w,
            h,
        )

    video = _chunk(b"strh", strh(b"vids", len(frame), 16, 16)) + _chunk(
        b"strf", struct.pack("<IiiHHIIiiII", 40, width, -height, 1, 24, 0, len(frame), 0, 0, 0, 0)
    )
    streams = _chunk(b"LIST", b"strl" + video)
    packets = b""
    if subtitle is not None:
        name = "sub".encode("utf-16-le") + b"\0\0"
        gab2 = (
            b"GAB2\0"
            + struct.pack("<HI", 2, len(name))
            + name
            + struct.pack("<HI", 4, len(subtitle))
            + subtitle
        )
        streams += _chunk(
            b"LIST",
            b"strl" + _chunk(b"strh", strh(b"txts", len(gab2), 0, 0)) + _chunk(b"strf", b""),
        )
        packets += _chunk(b"01tx", gab2)
    packets += _chunk(b"00db", frame) * 2
    body = (
        b"AVI "
        + _chunk(b"LIST", b"hdrl" + _chunk(b"avih", avih) + streams)
        + _chunk(b"LIST", b"movi" + packets)
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body

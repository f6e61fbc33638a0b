"""Test media, generated with ffmpeg's lavfi sources: seconds long, small frames."""

import struct
import subprocess
from pathlib import Path
from typing import Any


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; fail the test if it fails."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def make_video(
    path: Path,
    *,
    seconds: float = 2.0,
    size: str = "160x120",
    rate: int | str = 25,
    audio: bool = True,
    pattern: str = "testsrc2",
    sample_rate: int = 44100,
    channels: int = 1,
) -> Path:
    """Encode an H.264 (+AAC) MP4 from a test pattern; returns ``path``. ``rate`` may be a
    fraction ("30000/1001"); odd sizes are kept (yuv444p, which H.264 allows at any size)."""
    sep = ":" if "=" in pattern else "="  # a pattern may carry its own options (color=c=black)
    width, height = (int(side) for side in size.split("x"))
    # testsrc2 draws even sizes only: an odd one is cut from the next even size up.
    drawn = f"{width + width % 2}x{height + height % 2}"
    args = ["-f", "lavfi", "-i", f"{pattern}{sep}size={drawn}:rate={rate}:duration={seconds}"]
    if audio:
        sine = f"sine=frequency=440:sample_rate={sample_rate}:duration={seconds}"
        args += ["-f", "lavfi", "-i", sine]
    # yuv420p needs even sides; a phone or a screen recorder may well write odd ones.
    pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    args += ["-vf", f"format={pix_fmt},crop={width}:{height}:0:0"] if drawn != size else []
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", pix_fmt]
    args += ["-c:a", "aac", "-ac", str(channels), "-shortest"] if audio else []
    ffmpeg(*args, str(path))
    return path


# Sources as people bring them: film, PAL, NTSC (29.97 = 30000/1001) and 60 fps rates;
# landscape, portrait, 4:3 and odd sizes; no audio, mono or stereo at 44.1 or 48 kHz.
SOURCE_KINDS: dict[str, dict[str, Any]] = {
    "24fps-stereo-48k": {"rate": 24, "size": "128x72", "sample_rate": 48000, "channels": 2},
    "25fps-4x3-mono-44k": {"rate": 25, "size": "96x72", "sample_rate": 44100, "channels": 1},
    "29.97fps-stereo-44k": {
        "rate": "30000/1001",
        "size": "128x72",
        "sample_rate": 44100,
        "channels": 2,
    },
    "30fps-silent": {"rate": 30, "size": "128x72", "audio": False},
    "60fps-mono-48k": {"rate": 60, "size": "64x48", "sample_rate": 48000, "channels": 1},
    "portrait": {"rate": 30, "size": "72x128", "sample_rate": 48000, "channels": 2},
    "odd-size": {"rate": 25, "size": "75x57", "sample_rate": 48000, "channels": 1},
}


def make_kind(folder: Path, kind: str, *, seconds: float = 1.0) -> Path:
    """One of ``SOURCE_KINDS``, ``seconds`` long, as ``folder/<kind>.mp4``."""
    folder.mkdir(parents=True, exist_ok=True)
    return make_video(folder / f"{kind}.mp4", seconds=seconds, **SOURCE_KINDS[kind])


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

"""What counts as editable media: ffprobe's view of an upload, checked before it is stored."""

import asyncio
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from resolvers.errors import InvalidMediaError

# Container demuxers editgraph accepts, keyed by ffprobe's format_name: (demuxer, extension).
# Everything else (playlists, concat lists, images, text, raw streams) is refused at upload.
CONTAINERS: dict[str, tuple[str, str]] = {
    "mov,mp4,m4a,3gp,3g2,mj2": ("mov", "mp4"),
    "matroska,webm": ("matroska", "mkv"),
    "avi": ("avi", "avi"),
    "mpegts": ("mpegts", "ts"),
    "flv": ("flv", "flv"),
    "ogg": ("ogg", "ogv"),
    "mpeg": ("mpeg", "mpg"),
}
DEMUXERS = ",".join(sorted({d for d, _ in CONTAINERS.values()}))
# Single-picture codecs: a container holding only one of these is a still image, not a video.
IMAGE_CODECS = {"png", "bmp", "gif", "tiff", "webp", "jpegls", "ljpeg", "pam", "ppm", "pgm"}
MIN_DIMENSION = 16
MAX_DIMENSION = 8192
PROBE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Probe:
    """The facts about a source video that validation and rendering rely on."""

    demuxer: str
    extension: str
    duration: float
    width: int
    height: int
    fps: float
    video_codec: str
    audio_codec: str | None


def input_args(path: Path, demuxer: str | None = None) -> list[str]:
    """ffmpeg/ffprobe input options that keep a hostile file on the local disk."""
    pinned = ["-f", demuxer] if demuxer else []
    return [
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        DEMUXERS,
        *pinned,
        "-i",
        f"file:{path}",
    ]


async def _run(argv: list[str]) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT_S)
    except TimeoutError:
        raise InvalidMediaError("the file took too long to inspect; it may be damaged") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out, err


def _rate(text: str | None) -> float:
    try:
        value = Fraction(text or "0")
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(value) if value > 0 else 0.0


def _duration(fmt: dict[str, Any], stream: dict[str, Any]) -> float:
    for raw in (fmt.get("duration"), stream.get("duration")):
        try:
            if raw is not None and float(raw) > 0:
                return float(raw)
        except ValueError:
            continue
    return 0.0


async def probe(path: Path) -> Probe:
    """Inspect a file; ``InvalidMediaError`` says in plain words why it cannot be edited."""
    with path.open("rb") as fh:
        head = fh.read(4096)
    if not head:
        raise InvalidMediaError("the file is empty")
    if head.lstrip().startswith((b"#EXTM3U", b"ffconcat", b"file ")):
        raise InvalidMediaError("the file is a playlist, not a video; upload the video itself")
    if _is_text(head):
        raise InvalidMediaError("the file is text, not a video")
    code, out, err = await _run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_format",
            "-show_streams",
            "-of",
            "json",
            *input_args(path),
        ]
    )
    if code != 0:
        raise InvalidMediaError(_explain(err.decode(errors="replace")))
    info = json.loads(out)
    fmt: dict[str, Any] = info.get("format", {})
    container = CONTAINERS.get(fmt.get("format_name", ""))
    if container is None:
        raise InvalidMediaError(
            f"{fmt.get('format_long_name') or 'this format'} is not a video container editgraph "
            "accepts (MP4, MOV, MKV, WebM, AVI, MPEG-TS, FLV, Ogg or MPEG-PS)"
        )
    streams: list[dict[str, Any]] = info.get("streams", [])
    if any(s.get("codec_type") in ("subtitle", "attachment") for s in streams):
        # Subtitle tracks are where crafted files hide playlists; editgraph edits picture
        # and sound only.
        raise InvalidMediaError(
            "the file carries subtitle or attachment tracks; upload it without them"
        )
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video"
            and not s.get("disposition", {}).get("attached_pic")
            and s.get("codec_name") not in IMAGE_CODECS
        ),
        None,
    )
    if video is None:
        raise InvalidMediaError("the file has no video stream (an image or audio-only file?)")
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width == 0 or height == 0:
        # ffprobe reports 0x0 when the declared size is absurd (e.g. 100000x100000).
        raise InvalidMediaError("the video declares no usable picture size (missing or impossible)")
    if not (MIN_DIMENSION <= width <= MAX_DIMENSION and MIN_DIMENSION <= height <= MAX_DIMENSION):
        raise InvalidMediaError(
            f"the video is {width}x{height}; editgraph accepts {MIN_DIMENSION} to {MAX_DIMENSION} "
            "pixels on each side"
        )
    duration = _duration(fmt, video)
    if duration <= 0:
        raise InvalidMediaError("the video has no duration (no frames to play)")
    demuxer, extension = container
    code, _, err = await _run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            *input_args(path, demuxer),
            "-map",
            "0:v:0",
            "-frames:v",
            "1",
            "-f",
            "null",
            "-",
        ]
    )
    if code != 0:
        raise InvalidMediaError("the video stream cannot be decoded; the file may be damaged")
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    return Probe(
        demuxer=demuxer,
        extension=extension,
        duration=duration,
        width=width,
        height=height,
        fps=_rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")),
        video_codec=str(video.get("codec_name") or "unknown"),
        audio_codec=str(audio.get("codec_name") or "unknown") if audio else None,
    )


def _is_text(head: bytes) -> bool:
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t\f" for ch in decoded)


def _explain(stderr: str) -> str:
    if "not on whitelist" in stderr:
        return "the file is not a video container editgraph accepts"
    if "moov atom not found" in stderr:
        return "the MP4 file is incomplete (its index is missing); upload it again"
    if "Invalid data found" in stderr:
        return "the file is not a video editgraph can read"
    return "the file could not be read as a video"

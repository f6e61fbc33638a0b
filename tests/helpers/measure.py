"""What a person would check in a rendered file, measured with ffprobe and ffmpeg filters."""

import json
import re
import subprocess
from pathlib import Path
from typing import Any


def probe(path: Path) -> dict[str, Any]:
    """ffprobe's JSON for a file: format and streams."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    info: dict[str, Any] = json.loads(out)
    return info


def duration(path: Path) -> float:
    """Container duration in seconds."""
    return float(probe(path)["format"]["duration"])


def size(path: Path) -> tuple[int, int]:
    """Width and height of the first video stream."""
    video = next(s for s in probe(path)["streams"] if s["codec_type"] == "video")
    return int(video["width"]), int(video["height"])


def signal(path: Path, key: str, *, vf: str = "", frames: int | None = None) -> list[float]:
    """Per-frame ``lavfi.signalstats.<key>`` values (YAVG, UMIN, …) after optional filters."""
    chain = ",".join(
        f for f in (vf, "signalstats", f"metadata=print:key=lavfi.signalstats.{key}:file=-") if f
    )
    limit = ["-frames:v", str(frames)] if frames else []
    out = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            *limit,
            "-vf",
            chain,
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    prefix = f"lavfi.signalstats.{key}="
    return [float(line[len(prefix) :]) for line in out.splitlines() if line.startswith(prefix)]


def mean(values: list[float]) -> float:
    """The average, refusing an empty measurement."""
    assert values, "nothing was measured"
    return sum(values) / len(values)


def max_volume_db(path: Path) -> float:
    """The loudest sample in dBFS (-inf for digital silence, reported as -200)."""
    err = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-i",
            str(path),
            "-map",
            "0:a",
            "-af",
            "volumedetect",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    match = re.search(r"max_volume: (-?[\d.]+|-inf) dB", err)
    assert match, err
    return -200.0 if match.group(1) == "-inf" else float(match.group(1))

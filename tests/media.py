"""Test media, generated with ffmpeg's lavfi sources: seconds long, small frames."""

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

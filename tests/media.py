"""Test media, generated with ffmpeg's lavfi sources: seconds long, small frames."""

import subprocess
from pathlib import Path


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
    argv = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"{pattern}=size={size}:rate={rate}:duration={seconds}",
    ]
    if audio:
        argv += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    argv += ["-c:a", "aac", "-shortest"] if audio else []
    subprocess.run([*argv, str(path)], check=True)
    return path


def make_hostile(folder: Path) -> dict[str, Path]:
    """Files that must be refused at upload, each with the reason a person would give."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        files[name] = folder / f"{name}.mp4"
        files[name].write_bytes(data)

    put("empty", b"")
    put("text", b"just some notes about my holiday\n" * 20)
    put(
        "playlist",
        b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
    )
    put("concat_list", b"ffconcat version 1.0\nfile '/etc/passwd'\n")
    good = make_video(folder / "whole.mp4", seconds=2)
    put("truncated", good.read_bytes()[:20_000])
    image = folder / "image.png"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x64",
            "-frames:v",
            "1",
            str(image),
        ],
        check=True,
    )
    put("image", image.read_bytes())
    audio = folder / "audio.m4a"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=duration=1",
            "-c:a",
            "aac",
            "-f",
            "mp4",
            str(audio),
        ],
        check=True,
    )
    put("audio_only", audio.read_bytes())
    huge = make_video(folder / "wide.mp4", seconds=0.4, size="8208x16", rate=5, audio=False)
    put("absurd_dimensions", huge.read_bytes())
    no_frames = folder / "noframes.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x64:rate=5:duration=1",
            "-frames:v",
            "0",
            "-c:v",
            "libx264",
            str(no_frames),
        ],
        check=True,
    )
    put("zero_duration", no_frames.read_bytes())
    return files

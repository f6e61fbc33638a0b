"""The EDL compiler: a version's effective ops and its sources, compiled to one ffmpeg command."""

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from jobs import filtergraph as fg
from resolvers import ops
from resolvers.presets import Preset
from resolvers.probe import DEMUXERS, MIN_DIMENSION

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
SAMPLE_RATE = 48000
# Options every ffmpeg we start carries: no stdin, quiet, machine-readable progress.
GLOBAL_ARGS = ("-nostdin", "-hide_banner", "-nostats", "-v", "error", "-progress", "pipe:1")
# x264 starts 1.5 threads per core, each holding frames: a 1080p export needed 1.2 GB of
# address space with 8 threads and 3.3 GB with 48. A fixed count keeps the memory a render
# needs the same on every machine, so one memory limit fits all of them.
ENCODER_THREADS = 8
# Linux refuses a single argument over 128 KiB; a longer filter graph goes through a file.
MAX_GRAPH_ARG = 64 * 1024
# The frame rate of a version whose source declares none, and the range a declared one is
# held to (a file may claim any rate; the output is paced by this one).
FALLBACK_FPS = Fraction(30)
MIN_FPS, MAX_FPS = Fraction(1), Fraction(120)


@dataclass(frozen=True)
class Source:
    """A file ffmpeg reads: always a path the server made, with its demuxer pinned."""

    path: Path
    demuxer: str
    width: int  # pixels of this file (a mezzanine is smaller than the original)
    height: int
    fps: float
    duration: float
    has_audio: bool


@dataclass(frozen=True)
class Plan:
    """A compiled render: argv, the files it needs written first, and what it will produce."""

    argv: list[str]
    duration: float
    text_files: dict[Path, str] = field(default_factory=dict)


def _input(source: Source) -> fg.Input:
    # A new input each time, also for a file read twice (a concat of the source itself).
    return fg.file_input(
        f"file:{source.path}",
        f=source.demuxer,
        protocol_whitelist="file,pipe",
        format_whitelist=DEMUXERS,
    )


def _silence(duration: float) -> fg.Stream:
    return fg.file_input(
        f"anullsrc=channel_layout=stereo:sample_rate={SAMPLE_RATE}", f="lavfi", t=f"{duration:.3f}"
    ).audio


def _audio(source: Source, stream: fg.Input) -> fg.Stream:
    """A source's audio in one common format, or silence of its length."""
    raw = stream.audio if source.has_audio else _silence(source.duration)
    return raw.filter(
        "aformat", sample_fmts="fltp", sample_rates=SAMPLE_RATE, channel_layouts="stereo"
    )


def _atempo(audio: fg.Stream, factor: float) -> fg.Stream:
    # atempo takes 0.5..2 per instance; chain instances for the rest of 0.25..4.
    while factor > 2:
        audio, factor = audio.filter("atempo", 2), factor / 2
    while factor < 0.5:
        audio, factor = audio.filter("atempo", 0.5), factor / 0.5
    return audio.filter("atempo", round(factor, 6))


def frame_rate(fps: float) -> str:
    """The rate a version renders at, as ffmpeg reads it: 29.97 is ``30000/1001``."""
    if not math.isfinite(fps) or fps <= 0:
        return str(FALLBACK_FPS)
    rate = min(MAX_FPS, max(MIN_FPS, Fraction(fps).limit_denominator(1001)))
    return str(rate)


def number(value: float) -> str:
    """A number as ffmpeg's option parsers read it: its duration options refuse exponents
    (1e-05), so a value Python would print so is written to the microsecond instead."""
    text = str(value)
    return f"{value:.6f}" if "e" in text else text


def _even(value: float) -> int:
    """The nearest even number: 16:9 at 480 lines is 854 wide (853.3), as players expect."""
    return max(2, round(value / 2) * 2)


def mezzanine_size(width: int, height: int) -> tuple[int, int]:
    """The size of a source's 480p working copy: fits 854x480, never upscaled, even sides."""
    scale = min(1.0, 854 / width, 480 / height)
    return _even(width * scale), _even(height * scale)


@dataclass
class _State:
    """Where compilation stands: the logical frame, the pixel size and pixel scale."""

    frame: ops.Frame
    width: int  # pixels of the stream at this point
    height: int
    sx: float  # stream pixels per source pixel, per axis
    sy: float
    rate: str  # the frame rate of the version (the project source's)


def compile_edl(
    *,
    op_list: list[ops.Op],
    source: Source,
    source_frame: ops.Frame,
    concat_sources: dict[int, Source],
    preset: Preset,
    output: Path,
    workdir: Path,
) -> Plan:
    """Compile the ops into one filter graph and encoder settings for ``preset``."""
    main = _input(source)
    wants_audio = source.has_audio or any(
        concat_sources[o.video_id].has_audio for o in op_list if isinstance(o, ops.Concat)
    )
    video = main.video.filter("setsar", 1)
    audio = _audio(source, main) if wants_audio else None
    state = _State(
        frame=source_frame,
        width=source.width,
        height=source.height,
        sx=source.width / source_frame.width,
        sy=source.height / source_frame.height,
        rate=frame_rate(source.fps),
    )
    durations = {k: s.duration for k, s in concat_sources.items()}
    text_files: dict[Path, str] = {}
    for index, op in enumerate(op_list):
        after = op.apply(state.frame, durations)
        video, audio = _apply(op, index, video, audio, state, concat_sources, workdir, text_files)
        state.frame = after
    return Plan(
        argv=_encode(
            video, audio, preset, output, workdir, text_files, small=_under_min(state, preset)
        ),
        duration=state.frame.duration,
        text_files=text_files,
    )


def _apply(
    op: ops.Op,
    index: int,
    video: fg.Stream,
    audio: fg.Stream | None,
    state: _State,
    concat_sources: dict[int, Source],
    workdir: Path,
    text_files: dict[Path, str],
) -> tuple[fg.Stream, fg.Stream | None]:
    """One op onto the video and audio streams (audio is None when the output is silent)."""
    if isinstance(op, ops.Concat):
        return _concat(video, audio, state, concat_sources[op.video_id])
    video = apply_video(op, index, video, state, workdir, text_files)
    if audio is not None:
        audio = apply_audio(op, audio, state.frame.duration, concat_sources)
    return video, audio


def _ranged(op: ops.Op, duration: float) -> dict[str, str]:
    """The ``enable`` option of an effect given a stretch of the timeline, else nothing."""
    if isinstance(op, ops.Ranged) and (op.start is not None or op.end is not None):
        start, end = op.span(duration)
        return {"enable": f"between(t,{number(start)},{number(end)})"}
    return {}


def apply_video(
    op: ops.Op,
    index: int,
    video: fg.Stream,
    state: _State,
    workdir: Path,
    text_files: dict[Path, str],
) -> fg.Stream:
    """One op onto the video stream (concat, which joins two streams, is not one of them)."""
    duration = state.frame.duration
    when = _ranged(op, duration)
    match op:
        case ops.Trim(start=start, end=end):
            cut = {"start": number(start), "end": number(end)}
            video = video.filter("trim", **cut).filter("setpts", "PTS-STARTPTS")
        case ops.Speed(factor=factor):
            # Back to the version's rate: frames dropped or repeated, so the picture ends
            # where the sound does (a sped-up stream kept its old frame durations).
            video = video.filter("setpts", f"PTS/{number(factor)}").filter("fps", state.rate)
        case ops.Crop(x=x, y=y, width=width, height=height):
            state.width = max(2, min(state.width, round(width * state.sx)))
            state.height = max(2, min(state.height, round(height * state.sy)))
            video = video.filter(
                "crop", state.width, state.height, round(x * state.sx), round(y * state.sy)
            )
        case ops.Rotate(degrees=180):
            video = video.filter("hflip").filter("vflip")
        case ops.Rotate(degrees=degrees):
            video = video.filter("transpose", "clock" if degrees == 90 else "cclock")
            state.width, state.height = state.height, state.width
            state.sx, state.sy = state.sy, state.sx
        case ops.Flip(axis=axis):
            video = video.filter("hflip" if axis == "horizontal" else "vflip", **when)
        case ops.Brightness(brightness=value):
            video = video.filter("eq", brightness=round(value / 100, 4), **when)
        case ops.Contrast(contrast=value):
            video = video.filter("eq", contrast=round(1 + value / 100, 4), **when)
        case ops.Saturation(saturation=value):
            video = video.filter("eq", saturation=round(1 + value / 100, 4), **when)
        case ops.GaussianBlur(radius=radius):
            sigma = round(radius * (state.sx + state.sy) / 2, 3)
            video = video.filter("gblur", sigma=sigma, **when)
        case ops.Grayscale():
            video = video.filter("hue", s=0, **when)
        case ops.Fade(in_seconds=in_s, out_seconds=out_s):
            for kind, start, length in _fades(in_s, out_s, duration):
                video = video.filter("fade", type=kind, start_time=start, duration=number(length))
        case ops.Text():
            # The text goes through a file: no escaping of user text into the filter graph.
            path = workdir / f"text-{index}.txt"
            text_files[path] = op.text
            start, end = op.span(duration)
            options: dict[str, Any] = {
                "textfile": str(path),
                "expansion": "none",
                "x": round(op.x * state.sx),
                "y": round(op.y * state.sy),
                "fontsize": max(1, round(op.size * (state.sx + state.sy) / 2)),
                "fontcolor": op.color,
                "enable": f"between(t,{number(start)},{number(end)})",
            }
            if FONT.exists():
                options["fontfile"] = str(FONT)
            video = video.filter("drawtext", **options)
        case ops.Volume() | ops.Mute():
            pass  # sound only
        case _:
            raise ValueError(f"no compiler rule for op {op.type!r}")
    return video


def _fades(in_s: float, out_s: float, duration: float) -> list[tuple[str, float, float]]:
    """(type, start, length) of each fade: to the microsecond, the finest time ffmpeg keeps;
    a fade of 0 s is none (fade would read 0 as "unset" and fade over 25 frames)."""
    fade_in, fade_out = round(in_s, 6), round(out_s, 6)
    found: list[tuple[str, float, float]] = []
    if fade_in > 0:
        found.append(("in", 0, fade_in))
    if fade_out > 0:
        found.append(("out", round(max(0.0, duration - fade_out), 3), fade_out))
    return found


def apply_audio(
    op: ops.Op, audio: fg.Stream, duration: float, concat_sources: dict[int, Source]
) -> fg.Stream:
    """One op onto the audio stream; an op on the picture only leaves it as it is."""
    when = _ranged(op, duration)
    match op:
        case ops.Trim(start=start, end=end):
            cut = {"start": number(start), "end": number(end)}
            audio = audio.filter("atrim", **cut).filter("asetpts", "PTS-STARTPTS")
        case ops.Speed(factor=factor):
            audio = _atempo(audio, factor)
        case ops.Fade(in_seconds=in_s, out_seconds=out_s):
            for kind, start, length in _fades(in_s, out_s, duration):
                audio = audio.filter("afade", type=kind, start_time=start, duration=number(length))
        case ops.Volume(gain_db=gain):
            audio = audio.filter("volume", f"{number(gain)}dB", **when)
        case ops.Mute():
            audio = audio.filter("volume", 0, **when)
        case ops.Concat(video_id=video_id):
            other = concat_sources[video_id]
            tail = _audio(other, _input(other))
            audio = fg.concat(audio, tail, v=0, a=1)[0]
    return audio


def _concat(
    video: fg.Stream, audio: fg.Stream | None, state: _State, other: Source
) -> tuple[fg.Stream, fg.Stream | None]:
    stream = _input(other)
    # concat needs one frame rate on both sides: given two, it makes a variable-rate
    # stream that the encoder pads with duplicate frames without end. The main side
    # needs it too: a speed op changes its rate.
    video = video.filter("fps", state.rate)
    tail = fit(stream.video.filter("fps", state.rate), state.width, state.height)
    if audio is None:
        return fg.concat(video, tail, v=1, a=0)[0], None
    joined = fg.concat(video, audio, tail, _audio(other, stream), v=1, a=1)
    return joined[0], joined[1]


def fit(video: fg.Stream, width: int, height: int) -> fg.Stream:
    """An appended clip scaled into the frame it joins, with borders where the shapes differ."""
    return (
        video.filter("scale", width, height, force_original_aspect_ratio="decrease")
        .filter("pad", width, height, "(ow-iw)/2", "(oh-ih)/2")
        .filter("setsar", 1)
    )


def _under_min(state: _State, preset: Preset) -> bool:
    return too_small_size(state.width, state.height, preset)


def too_small_size(width: int, height: int, preset: Preset) -> bool:
    """Whether the output could be under 16 px a side, which editgraph, reading it back with
    an upload's rules, would refuse: a proxy of a small crop (its 480p copy is smaller than
    the original), or a crop stored before crops were held to 16 px."""
    scale = 1.0
    if preset.max_width and preset.max_height:
        scale = min(1.0, preset.max_width / width, preset.max_height / height)
    # Two pixels of margin for the rounding to even sides.
    return min(width, height) * scale < MIN_DIMENSION + 2


def fit_to_preset(video: fg.Stream, preset: Preset, *, small: bool = False) -> fg.Stream:
    """The picture scaled into the preset's bounds (even sides), in the encoder's format."""
    if preset.max_width and preset.max_height:
        video = video.filter(
            "scale",
            f"min({preset.max_width},iw)",
            f"min({preset.max_height},ih)",
            force_original_aspect_ratio="decrease",
            force_divisible_by=2,
        )
    else:
        video = video.filter("scale", "trunc(iw/2)*2", "trunc(ih/2)*2")
    if small:
        # Black borders up to the smallest picture editgraph reads.
        side = MIN_DIMENSION
        video = video.filter("pad", f"max({side},iw)", f"max({side},ih)", "(ow-iw)/2", "(oh-ih)/2")
    return video.filter("format", "yuv420p")


def graph_in_file(argv: list[str], workdir: Path, text_files: dict[Path, str]) -> list[str]:
    """``argv`` with a filter graph too long for one argument moved into a file."""
    if "-filter_complex" not in argv:
        return argv
    graph = argv.index("-filter_complex") + 1
    if len(argv[graph]) > MAX_GRAPH_ARG:
        script = workdir / "filtergraph.txt"
        text_files[script] = argv[graph]
        argv[graph - 1 : graph + 1] = ["-filter_complex_script", str(script)]
    return argv


def _encode(
    video: fg.Stream,
    audio: fg.Stream | None,
    preset: Preset,
    output: Path,
    workdir: Path,
    text_files: dict[Path, str],
    *,
    small: bool = False,
) -> list[str]:
    video = fit_to_preset(video, preset, small=small)
    options: dict[str, Any] = {
        "vcodec": "libx264",
        "preset": preset.x264_preset,
        "movflags": "+faststart",
        "threads": ENCODER_THREADS,
        "f": "mp4",
    }
    if preset.video_bitrate:
        options.update({"b:v": preset.video_bitrate, "maxrate": preset.video_bitrate})
        options["bufsize"] = preset.video_bitrate
    if preset.crf is not None:
        options["crf"] = preset.crf
    streams = [video]
    if audio is not None:
        streams.append(audio)
        options.update({"acodec": "aac", "b:a": preset.audio_bitrate, "ar": SAMPLE_RATE})
    argv = fg.compile_argv(fg.Output(streams, str(output), options, list(GLOBAL_ARGS)))
    return graph_in_file(argv, workdir, text_files)


def audio_argv(
    *,
    op_list: list[ops.Op],
    source: Source,
    source_frame: ops.Frame,
    concat_sources: dict[int, Source],
    preset: Preset,
    playlist: Path,
    segment_s: int,
) -> tuple[list[str], float]:
    """A version's sound alone, for the whole timeline, as HLS (fragmented MP4 segments a
    player can read while they are written); and how long it lasts."""
    audio = _audio(source, _input(source))
    frame = source_frame
    durations = {k: s.duration for k, s in concat_sources.items()}
    for op in op_list:
        after = op.apply(frame, durations)
        audio = apply_audio(op, audio, frame.duration, concat_sources)
        frame = after
    options: dict[str, Any] = {
        "acodec": "aac",
        "b:a": preset.audio_bitrate,
        "ar": SAMPLE_RATE,
        "f": "hls",
        "hls_time": segment_s,
        "hls_segment_type": "fmp4",
        "hls_playlist_type": "event",
        "hls_flags": "independent_segments+temp_file",
        "hls_fmp4_init_filename": "init.mp4",
        "hls_segment_filename": str(playlist.parent / "a%05d.m4s"),
    }
    out = fg.Output([audio], str(playlist), options, list(GLOBAL_ARGS))
    return fg.compile_argv(out), frame.duration


def state_for(width: int, height: int, sx: float, sy: float, duration: float) -> _State:
    """Where an op of a proxy segment meets the picture (``jobs.segments.Look``)."""
    return _State(
        frame=ops.Frame(width, height, duration),
        width=width,
        height=height,
        sx=sx,
        sy=sy,
        rate=str(FALLBACK_FPS),
    )


def mezzanine_argv(source: Source, output: Path) -> list[str]:
    """The 480p working copy: a closed GOP of one proxy segment (about 2 s) without
    B-frames, so a segment starts at a keyframe and decodes without what came before."""
    width, height = mezzanine_size(source.width, source.height)
    stream = _input(source)
    video = stream.video.filter("scale", width, height).filter("setsar", 1)
    video = video.filter("format", "yuv420p")
    gop = segment_frames(source.fps)
    options: dict[str, Any] = {
        "vcodec": "libx264",
        "preset": "veryfast",
        "crf": 20,
        "g": gop,
        "keyint_min": gop,
        "sc_threshold": 0,
        "bf": 0,
        "force_key_frames": f"expr:eq(mod(n,{gop}),0)",
        "movflags": "+faststart",
        "threads": ENCODER_THREADS,
        "f": "mp4",
    }
    streams = [video]
    if source.has_audio:
        streams.append(stream.audio)
        options.update({"acodec": "aac", "b:a": "128k", "ar": SAMPLE_RATE, "ac": 2})
    return fg.compile_argv(fg.Output(streams, str(output), options, list(GLOBAL_ARGS)))


# A proxy segment lasts this long, give or take a frame: a whole number of frames.
SEGMENT_S = 2


def segment_frames(fps: float) -> int:
    """Frames in one proxy segment of a version at ``fps``."""
    return max(1, round(SEGMENT_S * Fraction(frame_rate(fps))))

"""Render presets: what a proxy and an export look like, as data the workers encode to."""

from dataclasses import asdict, dataclass

from models.db import canonical_json


@dataclass(frozen=True)
class Preset:
    """How a render is encoded. ``key`` changes whenever the output would."""

    name: str
    max_width: int | None  # None: the frame's own size
    max_height: int | None
    video_bitrate: str | None  # e.g. "1M"; None: constant quality (crf)
    crf: int | None
    x264_preset: str
    audio_bitrate: str
    from_mezzanine: bool  # render from the 480p copy instead of the original

    @property
    def key(self) -> str:
        """A stable text form, part of a render's content key."""
        return canonical_json(asdict(self))


PROXY = Preset(
    name="proxy",
    max_width=854,
    max_height=480,
    video_bitrate="1M",
    crf=None,
    # At 1 Mbps and 480p, ultrafast gives the same picture as veryfast (SSIM against the
    # export within 0.001, bench/previews.py) for about 0.7x the CPU: the first segment
    # plays sooner and a whole proxy finishes sooner.
    x264_preset="ultrafast",
    audio_bitrate="96k",
    from_mezzanine=True,
)


def export_preset(*, crf: int, x264_preset: str) -> Preset:
    """Full resolution at a constant quality (both are settings)."""
    return Preset(
        name="export",
        max_width=None,
        max_height=None,
        video_bitrate=None,
        crf=crf,
        x264_preset=x264_preset,
        audio_bitrate="192k",
        from_mezzanine=False,
    )

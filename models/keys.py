"""Where every file lives: the one place that builds media keys, in the seed's layout.

A key is a path relative to the media root (``MediaStore.path`` turns it into a file). No
other module writes ``videos/…``, ``proxy/…``, ``export/…``, ``archive/…`` or ``temp/…``: a
storage backend swapped under ``MediaStore`` then only has to agree with this module.
"""

import re
import secrets
from typing import assert_never

from models.states import RenderKind

AREAS = ("videos", "proxy", "export", "archive", "segments", "temp")
# A render's files in temp/: render-{id}-{attempt}.mp4 and its work folder render-{id}-{attempt}.d
_RENDER_TEMP = re.compile(r"render-(\d+)-(\d+)(?:\.|$)")


def source(sha256: str, extension: str) -> str:
    """An uploaded original, stored once per SHA-256."""
    return f"videos/{sha256}.{extension}"


def mezzanine(sha256: str) -> str:
    """A source's normalized 480p copy, next to the original: a keyframe at every proxy
    segment start (``_s2_``; a copy made before segmented proxies is made again)."""
    return f"videos/{sha256}_s2_480p.mp4"


def render_output(kind: RenderKind, project_id: int, version: int) -> str:
    """A finished proxy or export of one version."""
    match kind:
        case RenderKind.PROXY:
            return f"proxy/{project_id}/v{version}_proxy.mp4"
        case RenderKind.EXPORT:
            return f"export/{project_id}/v{version}_final.mp4"
        case _:
            assert_never(kind)


def archive(export_id: int, version: int) -> str:
    """An archived export."""
    return f"archive/{export_id}_v{version}_final.mp4"


def upload_temp() -> str:
    """A new, unique name for an upload being streamed in."""
    return f"temp/upload-{secrets.token_hex(12)}.part"


def render_temp(render_id: int, attempt: int, suffix: str) -> str:
    """The file (``.mp4``) or work folder (``.d``) of one attempt at a render."""
    return f"temp/render-{render_id}-{attempt}{suffix}"


def render_temp_prefix(render_id: int) -> str:
    """What every attempt's temp entries of a render start with (a glob under temp/)."""
    return f"render-{render_id}-"


def render_of_temp(name: str) -> tuple[int, int] | None:
    """(render id, attempt) of a render's temp entry, or None for anything else."""
    found = _RENDER_TEMP.match(name)
    return (int(found.group(1)), int(found.group(2))) if found else None


def mezzanine_temp(sha256: str) -> str:
    """A 480p copy being made."""
    return f"temp/mezzanine-{sha256[:16]}-{secrets.token_hex(6)}.mp4"


def aside_temp() -> str:
    """Where the GC parks a file for a moment (a copy across filesystems, bytes set aside)."""
    return f"temp/gc-{secrets.token_hex(6)}"


def segment(key: str) -> str:
    """The media section of a proxy segment, stored once per content key."""
    return f"segments/{key[:2]}/{key}.m4s"


def segment_init(sha256: str) -> str:
    """An initialisation section that proxy segments share, stored once per SHA-256."""
    return f"segments/init/{sha256}.mp4"


SOUNDS = "proxy/sound"


def proxy_sound(key: str) -> str:
    """The folder of a segmented proxy's sound (its HLS playlist, init and segments), stored
    once per content key: versions and projects whose sound is the same share it."""
    return f"{SOUNDS}/{key[:2]}/{key}"


def sound_in_use(folder_key: str) -> str:
    """The name of the database lock (``Database.hold``) that a render listing a sound in
    its plan and the GC removing that sound both take."""
    return f"sound:{folder_key}"


def hls(render_id: int, name: str) -> str:
    """The signed name of one file of a segmented proxy's HLS, served from the database and
    the segment store rather than a file of its own: ``hls/{render}/{name}``."""
    return f"hls/{render_id}/{name}"


def is_hls(key: str) -> bool:
    """Whether a key names a file of a segmented proxy's HLS (see ``hls``)."""
    return key.startswith("hls/")


def playlist(render_id: int) -> str:
    """A segmented proxy's master playlist."""
    return hls(render_id, "master.m3u8")

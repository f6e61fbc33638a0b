"""What a worker holds while it runs: connections and the render policy, built at start-up."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from arq import ArqRedis
from pydantic import BaseModel, Field

from jobs.events import EventLog
from models.bucket import open_store
from models.db import Database
from models.store import MediaStore
from resolvers.presets import Preset, export_preset


class WorkerSettings(BaseModel):
    """Every setting a render worker reads, each defined once, with its default and bounds.
    editgraph's ``Settings`` extends this class, so ``EDITGRAPH_*`` variables set these too."""

    database_url: str = "sqlite+aiosqlite:///data/editgraph.db"
    # Unset: `editgraph serve` starts a private redis-server child and stops it on exit.
    redis_url: str | None = None
    media_root: Path = Path("uploads")
    # Where media lives: unset for the media root, or s3://bucket/prefix for a bucket (an
    # S3-compatible endpoint and region below; credentials from the AWS_* variables).
    storage_url: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    # With a bucket: this process's local folder for work files and downloaded sources.
    cache_dir: Path = Path("data/cache")
    cache_bytes: int = Field(default=10 * 1024**3, ge=0)
    # Rendering (seed: 2 concurrent jobs, 3 attempts, 5-minute timeout).
    render_concurrency: int = Field(default=2, ge=1)
    render_timeout_s: float = Field(default=300.0, gt=0)
    # Render time allowed per second of output, on top of the base: a long export gets
    # longer (this machine: 34-75 s per 30 s of 1080p).
    render_timeout_per_s: float = Field(default=10.0, ge=0)
    # The longest version an edit may make (also the longest render a worker may be given).
    max_timeline_s: float = Field(default=4 * 3600.0, gt=0)
    render_max_attempts: int = Field(default=3, ge=1)
    # A proxy's run of segments to encode is offered to idle workers in up to this many
    # parts, each of at least proxy_part_min_segments (1: a proxy is one worker's alone).
    proxy_parts: int = Field(default=2, ge=1)
    proxy_part_min_segments: int = Field(default=15, ge=1)
    reconcile_every_s: int = Field(default=60, ge=1, le=60)
    # A running render's lease; a worker renews it while ffmpeg runs.
    render_lease_s: float = Field(default=30.0, gt=0)
    export_crf: int = Field(default=20, ge=0, le=51)
    export_x264_preset: str = "medium"
    # The address space each ffmpeg may use (RLIMIT_AS); its CPU time follows the timeout.
    render_max_memory_mb: int = Field(default=4096, ge=256)
    # Live updates: replay keeps this many events per project, for at most this long.
    events_keep: int = Field(default=1000, ge=1)
    events_keep_s: int = Field(default=24 * 3600, ge=60)
    # The weekly GC report never deletes; with gc_cron_mark it also marks.
    gc_cron_weekday: int = Field(default=6, ge=0, le=6)  # Sunday
    gc_cron_hour: int = Field(default=3, ge=0, le=23)
    gc_cron_mark: bool = False
    gc_days_old: int = Field(default=30, ge=0)
    gc_keep_latest: int = Field(default=1, ge=0)
    # temp/ entries untouched this long are left by a crash; the reconciler removes them.
    temp_grace_s: float = Field(default=3600.0, gt=0)

    def store(self) -> MediaStore:
        """The media store these settings name."""
        return open_store(
            self.storage_url,
            media_root=self.media_root,
            cache_dir=self.cache_dir,
            cache_bytes=self.cache_bytes,
            s3_endpoint=self.s3_endpoint_url,
            s3_region=self.s3_region,
        )

    @property
    def export(self) -> Preset:
        """The export preset these settings describe."""
        return export_preset(crf=self.export_crf, x264_preset=self.export_x264_preset)

    @property
    def worker_redis_url(self) -> str:
        """The Redis a worker connects to; a worker cannot start its own."""
        if self.redis_url is None:
            raise ValueError("a worker needs EDITGRAPH_REDIS_URL (serve starts an embedded one)")
        return self.redis_url


@dataclass
class Runtime:
    """Per-worker state, stored in arq's ctx under "runtime"."""

    config: WorkerSettings
    db: Database
    store: MediaStore
    redis: ArqRedis
    events: EventLog
    # Called with each proxy segment's key once it is stored: where a test meets a render
    # between two segments (a newer edit, a cancel) instead of racing it by the clock.
    segment_stored: Callable[[str], Awaitable[None]] | None = None
    # Called with a sound's key when this worker starts making it (tests count the makers).
    sound_begun: Callable[[str], Awaitable[None]] | None = None

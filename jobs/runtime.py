"""What a worker holds while it runs: connections and the render policy, built at start-up."""

from dataclasses import dataclass
from pathlib import Path

from arq import ArqRedis

from jobs.events import EventLog
from models.db import Database
from models.store import MediaStore
from resolvers.presets import Preset, export_preset


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs to know, from the wiring's settings."""

    database_url: str
    redis_url: str
    media_root: Path
    concurrency: int = 2
    timeout_s: float = 300.0
    max_attempts: int = 3
    reconcile_every_s: int = 60
    # A running render's lease; a worker renews it every half second while ffmpeg runs.
    lease_s: float = 30.0
    export_crf: int = 20
    export_x264_preset: str = "medium"
    # The address space each ffmpeg may use (RLIMIT_AS); its CPU time follows timeout_s.
    render_max_memory_mb: int = 4096
    events_keep: int = 1000
    events_keep_s: int = 24 * 3600
    # The weekly GC report (a cron): when, with which rules, and whether it also marks.
    gc_cron_weekday: int = 6  # Sunday
    gc_cron_hour: int = 3
    gc_cron_mark: bool = False
    gc_days_old: int = 30
    gc_keep_latest: int = 1
    # temp/ entries untouched this long are left by a crash; the reconciler removes them.
    temp_grace_s: float = 3600.0

    @property
    def export(self) -> Preset:
        """The export preset these settings describe."""
        return export_preset(crf=self.export_crf, x264_preset=self.export_x264_preset)


@dataclass
class Runtime:
    """Per-worker state, stored in arq's ctx under "runtime"."""

    config: WorkerConfig
    db: Database
    store: MediaStore
    redis: ArqRedis
    events: EventLog

"""One Settings object, read from ``EDITGRAPH_*`` at the edge and passed down."""

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobs.runtime import WorkerConfig
from resolvers import ops

DEFAULT_SECRET = "editgraph-development-secret-change-me"  # noqa: S105 (refused in production)
GiB = 1024**3


class Settings(BaseSettings):
    """Every knob, with a default that works on one machine out of the box."""

    model_config = SettingsConfigDict(env_prefix="EDITGRAPH_", extra="ignore")

    env: Literal["development", "production", "test"] = "development"
    database_url: str = "sqlite+aiosqlite:///data/editgraph.db"
    # Unset: `editgraph serve` starts a private redis-server child and stops it on exit.
    redis_url: str | None = None
    media_root: Path = Path("uploads")
    data_dir: Path = Path("data")
    secret_key: str = DEFAULT_SECRET
    graphiql: bool | None = None  # default: on in development, off in production
    max_upload_bytes: int = Field(default=4 * GiB, gt=0)
    host: str = "127.0.0.1"
    port: int = 8000
    # Rendering (seed: 2 concurrent jobs, 3 attempts, 5-minute timeout).
    embedded_worker: bool = True  # `serve` also runs a worker unless this is off
    render_concurrency: int = Field(default=2, ge=1)
    render_timeout_s: float = Field(default=300.0, gt=0)
    render_max_attempts: int = Field(default=3, ge=1)
    reconcile_every_s: int = Field(default=60, ge=1, le=60)
    render_lease_s: float = Field(default=30.0, gt=0)
    export_crf: int = Field(default=20, ge=0, le=51)
    export_x264_preset: str = "medium"
    media_url_ttl_s: int = Field(default=6 * 3600, gt=0)
    # Live updates: replay keeps this many events per project, for at most this long.
    events_keep: int = Field(default=1000, ge=1)
    events_keep_s: int = Field(default=24 * 3600, ge=60)
    subscriptions_per_connection: int = Field(default=20, ge=1)
    subscriptions_per_user: int = Field(default=100, ge=1)
    subscriber_buffer: int = Field(default=100, ge=1)
    # Abuse resistance: query limits, origins allowed to open websockets, render rate limits.
    max_query_depth: int = Field(default=12, ge=1)
    max_query_aliases: int = Field(default=30, ge=0)
    max_query_tokens: int = Field(default=2000, ge=10)
    max_batch_operations: int = Field(default=5, ge=1)
    max_field_comparisons: int = Field(default=5000, ge=0)  # validation work per document
    max_variable_values: int = Field(default=5000, ge=100)  # list items and fields in variables
    max_json_bytes: int = Field(default=1024 * 1024, ge=1024)  # every non-upload body
    token_ttl_days: int | None = Field(default=None, ge=1)  # unset: tokens never expire
    allowed_origins: list[str] = Field(default_factory=list)
    rate_window_s: int = Field(default=60, ge=1)
    rate_exports: int = Field(default=30, ge=1)  # exports a user may queue per window
    rate_proxies: int = Field(default=600, ge=1)  # edits (each queues a proxy) per window
    # The weekly GC report never deletes; with gc_cron_mark it also marks.
    gc_cron_weekday: int = Field(default=6, ge=0, le=6)
    gc_cron_hour: int = Field(default=3, ge=0, le=23)
    gc_cron_mark: bool = False
    gc_days_old: int = Field(default=30, ge=0)
    gc_keep_latest: int = Field(default=1, ge=0)
    # What one user's edits may cost: ops per batch and per version, the length and picture
    # size of a version, and the memory of each render's ffmpeg (CPU time follows the timeout).
    max_ops_per_batch: int = Field(default=100, ge=1)
    max_ops_per_version: int = Field(default=1000, ge=1)
    max_timeline_s: float = Field(default=4 * 3600.0, gt=0)
    max_frame_pixels: int = Field(default=8192 * 4320, ge=256)
    render_max_memory_mb: int = Field(default=4096, ge=256)
    # Faults: temp/ entries untouched this long are removed (crash leftovers); /healthz
    # warns "disk": "low" when the media root has less free space than this.
    temp_grace_s: float = Field(default=3600.0, gt=0)
    min_free_bytes: int = Field(default=GiB, ge=0)

    def worker_config(self) -> WorkerConfig:
        """What a render worker needs from these settings."""
        if self.redis_url is None:
            raise ValueError("a worker needs EDITGRAPH_REDIS_URL (serve starts an embedded one)")
        return WorkerConfig(
            database_url=self.database_url,
            redis_url=self.redis_url,
            media_root=self.media_root,
            concurrency=self.render_concurrency,
            timeout_s=self.render_timeout_s,
            max_attempts=self.render_max_attempts,
            reconcile_every_s=self.reconcile_every_s,
            lease_s=self.render_lease_s,
            events_keep=self.events_keep,
            events_keep_s=self.events_keep_s,
            gc_cron_weekday=self.gc_cron_weekday,
            gc_cron_hour=self.gc_cron_hour,
            gc_cron_mark=self.gc_cron_mark,
            gc_days_old=self.gc_days_old,
            gc_keep_latest=self.gc_keep_latest,
            temp_grace_s=self.temp_grace_s,
            export_crf=self.export_crf,
            export_x264_preset=self.export_x264_preset,
            render_max_memory_mb=self.render_max_memory_mb,
        )

    def op_limits(self) -> ops.Limits:
        """What a batch of ops may hold and what a version may become."""
        return ops.Limits(
            ops_per_batch=self.max_ops_per_batch,
            ops_per_version=self.max_ops_per_version,
            timeline_s=self.max_timeline_s,
            frame_pixels=self.max_frame_pixels,
        )

    @property
    def graphiql_enabled(self) -> bool:
        """GraphiQL is served at /graphql unless turned off (always off in production)."""
        return self.env != "production" if self.graphiql is None else self.graphiql

    @model_validator(mode="after")
    def _safe_in_production(self) -> "Settings":
        if self.env == "production":
            if self.secret_key == DEFAULT_SECRET or len(self.secret_key) < 32:
                raise ValueError(
                    "EDITGRAPH_SECRET_KEY must be set to a random value of 32+ characters "
                    "in production"
                )
            if self.graphiql:
                raise ValueError("EDITGRAPH_GRAPHIQL must be off in production")
            if not self.allowed_origins:
                raise ValueError(
                    "EDITGRAPH_ALLOWED_ORIGINS must list the origins of your web app in "
                    "production, e.g. '[\"https://app.example.com\"]' (websockets need it)"
                )
        return self

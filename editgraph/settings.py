"""One Settings object, read from ``EDITGRAPH_*`` at the edge and passed down."""

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from editgraph.origins import OriginPolicy, parse_origins
from jobs.runtime import WorkerSettings
from resolvers import ops

DEFAULT_SECRET = "editgraph-development-secret-change-me"  # noqa: S105 (refused in production)
GiB = 1024**3


class Settings(WorkerSettings, BaseSettings):
    """Every knob, with a default that works on one machine out of the box. What a render
    worker reads is defined once, in ``jobs.runtime.WorkerSettings``, and inherited here."""

    model_config = SettingsConfigDict(env_prefix="EDITGRAPH_", extra="ignore")

    env: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("data")
    secret_key: str = DEFAULT_SECRET
    graphiql: bool | None = None  # default: on in development, off in production
    max_upload_bytes: int = Field(default=4 * GiB, gt=0)
    host: str = "127.0.0.1"
    port: int = 8000
    embedded_worker: bool = True  # `serve` also runs a worker unless this is off
    # Server processes `serve` runs on one port (one per core serves the most requests).
    workers: int = Field(default=1, ge=1, le=64)
    # Per-message deflate on websockets: about 40 KiB more server memory per connection,
    # for smaller frames; worth it only over slow links (events are small JSON).
    ws_deflate: bool = False
    # A metrics listener without auth (host:port, or :port), for scrapers on a private
    # network; /metrics on the API port always answers an admin's token. With several
    # server processes, process N listens on port + N.
    metrics_addr: str | None = None
    metrics_refresh_s: float = Field(default=15.0, gt=0)  # the listener's database figures
    metrics_storage_every_s: float = Field(default=60.0, ge=0)  # listing a store is slow
    # Log lines as text, or as one JSON object per line (with a request id) for collectors.
    log_format: Literal["text", "json"] = "text"
    media_url_ttl_s: int = Field(default=6 * 3600, gt=0)
    # Proxy segments nothing has used for this many days are reclaimable by `gc delete`.
    gc_segment_days: int = Field(default=7, ge=0)
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
    # Web pages allowed to call the API (CORS and websockets): JSON or comma-separated.
    # Unset outside production: pages on http://localhost:* and http://127.0.0.1:*.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Where clients reach this server (https://api.example.com): media and playlist links
    # are absolute under it. Unset: links are relative to the API's own origin.
    public_url: str | None = None
    rate_window_s: int = Field(default=60, ge=1)
    rate_exports: int = Field(default=30, ge=1)  # exports a user may queue per window
    rate_proxies: int = Field(default=600, ge=1)  # edits (each queues a proxy) per window
    # What one user's edits may cost: ops per batch and per version, the picture size of a
    # version (its length and each render's ffmpeg memory are worker settings).
    max_ops_per_batch: int = Field(default=100, ge=1)
    max_ops_per_version: int = Field(default=1000, ge=1)
    max_frame_pixels: int = Field(default=8192 * 4320, ge=256)
    # /healthz warns "disk": "low" when the media root has less free space than this
    # (how long crash leftovers stay in temp/ is a worker setting).
    min_free_bytes: int = Field(default=GiB, ge=0)

    def op_limits(self) -> ops.Limits:
        """What a batch of ops may hold and what a version may become."""
        return ops.Limits(
            ops_per_batch=self.max_ops_per_batch,
            ops_per_version=self.max_ops_per_version,
            timeline_s=self.max_timeline_s,
            frame_pixels=self.max_frame_pixels,
        )

    def origin_policy(self) -> OriginPolicy:
        """The web pages allowed to call the API, over HTTP (CORS) and websockets."""
        return OriginPolicy.of(self.allowed_origins, production=self.env == "production")

    @property
    def graphiql_enabled(self) -> bool:
        """GraphiQL is served at /graphql unless turned off (always off in production)."""
        return self.env != "production" if self.graphiql is None else self.graphiql

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> list[str]:
        return parse_origins(value)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        url = value.strip().rstrip("/")
        if not re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", url):
            raise ValueError(f"{value!r} is not a URL such as https://api.example.com")
        return url

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
                    "production, e.g. https://app.example.com (comma-separated, or a JSON list)"
                )
        return self

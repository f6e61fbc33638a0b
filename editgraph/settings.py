"""One Settings object, read from ``EDITGRAPH_*`` at the edge and passed down."""

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
        return self

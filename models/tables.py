"""The persisted nouns: users, blobs, videos, projects, versions and their edit operations."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from models.states import GcRunStatus, GcState, RenderKind, RenderStatus, StateText


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always UTC-aware, also on SQLite (which stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetimes are refused: store UTC-aware values")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def _created() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class User(SQLModel, table=True):
    """A person or service that calls the API with a bearer token."""

    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    is_admin: bool = Field(default=False)
    created_at: datetime = _created()


class ApiToken(SQLModel, table=True):
    """One bearer token of a user (a user may hold several: one per device or script)."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    # Only the SHA-256 of the token is kept; the token itself is shown once at creation.
    token_hash: str = Field(max_length=64, unique=True, index=True)
    label: str = Field(default="", max_length=100)
    # A token expires EDITGRAPH_TOKEN_TTL_DAYS after it was issued (when that is set).
    created_at: datetime = _created()
    # When the token was last used, to the minute (not written on every request).
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class Blob(SQLModel, table=True):
    """Bytes stored once per SHA-256; ``ref_count`` counts the videos pointing at them."""

    __tablename__ = "blobs"

    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(max_length=64, unique=True, index=True)
    key: str = Field(max_length=200)
    bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    ref_count: int = Field(default=0)
    # A normalized 480p copy with a short GOP; proxies render from it, not the original.
    mezzanine_key: str | None = Field(default=None, max_length=200)
    # When ref_count last dropped to 0; the GC deletes the bytes only after a grace period.
    unreferenced_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    created_at: datetime = _created()


class Video(SQLModel, table=True):
    """A user's upload: an owner, a blob, a sanitized name and what ffprobe found."""

    __tablename__ = "videos"
    __table_args__ = (UniqueConstraint("owner_id", "blob_id", name="uq_videos_owner_blob"),)

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(
        sa_column=Column(Integer, ForeignKey("users.id"), nullable=False, index=True)
    )
    blob_id: int = Field(
        sa_column=Column(Integer, ForeignKey("blobs.id"), nullable=False, index=True)
    )
    filename: str = Field(max_length=255)
    format_name: str = Field(max_length=100)
    duration: float
    width: int
    height: int
    fps: float
    video_codec: str = Field(max_length=50)
    audio_codec: str | None = Field(default=None, max_length=50)
    created_at: datetime = _created()
    # Deleted by its owner while a deleted project still names it: the row stays for that
    # project's history, the blob reference is dropped. Uploading the bytes again revives it.
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # When its owner last uploaded its bytes (again): an import's undo leaves a video alone
    # that its owner uploaded after the import.
    uploaded_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)

    @property
    def has_audio(self) -> bool:
        """Whether the source carries an audio stream."""
        return self.audio_codec is not None


class Project(SQLModel, table=True):
    """An edit of one source video; ``current_version`` is bumped by every appended batch."""

    __tablename__ = "projects"

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(
        sa_column=Column(Integer, ForeignKey("users.id"), nullable=False, index=True)
    )
    name: str = Field(max_length=200)
    source_video_id: int = Field(
        sa_column=Column(Integer, ForeignKey("videos.id"), nullable=False, index=True)
    )
    current_version: int = Field(default=0)
    latest_proxy_id: int | None = Field(default=None)
    latest_export_id: int | None = Field(default=None)
    created_at: datetime = _created()
    # Deleted by its owner: gone from the API; its renders and exports are the GC's
    # (pinned exports stay until unpinned), its videos free to delete.
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class Version(SQLModel, table=True):
    """One numbered state of a project: its parent's effective ops plus its own."""

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_versions_project_number"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(
        sa_column=Column(Integer, ForeignKey("projects.id"), nullable=False, index=True)
    )
    number: int
    # Normally number - 1; a revert points at the older version it restores.
    parent: int | None = Field(default=None)
    # The picture and timeline this version renders, so a new batch validates without
    # replaying the whole history.
    frame_width: int
    frame_height: int
    frame_duration: float
    # Hash chain over every effective op: equal hashes, equal edits (a revert copies it).
    ops_hash: str = Field(max_length=64)
    # How many ops it renders (its parent's plus its own), so a new batch is checked against
    # the history's limit without loading the history.
    op_count: int = Field(default=0)
    actor_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = _created()


class EditOperation(SQLModel, table=True):
    """One typed operation added in a version. Append-only: never updated."""

    __tablename__ = "edit_operations"
    __table_args__ = (
        UniqueConstraint("project_id", "version", "seq", name="uq_edit_operations_position"),
    )

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(
        sa_column=Column(Integer, ForeignKey("projects.id"), nullable=False, index=True)
    )
    version: int
    seq: int
    type: str = Field(max_length=50)
    params: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # The other video a concat op appends, so a referenced video cannot be deleted.
    video_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("videos.id"), nullable=True, index=True)
    )
    created_at: datetime = _created()


class Render(SQLModel, table=True):
    """One proxy or export of one version: a job the workers run, and its outcome."""

    __tablename__ = "renders"
    __table_args__ = (
        UniqueConstraint("project_id", "kind", "version", name="uq_renders_project_kind_version"),
    )

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(
        sa_column=Column(Integer, ForeignKey("projects.id"), nullable=False, index=True)
    )
    kind: RenderKind = Field(sa_type=StateText(RenderKind, 10))
    version: int
    preset: str = Field(max_length=20)
    status: RenderStatus = Field(
        default=RenderStatus.QUEUED, sa_type=StateText(RenderStatus, 10), index=True
    )
    progress: float = Field(default=0.0)
    # Hash of the source bytes, the effective ops and the preset: equal keys, equal output.
    content_key: str = Field(max_length=64, index=True)
    job_id: str = Field(max_length=100)
    output_key: str | None = Field(default=None, max_length=200)
    bytes: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    width: int | None = Field(default=None)
    height: int | None = Field(default=None)
    duration: float | None = Field(default=None)
    error: str | None = Field(default=None, max_length=2000)
    attempts: int = Field(default=0)
    # Asked for by name (requestProxy): a proxy of an old version that renders all the same.
    on_demand: bool = Field(default=False)
    # A running render belongs to the worker holding the lease; an expired lease is free.
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    created_at: datetime = _created()
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class Export(SQLModel, table=True):
    """A full-resolution export a user asked for: pinning and GC state live here."""

    __tablename__ = "exports"
    __table_args__ = (
        UniqueConstraint("project_id", "version", name="uq_exports_project_version"),
        # The GC pages through a state by id: a range of this index, whatever the planner
        # believes about the table (a gc_state index alone made each page sort the state).
        Index("ix_exports_gc_state_id", "gc_state", "id"),
        # Few rows are ever pending: on PostgreSQL only those are indexed, so marking a
        # million exports does not write a million entries here (SQLite indexes them all:
        # its planner would not use a partial index for `files_pending IS 1`).
        Index("ix_exports_files_pending", "files_pending", postgresql_where=text("files_pending")),
    )

    id: int | None = Field(default=None, primary_key=True)
    # Looked up through uq_exports_project_version, whose first column it is.
    project_id: int = Field(sa_column=Column(Integer, ForeignKey("projects.id"), nullable=False))
    version: int
    render_id: int = Field(
        sa_column=Column(Integer, ForeignKey("renders.id"), nullable=False, unique=True)
    )
    pinned: bool = Field(default=False)
    gc_state: GcState = Field(default=GcState.NONE, sa_type=StateText(GcState, 10))
    archive_key: str | None = Field(default=None, max_length=200)
    marked_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    archived_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # Set when a GC step changed gc_state and its files may not agree yet; the step that
    # makes them agree (under this row's lock) clears it, and so does the next run's converge.
    files_pending: bool = Field(default=False)
    created_at: datetime = _created()


class GcAudit(SQLModel, table=True):
    """One row per thing a GC action changed: who, when, what, and how many bytes."""

    __tablename__ = "gc_audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _created()
    actor_id: int | None = Field(default=None, foreign_key="users.id")
    action: str = Field(max_length=20)  # mark | archive | delete | restore | pin
    run_id: int | None = Field(default=None, index=True)  # the GC run that made the change
    export_id: int | None = Field(default=None, index=True)
    blob_sha256: str | None = Field(default=None, max_length=64)
    bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class GcRun(SQLModel, table=True):
    """One GC stage (or full cycle) an admin, the CLI or the cron started, and its progress."""

    __tablename__ = "gc_runs"

    id: int | None = Field(default=None, primary_key=True)
    action: str = Field(max_length=20)  # mark | archive | delete | full-cycle
    status: GcRunStatus = Field(default=GcRunStatus.RUNNING, sa_type=StateText(GcRunStatus, 12))
    actor_id: int | None = Field(default=None, foreign_key="users.id")
    holder: str = Field(max_length=200)  # who started it: "admin alice", "cli on host", "cron"
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    done: int = Field(default=0)
    total: int = Field(default=0)
    marked: int = Field(default=0)
    archived: int = Field(default=0)
    deleted: int = Field(default=0)
    proxies_reclaimed: int = Field(default=0)
    bytes_marked: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    bytes_moved: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    bytes_freed: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    error: str | None = Field(default=None, max_length=2000)
    started_at: datetime = _created()
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class ImportRun(SQLModel, table=True):
    """One run of ``editgraph import``: what it read, who ran it, what it made; undone by
    ``editgraph import undo`` (which removes what the run created)."""

    __tablename__ = "import_runs"

    id: int | None = Field(default=None, primary_key=True)
    source_kind: str = Field(max_length=20)  # folder | vfxb
    source: str = Field(max_length=2000)  # the folders it read, as given
    operator: str = Field(max_length=200)
    status: str = Field(default="running", max_length=20)  # running | done | failed | undone
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    started_at: datetime = _created()
    # Renewed as a running import works: one silent for long was stopped (killed).
    heartbeat_at: datetime = _created()
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class ImportOrigin(SQLModel, table=True):
    """Where an imported row came from: a second run of the same import finds it here and
    creates nothing; an undo finds what its run made."""

    __tablename__ = "import_origins"
    __table_args__ = (
        UniqueConstraint("source_kind", "kind", "source_id", name="uq_import_origins_source"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="import_runs.id", index=True)
    source_kind: str = Field(max_length=200)  # "vfxb", or "folder:" and a hash of its path
    kind: str = Field(max_length=20)  # user | video | project | export
    source_id: str = Field(max_length=500)  # a longer one is stored as its hash
    target_id: int
    # A project's version as imported: an undo is refused once a newer one exists.
    version: int | None = Field(default=None)


class GcLock(SQLModel, table=True):
    """The single row that lets one GC run at a time, cluster-wide: a lease, renewed while
    the run works; a run whose process died frees it when the lease runs out."""

    __tablename__ = "gc_lock"

    id: int = Field(default=1, primary_key=True)
    run_id: int | None = Field(default=None)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class Segment(SQLModel, table=True):
    """A few seconds of proxy picture, stored once under the key of what it shows
    (``jobs.segments``): every version and project that shows the same frames uses it."""

    __tablename__ = "segments"

    key: str = Field(primary_key=True, max_length=64)
    init_sha256: str = Field(max_length=64)  # its initialisation section, stored once
    frames: int
    ticks: int = Field(sa_column=Column(BigInteger, nullable=False))  # its length, in timescale
    timescale: int
    bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    render_id: int | None = Field(default=None)  # the proxy that encoded it (a record only)
    created_at: datetime = _created()
    # When a proxy last listed it: the GC reclaims segments nothing has used for a while.
    used_at: datetime = _created()


class ProxyPlan(SQLModel, table=True):
    """How a segmented proxy is made: how many segments, where its sound is, and whether
    a player can start it yet."""

    __tablename__ = "proxy_plans"

    render_id: int = Field(
        sa_column=Column(Integer, ForeignKey("renders.id"), primary_key=True, autoincrement=False)
    )
    total: int
    # The sound's folder (``keys.proxy_sound``), shared by every plan whose sound is the same.
    audio_key: str | None = Field(default=None, max_length=200, index=True)
    audio_done: bool = Field(default=False)
    playable: bool = Field(default=False)


class PlanSegment(SQLModel, table=True):
    """The segment at one position of a proxy's playlist."""

    __tablename__ = "plan_segments"

    render_id: int = Field(
        sa_column=Column(Integer, ForeignKey("renders.id"), primary_key=True, autoincrement=False)
    )
    position: int = Field(primary_key=True)
    segment_key: str = Field(max_length=64, index=True)

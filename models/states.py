"""The vocabularies of persisted rows, each defined once: the tables store them, the domain
decides with them, and the schema shows them (``strawberry.enum`` wraps these classes)."""

from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import String
from sqlalchemy.types import TypeDecorator

E = TypeVar("E", bound=StrEnum)


class RenderKind(StrEnum):
    """What a render makes: a small proxy to preview, or a full-resolution export."""

    PROXY = "proxy"
    EXPORT = "export"


class RenderStatus(StrEnum):
    """Where a render is in its life; ``resolvers.lifecycle`` makes every change."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # A proxy of an old version whose file the GC took back; asking for it renders it again.
    RECLAIMED = "reclaimed"


class GcState(StrEnum):
    """Where an export is in garbage collection: none → marked → archived → deleted."""

    NONE = "none"
    MARKED = "marked"
    ARCHIVED = "archived"
    DELETED = "deleted"


class GcRunStatus(StrEnum):
    """Where a GC run is; it holds the cluster-wide GC lock while RUNNING."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class StateText(TypeDecorator[E]):
    """A state stored as its text (a plain VARCHAR, as the migrations made it) and read back
    as the enum member, on SQLite and PostgreSQL alike."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int) -> None:
        super().__init__(length=length)
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        # A plain string is checked too: a misspelt state fails here, not in a later read.
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: Any, dialect: Any) -> E | None:
        return None if value is None else self.enum(value)

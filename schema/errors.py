"""Expected failures as schema types; each carries a message a person can read."""

import strawberry

from resolvers import errors as domain


@strawberry.type(description="The object does not exist, or is not yours.")
class NotFound:
    message: str

    @classmethod
    def of(cls, exc: domain.NotFoundError) -> "NotFound":
        return cls(message=exc.message)


@strawberry.type(description="The project moved on since the version you edited from.")
class VersionConflict:
    message: str
    current_version: int

    @classmethod
    def of(cls, exc: domain.VersionConflictError) -> "VersionConflict":
        return cls(message=exc.message, current_version=exc.current_version)


@strawberry.type(description="One problem in a batch of ops.")
class OpError:
    index: int
    field: str | None
    message: str


@strawberry.type(description="The batch has invalid ops; nothing was saved.")
class InvalidOps:
    message: str
    errors: list[OpError]

    @classmethod
    def of(cls, exc: domain.InvalidOpsError) -> "InvalidOps":
        return cls(
            message=exc.message,
            errors=[OpError(index=e.index, field=e.field, message=e.message) for e in exc.errors],
        )


@strawberry.type(description="The upload is not a video editgraph can edit; nothing was kept.")
class InvalidMedia:
    message: str

    @classmethod
    def of(cls, exc: domain.InvalidMediaError) -> "InvalidMedia":
        return cls(message=exc.message)


@strawberry.type(description="The upload is over the size limit; nothing was kept.")
class TooLarge:
    message: str
    limit_bytes: float


@strawberry.type(description="Projects still use this video.")
class VideoInUse:
    message: str
    project_ids: list[strawberry.ID]

"""Expected failures, each with its code. ``schema/errors.py`` is the one place that turns
them into GraphQL errors (``extensions.code``) or union members."""

from dataclasses import dataclass
from datetime import datetime


class DomainError(Exception):
    """A failure the caller can act on; ``message`` is written for a person, ``code`` for
    a program.

    ``extensions`` is a dict attribute on purpose: graphql-core gives every GraphQL error
    it wraps around an exception that exception's ``extensions`` dict, so a domain error
    raised anywhere (resolver, subscription, extension, any transport) carries its code
    without a pass over the results."""

    code = "BAD_USER_INPUT"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def extensions(self) -> dict[str, object]:
        """What a client receives beside the message: the code, and subclasses' extras."""
        return {"code": self.code}


class NotFoundError(DomainError):
    """The object does not exist, or belongs to someone else (the two are not told apart)."""

    code = "NOT_FOUND"

    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"{kind} {ident} was not found")
        self.kind = kind


class VersionConflictError(DomainError):
    """The caller edited from a version that is no longer current."""

    code = "VERSION_CONFLICT"

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(
            f"the project is at version {current}, not {expected}: "
            "reload it and apply the edit again"
        )
        self.current_version = current

    @property
    def extensions(self) -> dict[str, object]:
        return {"code": self.code, "currentVersion": self.current_version}


class InvalidMediaError(DomainError):
    """An upload that is not a video editgraph can edit."""

    code = "INVALID_MEDIA"


class TooLargeError(DomainError):
    """An upload over the size limit."""

    code = "TOO_LARGE"

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"the file is larger than the upload limit of {limit_bytes} bytes")
        self.limit_bytes = limit_bytes

    @property
    def extensions(self) -> dict[str, object]:
        return {"code": self.code, "limitBytes": self.limit_bytes}


class VideoInUseError(DomainError):
    """A video that projects still use cannot be deleted."""

    code = "VIDEO_IN_USE"

    def __init__(self, project_ids: list[int]) -> None:
        super().__init__(
            f"the video is used by {len(project_ids)} project(s); delete or change them first"
        )
        self.project_ids = project_ids


@dataclass(frozen=True)
class OpError:
    """One problem in a batch of ops: which op, which parameter, and why."""

    index: int
    field: str | None
    message: str


class InvalidOpsError(DomainError):
    """A batch with at least one invalid op; nothing of it was written."""

    code = "INVALID_OPS"

    def __init__(self, errors: list[OpError]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the ops; nothing was saved")
        self.errors = errors


class BadInputError(DomainError):
    """An argument outside what the API accepts (for example a malformed cursor)."""


class RateLimitedError(DomainError):
    """Too much render work asked for in the current window; nothing was queued."""

    code = "RATE_LIMITED"

    def __init__(self, what: str, limit: int, window_s: int, retry_after: int) -> None:
        super().__init__(f"at most {limit} {what} per {window_s} s; try again in {retry_after} s")
        self.retry_after = retry_after

    @property
    def extensions(self) -> dict[str, object]:
        return {"code": self.code, "retryAfter": self.retry_after}


class ConfirmationRequiredError(DomainError):
    """Permanent deletion was asked for without ``confirm: true``."""

    code = "CONFIRMATION_REQUIRED"

    def __init__(self) -> None:
        super().__init__("permanent deletion needs confirm: true; nothing was deleted")


class GcBusyError(DomainError):
    """Another GC run holds the cluster-wide GC lock."""

    code = "GC_BUSY"

    def __init__(self, run_id: int, holder: str, since: datetime) -> None:
        super().__init__(
            f"GC run {run_id} ({holder}) has been running since {since:%Y-%m-%d %H:%M:%S} UTC; "
            "wait for it to finish"
        )
        self.run_id, self.holder, self.since = run_id, holder, since

    @property
    def extensions(self) -> dict[str, object]:
        return {
            "code": self.code,
            "runId": self.run_id,
            "holder": self.holder,
            "since": self.since.isoformat(),
        }


class MediaMissingError(DomainError):
    """A file the database says exists is gone; nothing was changed."""

    code = "MEDIA_MISSING"


class StorageUnavailableError(DomainError):
    """The media store (a bucket) did not answer; nothing was kept. Try again later."""

    code = "STORAGE_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__(
            "the media storage did not answer: nothing was kept, try again in a moment"
        )


# Raised at the edge (schema/, editgraph/), not by the domain; their codes belong here too.


class UnauthenticatedError(DomainError):
    """No valid bearer token came with the request: none at all, or one that is unknown,
    revoked or expired (``presented``). Same code, a message that says which."""

    code = "UNAUTHENTICATED"
    MISSING = "sign in: send 'Authorization: Bearer <token>'"
    INVALID = "the bearer token is not valid: it is unknown, revoked or expired"

    def __init__(self, presented: bool = False) -> None:
        super().__init__(self.INVALID if presented else self.MISSING)


class ForbiddenError(DomainError):
    """The caller is signed in but may not use this field."""

    code = "FORBIDDEN"


class QueryTooComplexError(DomainError):
    """A request over one of the query limits; refused before it ran."""

    code = "QUERY_TOO_COMPLEX"

"""The GraphQL multipart request, streamed: file parts go straight to ``temp/``, hashed."""

import json
import time
from dataclasses import dataclass, field
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from models.store import MediaStore, StagedFile, StagingFile, StorageFull, UploadTooLarge
from resolvers import telemetry

MAX_FIELD_BYTES = 1024 * 1024  # operations and map are small JSON documents
MAX_PARTS = 16
# Room for the operations/map fields around the file itself.
BODY_SLACK = MAX_PARTS * MAX_FIELD_BYTES


class MultipartError(Exception):
    """A body that breaks the multipart spec or its limits; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)
    staging: StagingFile | None = None
    rejected: UploadTooLarge | None = None


@dataclass
class ParsedMultipart:
    """The JSON fields and the uploaded files of one request."""

    fields: dict[str, Any]
    files: dict[str, StagedFile | UploadTooLarge]

    def discard(self) -> None:
        """Remove staged files nobody adopted (the resolver moves the ones it keeps)."""
        for f in self.files.values():
            if isinstance(f, StagedFile):
                f.discard()


def declared_over(content_length: str | None, limit: int) -> bool:
    """Whether a Content-Length header declares more than ``limit`` bytes."""
    if content_length is None or not (content_length.isascii() and content_length.isdigit()):
        return False  # absent or malformed: the bytes are counted as they arrive
    # No int() of a 5,000-digit header: any length past 18 digits is over every limit.
    return len(content_length) > 18 or int(content_length) > limit


async def parse(request: Request, store: MediaStore, *, max_file_bytes: int) -> ParsedMultipart:
    """Stream a multipart body; memory stays flat whatever the file size."""
    max_body = max_file_bytes + BODY_SLACK
    if declared_over(request.headers.get("content-length"), max_body):
        raise MultipartError(
            413, f"the request body is over the {max_file_bytes} byte upload limit"
        )
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if not boundary:
        raise MultipartError(400, "multipart body without a boundary")

    parts: list[_Part] = []
    header_name = bytearray()
    header_value = bytearray()
    headers: dict[bytes, bytes] = {}
    current = _Part()
    failure: list[MultipartError] = []

    def on_part_begin() -> None:
        nonlocal current
        if len(parts) >= MAX_PARTS:
            raise MultipartError(400, f"too many parts: at most {MAX_PARTS}")
        headers.clear()
        current = _Part()
        parts.append(current)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(header_name).lower()] = bytes(header_value)
        header_name.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        current.name = disposition.get(b"name", b"").decode(errors="replace")
        if any(p.name == current.name for p in parts if p is not current):
            raise MultipartError(400, f"the part {current.name!r} appears twice")
        raw_filename = disposition.get(b"filename")
        if raw_filename is not None:
            current.filename = raw_filename.decode(errors="replace")
            current.staging = store.stage(current.filename, max_bytes=max_file_bytes)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if current.staging is not None:
            try:
                current.staging.write(chunk)
            except UploadTooLarge as exc:
                current.staging = None
                current.rejected = exc
        elif current.rejected is None:
            current.data.extend(chunk)
            if len(current.data) > MAX_FIELD_BYTES:
                raise MultipartError(
                    400, f"the field {current.name!r} is over {MAX_FIELD_BYTES} bytes"
                )

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )
    received = 0
    started = time.perf_counter()
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_body:
                raise MultipartError(
                    413, f"the request body is over the {max_file_bytes} byte limit"
                )
            parser.write(chunk)
        parser.finalize()
    except MultipartError as exc:
        failure.append(exc)
    except StorageFull as exc:
        failure.append(_storage_full(exc))
    except Exception as exc:  # the parser's own errors: malformed framing
        failure.append(MultipartError(400, f"malformed multipart body: {exc}"))
    except BaseException:  # cancelled mid-body (the client went away): keep nothing
        for part in parts:
            if part.staging is not None:
                part.staging.discard()
        raise
    finally:
        telemetry.upload_bytes.inc(received)
        telemetry.upload_seconds.inc(time.perf_counter() - started)
    telemetry.uploads.labels("refused" if failure else "received").inc()
    if failure:
        for part in parts:
            if part.staging is not None:
                part.staging.discard()
        raise failure[0]
    try:
        return _collect(parts)
    except StorageFull as exc:  # the last buffered bytes did not fit
        for part in parts:
            if part.staging is not None:
                part.staging.discard()
        raise _storage_full(exc) from exc


def _storage_full(exc: StorageFull) -> MultipartError:
    """HTTP 507 Insufficient Storage, with the code a client can act on."""
    return MultipartError(507, f"STORAGE_FULL: {exc}")


def _collect(parts: list[_Part]) -> ParsedMultipart:
    fields: dict[str, Any] = {}
    files: dict[str, StagedFile | UploadTooLarge] = {}
    for part in parts:
        if part.rejected is not None:
            files[part.name] = part.rejected
        elif part.staging is not None:
            files[part.name] = part.staging.finish()
        else:
            try:
                fields[part.name] = json.loads(part.data.decode())
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                fields[part.name] = part.data.decode(errors="replace")
    return ParsedMultipart(fields, files)

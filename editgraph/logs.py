"""Log lines an operator can use: one format for every process (text, or JSON with
``EDITGRAPH_LOG_FORMAT=json``), and a request id on every line a request causes, returned
to the client in the ``X-Request-Id`` header so a user's report finds its lines."""

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-Id"
# A client's own id is kept when it is short and plain (it ends up in log lines).
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
request_id: ContextVar[str | None] = ContextVar("editgraph_request_id", default=None)
# LogRecord attributes every record has; anything else was passed in ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on each record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and the fields a
    call passed in ``extra`` (operation, user_id, duration_ms, outcome, …)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """The plain format, with the request id and ``extra`` fields as ``key=value``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if "\n" in message or "\r" in message:  # a client's text cannot start a line of its own
            escaped = message.replace("\r", "\\r").replace("\n", "\\n")
            record = logging.makeLogRecord({**vars(record), "msg": escaped, "args": None})
        text = super().format(record)
        fields = {
            k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")
        }
        rid = fields.pop("request_id", "-")
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        head, _, rest = text.partition("\n")  # a traceback stays below the line
        if rid != "-":
            head += f" request_id={rid}"
        if tail:
            head += f" {tail}"
        return head + ("\n" + rest if rest else "")


def configure(log_format: Literal["text", "json"] = "text", level: str = "info") -> None:
    """Send every logger (editgraph's, uvicorn's, arq's) to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own handlers would print its lines a second time, in its own format.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Alembic narrates every start-up's migration check; its warnings still show.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))


def new_id() -> str:
    """A fresh request id."""
    return uuid.uuid4().hex


class RequestIds:
    """ASGI middleware: each HTTP request and websocket gets an id (the client's
    ``X-Request-Id`` if it sent a plain one), set for its log lines and echoed back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or ()).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _CLIENT_ID.fullmatch(given) else new_id()
        token = request_id.set(rid)

        async def with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message.setdefault("headers", [])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, with_id)
        finally:
            request_id.reset(token)

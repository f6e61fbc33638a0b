"""The domain's own metrics, counted where things happen (a render's lifecycle, an upload)
in whichever process does them: a worker's renders show on that worker's metrics listener.
Figures the database already holds (queue depth, GC totals) are read at scrape time by
``editgraph.metrics`` instead. No label names a user or a project."""

from datetime import datetime

from prometheus_client import Counter, Histogram

from models.tables import Render

_SECONDS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)

render_attempts = Counter(
    "editgraph_render_attempts", "Render attempts started (claims by a worker)", ["kind"]
)
render_retries = Counter(
    "editgraph_render_retries", "Attempts handed back to run again after a failure", ["kind"]
)
render_leases_lost = Counter(
    "editgraph_render_leases_lost",
    "Renders taken over because the worker running them stopped renewing its lease",
    ["kind"],
)
render_duration = Histogram(
    "editgraph_render_duration_seconds",
    "Wall time of a render attempt, from its claim to its end",
    ["kind", "outcome"],
    buckets=_SECONDS,
)
render_realtime_factor = Histogram(
    "editgraph_render_realtime_factor",
    "Seconds of media rendered per second of wall time, per finished render",
    ["kind"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
upload_bytes = Counter("editgraph_upload_bytes", "Bytes received in uploads")
upload_seconds = Counter("editgraph_upload_seconds", "Seconds spent receiving uploads")
uploads = Counter("editgraph_uploads", "Uploads received, by outcome", ["outcome"])

# The label a finished render's status gives its duration.
_OUTCOMES = {"done": "done", "failed": "failed", "cancelled": "cancelled"}


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def render_changed(status: str, render: Render) -> None:
    """Count one change of a render's status (``resolvers.lifecycle`` calls it for each)."""
    kind = render.kind.value
    if status == "running":
        render_attempts.labels(kind).inc()
    elif status == "queued" and render.error:
        render_retries.labels(kind).inc()
    elif status in _OUTCOMES:
        wall = _seconds(render.started_at, render.finished_at)
        if wall is None:  # cancelled before any attempt started: no render time
            return
        render_duration.labels(kind, _OUTCOMES[status]).observe(wall)
        if status == "done" and render.duration and wall > 0:
            render_realtime_factor.labels(kind).observe(render.duration / wall)

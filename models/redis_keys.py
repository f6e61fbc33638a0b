"""Every name editgraph gives a thing in Redis, in one place (arq names its own keys in
``arq.constants``). Redis is only delivery and coordination: nothing here is the source of
truth, but two processes must agree on each name."""

PREFIX = "editgraph"
EVENTS_PATTERN = f"{PREFIX}:events:*"


def render_job(kind: str, project_id: int, version: int) -> str:
    """The arq job id of a render: deterministic, so a second enqueue collapses into the first."""
    return f"{kind}:{project_id}:{version}"


def mezzanine_job(blob_id: int) -> str:
    """The arq job id that makes a source's 480p copy."""
    return f"mezzanine:{blob_id}"


def events_channel(project_id: int) -> str:
    """The pub/sub channel of one project's render events."""
    return f"{PREFIX}:events:{project_id}"


def events_stream(project_id: int) -> str:
    """The capped stream that keeps one project's recent events for replay."""
    return f"{PREFIX}:stream:{project_id}"


def rate_window(kind: str, user_id: int, window: int) -> str:
    """A user's count of renders of ``kind`` in one rate-limit window."""
    return f"{PREFIX}:rate:{kind}:{user_id}:{window}"


def mezzanine_lock(sha256: str) -> str:
    """Held while one worker makes a source's 480p copy."""
    return f"{PREFIX}:lock:mezzanine:{sha256}"


def sound_lock(key: str) -> str:
    """Held while one worker makes a proxy's sound (stored once per content key)."""
    return f"{PREFIX}:lock:sound:{key}"


def part_claim(render_id: int, attempt: int, position: int) -> str:
    """Held by the worker encoding the part of a proxy that starts at ``position``."""
    return f"{PREFIX}:lock:part:{render_id}:{attempt}:{position}"


def part_job(render_id: int, attempt: int, position: int) -> str:
    """The arq job id offering that part to an idle worker."""
    return f"proxy-part:{render_id}:{attempt}:{position}"


def subscribers(user_id: int) -> str:
    """A sorted set of one user's live subscriptions on every server (member: server and
    feed; score: when it lapses unless its server renews it)."""
    return f"{PREFIX}:subs:{user_id}"

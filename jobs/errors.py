"""How a render can fail: permanently (say why, once) or transiently (retry)."""

import os

from models.store import NO_SPACE


class Permanent(Exception):
    """A failure another attempt would repeat: say why, fail once."""


class Transient(Exception):
    """A failure another attempt may not meet: retried with backoff."""


class StorageFull(Transient):
    """The media storage is full: the render waits for space without spending an attempt."""

    def __init__(self) -> None:
        super().__init__("waiting for disk space: the media storage is full")


def out_of_space(stderr: str) -> bool:
    """Whether ffmpeg stopped because the disk (or quota) is full; it prints strerror."""
    return any(os.strerror(code) in stderr for code in NO_SPACE)

"""How a render can fail: permanently (say why, once) or transiently (retry)."""


class Permanent(Exception):
    """A failure another attempt would repeat: say why, fail once."""


class Transient(Exception):
    """A failure another attempt may not meet: retried with backoff."""

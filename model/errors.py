"""Domain errors of the engine; the transport maps each to a status code in one table."""


class SentiError(Exception):
    """Base of every error the engine raises on purpose; its message is safe to show to a caller."""


class InvalidInput(SentiError):
    """The request itself is wrong: the caller must change it."""


class Overloaded(SentiError):
    """The batch queue is full: the caller should retry with backoff."""


class NotReady(SentiError):
    """The engine is not warmed up yet, or the server is shutting down."""


SHUTTING_DOWN = "the server is shutting down; retry on another replica"


class DeadlineExceeded(SentiError):
    """The caller's deadline passed before the work ran; no inference was spent on it."""


class Cancelled(SentiError):
    """The caller cancelled; queued work was skipped."""


class Unsupported(SentiError):
    """No loaded model serves the requested task."""


class NotFound(SentiError):
    """The request names something the server does not have (e.g. an unregistered classifier)."""

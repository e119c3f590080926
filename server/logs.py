"""Structured JSON logs, one object per line, with the request id of the RPC being served.

The request id lives in a context variable set by the logging interceptor for the duration of a handler, so
any log line written while serving a request (handlers, errors, engine) carries it without being passed
around. Secrets never reach a log line: the access log names the RPC, the peer, the client and the status,
never metadata values or request bodies.
"""
import contextvars
import json
import logging
import sys
import time
import traceback

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("senti_request_id", default=None)

# LogRecord attributes that are not "extra" fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: ts, level, logger, msg, request_id, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            entry["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Sends every log line to stderr, as JSON (fmt 'json') or as plain text (fmt 'text')."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())

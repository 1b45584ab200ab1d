"""Log lines: one JSON object per line on stderr (or plain text), each with the request id.

`configure_logging` installs one handler on the root logger, so the app's own
loggers, Litestar's and uvicorn's (`python -m app` hands uvicorn no logging
config of its own) all come out in the same format. Every line written while a
request is served carries that request's id. Nothing here logs headers, so the
`X-API-Key` header (and the `API_KEY` setting, a SecretStr) never reach a line.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal

import msgspec
from litestar.exceptions import HTTPException

from app.errors import RecoError
from app.observability.context import current_request_id

LogFormat = Literal["json", "text"]

#: Attributes every LogRecord has; anything else on a record came from `extra=`.
#: (uvicorn adds `color_message`, its message with terminal colours: no use in JSON.)
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "request_id",
    "color_message",
}
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Stamp each record with the current request id (None outside a request).

    A filter on the handler runs in the thread and context that logged, so the id
    is the right one even when the formatting happens later.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Add `record.request_id`; never drops a record."""
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request_id, extras."""

    _encoder = msgspec.json.Encoder(enc_hook=str)

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single line of JSON (tracebacks included as a string)."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return self._encoder.encode(line).decode()


class TextFormatter(logging.Formatter):
    """`time level logger [request id] message`, with `-` outside a request."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        """Format with `-` for a missing request id."""
        values = dict(vars(record))
        if values.get("request_id") is None:
            values["request_id"] = "-"
        return self._style._fmt % values


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (pytest swaps it per test)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr


def configure_logging(log_format: LogFormat, stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record at INFO and above to `stream` (default: stderr) as `log_format`.

    Replaces the handler an earlier call installed (tests build many apps), and
    leaves any other handler on the root logger alone.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_hometown", False)]:
        root.removeHandler(old)
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler._hometown = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


_errors = logging.getLogger("app.errors")


async def log_unexpected(exc: BaseException, scope: Any) -> None:
    """Litestar `after_exception` hook: log an unexpected exception (a 500) with its traceback.

    Litestar's own logging config is off (it would replace our handler with its
    own format), and with it its exception logging. Domain errors (`RecoError`,
    which logs its 5xx itself) and HTTP errors (4xx by design) are not unexpected.
    """
    if isinstance(exc, RecoError | HTTPException):
        return
    _errors.error(
        "%s %s failed: %s",
        scope.get("method"),
        scope.get("path"),
        type(exc).__name__,
        exc_info=(type(exc), exc, exc.__traceback__),
    )

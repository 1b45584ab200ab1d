"""Domain errors and the one place that maps them to HTTP statuses.

Domain code raises these, never `HTTPException`, so the services stay testable
without a web framework; `EXCEPTION_HANDLERS` turns them into JSON bodies.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from litestar import MediaType, Request, Response
from litestar.datastructures import State

log = logging.getLogger("app")


class RecoError(Exception):
    """Base class: an error the API reports with a status and a message."""

    status_code = 500

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class UserNotFound(RecoError):
    """The request names a user the database does not have."""

    status_code = 404

    def __init__(self, user_id: str) -> None:
        shown = user_id if len(user_id) <= 80 else user_id[:77] + "..."
        super().__init__(f"unknown user_id {shown!r}")


class DatabaseUnavailable(RecoError):
    """The database did not answer in time; the client may retry shortly."""

    status_code = 503


class DatabaseBusy(DatabaseUnavailable):
    """Every pooled connection stayed busy for the whole acquire timeout."""


class DatabaseTimeout(DatabaseUnavailable):
    """A query ran past the statement (or lock) timeout and was cancelled."""


class Unauthorized(RecoError):
    """A write without the right `X-API-Key`."""

    status_code = 401


class WritesDisabled(RecoError):
    """The server has no API key configured, so it accepts no writes at all."""

    status_code = 503


class StreamNotFound(RecoError):
    """A single-stream update names a stream the database does not have."""

    status_code = 404

    def __init__(self, stream_id: str) -> None:
        shown = stream_id if len(stream_id) <= 80 else stream_id[:77] + "..."
        super().__init__(f"unknown stream_id {shown!r}")


class ModelUnavailable(RecoError):
    """No usable click model is loaded; the message says why and how to train one."""

    status_code = 503


class ThrottledLog:
    """At most `burst` log lines per kind of failure per `every_s`, then a count.

    A database outage fails every request the same way, a thousand times a
    second: the first lines say what happened, then one line per window says how
    many more there were. A handful of failures is logged line by line, each with
    its request id.
    """

    def __init__(
        self, every_s: float = 5.0, burst: int = 10, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every_s = every_s
        self.burst = burst
        self.clock = clock
        self.window: dict[str, tuple[float, int]] = {}  # kind -> (window start, lines in it)
        self.held: dict[str, int] = {}

    def error(self, kind: str, message: str) -> None:
        """Log `message` unless this `kind` already used its lines in the current window."""
        self.log(kind, message, logging.ERROR)

    def warning(self, kind: str, message: str) -> None:
        """`error`, at warning level: for what the server handles as designed."""
        self.log(kind, message, logging.WARNING)

    def log(self, kind: str, message: str, level: int) -> None:
        """Log `message` at `level`, unless this `kind` used its lines in the current window."""
        now = self.clock()
        start, used = self.window.get(kind, (-math.inf, 0))
        if now - start >= self.every_s:
            start, used = now, 0
        if used >= self.burst:
            self.held[kind] = self.held.get(kind, 0) + 1
            self.window[kind] = (start, used)
            return
        held = self.held.pop(kind, 0)
        self.window[kind] = (start, used + 1)
        log.log(level, "%s%s", message, f" ({held} more like it held back)" if held else "")


_failures = ThrottledLog()


def reco_error_handler(request: Request[object, object, State], exc: RecoError) -> Response[object]:
    """Render a `RecoError` as `{"status_code", "detail"}` JSON, like Litestar's own errors."""
    if exc.status_code >= 500:
        failures = request.app.state.get("failure_log", _failures)  # one per app
        failures.error(
            f"{type(exc).__name__} {request.url.path}",
            f"{request.method} {request.url.path} failed: {exc.message}",
        )
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
    return Response(
        {"status_code": exc.status_code, "detail": exc.message},
        status_code=exc.status_code,
        media_type=MediaType.JSON,
        headers=headers,
    )


EXCEPTION_HANDLERS = {RecoError: reco_error_handler}

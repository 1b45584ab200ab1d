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
    """One log line per kind of failure per `every_s`, then a count of those held back.

    A database outage fails every request the same way, a thousand times a
    second; the first line says what happened, the next ones only how often.
    """

    def __init__(self, every_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self.last: dict[str, float] = {}
        self.held: dict[str, int] = {}

    def error(self, kind: str, message: str) -> None:
        """Log `message` unless a line of this `kind` went out less than `every_s` ago."""
        now = self.clock()
        if now - self.last.get(kind, -math.inf) < self.every_s:
            self.held[kind] = self.held.get(kind, 0) + 1
            return
        held = self.held.pop(kind, 0)
        self.last[kind] = now
        log.error("%s%s", message, f" ({held} more like it since the last line)" if held else "")


_failures = ThrottledLog()


def reco_error_handler(request: Request[object, object, State], exc: RecoError) -> Response[object]:
    """Render a `RecoError` as `{"status_code", "detail"}` JSON, like Litestar's own errors."""
    if exc.status_code >= 500:
        _failures.error(
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

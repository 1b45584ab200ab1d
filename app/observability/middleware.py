"""The outermost ASGI layer: request id in, `X-Request-ID` out, metrics and the access line.

It wraps Litestar's whole ASGI handler (routing and the exception middleware
included), so 404s from routing, 413s, 5xx from exception handlers: every
response carries the id, and every request is timed and logged once.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from app.observability.context import begin_request, end_request
from app.observability.metrics import Metrics

access_log = logging.getLogger("app.access")

HEADER = b"x-request-id"
#: An incoming id is kept when it is this well-formed (it ends up in headers and logs).
WELL_FORMED = re.compile(rb"[A-Za-z0-9._-]{1,64}")

ASGIApp = Any  # (scope, receive, send) -> Awaitable[None]; Litestar's types are too strict here


def incoming_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The request's own `X-Request-ID`, if it sent a well-formed one."""
    for name, value in headers:
        if name == HEADER:  # ASGI servers lower-case header names
            return value.decode("ascii") if WELL_FORMED.fullmatch(value) else None
    return None


class Observability:
    """ASGI middleware: request id, latency histogram, search/update notes, access line."""

    def __init__(self, app: ASGIApp, metrics: Metrics, *, log_access: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.log_access = log_access

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve one connection; only HTTP requests are observed."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_id(scope["headers"]) or uuid.uuid4().hex
        header = (HEADER, request_id.encode("ascii"))
        record, token = begin_request(request_id)
        status = 500  # if the app fails before it starts a response
        started = time.perf_counter()

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers")
                if isinstance(headers, list):
                    headers.append(header)
                else:
                    message["headers"] = [*(headers or ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"]
            self.metrics.observe(scope.get("path_template"), method, status, seconds, record)
            if self.log_access and access_log.isEnabledFor(logging.INFO):
                _log_access(scope, method, status, seconds)
            end_request(token)


def _log_access(scope: Any, method: str, status: int, seconds: float) -> None:
    """The access line: message for people, fields for machines.

    Built with `makeRecord` + `handle` rather than `info()`, which would walk the
    stack for the caller's file and line on every request (a third of the line's
    cost) to report this function, which says nothing.
    """
    client = scope.get("client")
    path = scope["path"]
    ms = round(seconds * 1000.0, 3)
    record = access_log.makeRecord(
        access_log.name,
        logging.INFO,
        __file__,
        0,
        "%s %s %d %.3f ms",
        (method, path, status, ms),
        None,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": ms,
            "client": client[0] if client else None,
        },
    )
    access_log.handle(record)

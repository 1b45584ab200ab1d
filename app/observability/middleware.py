"""The outermost ASGI layer: request id in, `X-Request-ID` out, metrics and the access line.

It wraps Litestar's whole ASGI handler (routing and the exception middleware
included), so 404s from routing, 413s, 5xx from exception handlers: every
response carries the id, and every request is timed and logged once.

It also settles what the request is before Litestar sees it:

- the client address, from a trusted proxy's `X-Forwarded-For` (app/transport/proxies.py);
- `HEAD` is served as `GET` without the body, so it answers wherever `GET` does;
- a path whose percent-escapes are not UTF-8 is a 400 (the server would turn every
  bad byte into U+FFFD, so `%FF` and `%FE` would name the same stream);
- a client that hangs up before its response is complete is counted and logged
  as a client abort, status 499 (nginx's convention), not as the 500 the app's
  unfinished body read would report.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import unquote_to_bytes

from app.observability.context import begin_request, end_request
from app.observability.metrics import Metrics
from app.transport.answers import send_json
from app.transport.flags import BODY_TIMED_OUT, CLIENT_GONE
from app.transport.proxies import ClientAddress

access_log = logging.getLogger("app.access")

HEADER = b"x-request-id"
#: An incoming id is kept when it is this well-formed (it ends up in headers and logs).
WELL_FORMED = re.compile(rb"[A-Za-z0-9._-]{1,64}")

ASGIApp = Any  # (scope, receive, send) -> Awaitable[None]; Litestar's types are too strict here

#: The status a request gets in the metrics and the access log when the client
#: went away before its response was complete (nginx's "client closed request").
CLIENT_ABORT = 499
BAD_PATH_BODY = (
    b'{"status_code":400,"detail":"the path is not valid UTF-8 once its %-escapes are decoded"}'
)


def incoming_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The request's own `X-Request-ID`, if it sent a well-formed one."""
    for name, value in headers:
        if name == HEADER:  # ASGI servers lower-case header names
            return value.decode("ascii") if WELL_FORMED.fullmatch(value) else None
    return None


class Observability:
    """ASGI middleware: request id, latency histogram, search/update notes, access line."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        *,
        log_access: bool,
        clients: ClientAddress | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.log_access = log_access
        self.clients = clients or ClientAddress(())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve one connection; only HTTP requests are observed."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_id(scope["headers"]) or uuid.uuid4().hex
        header = (HEADER, request_id.encode("ascii"))
        record, token = begin_request(request_id)
        status = 500  # if the app fails before it starts a response
        complete = False  # the last body message went to the server
        gone = False  # the client hung up before that
        started = time.perf_counter()
        self.clients.resolve(scope)
        method = scope["method"]
        head = method == "HEAD"
        # HEAD is GET without the body; uvicorn keeps its own scope (method HEAD)
        # and so sends no body either way.
        app_scope = {**scope, "method": "GET"} if head else scope

        async def send_with_id(message: Any) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers")
                if isinstance(headers, list):
                    headers.append(header)
                else:
                    message["headers"] = [*(headers or ()), header]
            elif message["type"] == "http.response.body":
                if head and message.get("body"):
                    message = {**message, "body": b""}
                complete = complete or not message.get("more_body", False)
            await send(message)

        async def receive_watching() -> Any:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect" and not complete:
                gone = True
            return message

        try:
            if _bad_path(scope):
                await send_json(send_with_id, 400, BAD_PATH_BODY)
            else:
                await self.app(app_scope, receive_watching, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            if scope.get(BODY_TIMED_OUT):
                status = 408  # the protocol answered it (app/transport/protocol.py)
            elif gone or scope.get(CLIENT_GONE):
                status = CLIENT_ABORT
            self.metrics.observe(app_scope.get("path_template"), method, status, seconds, record)
            if self.log_access and access_log.isEnabledFor(logging.INFO):
                _log_access(scope, method, status, seconds)
            end_request(token)


def _bad_path(scope: Any) -> bool:
    """Whether the raw path's %-escapes decode to bytes that are not UTF-8."""
    raw = scope.get("raw_path")
    if not raw or b"%" not in raw:
        return False
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


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

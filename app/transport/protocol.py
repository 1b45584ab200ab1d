"""uvicorn's httptools protocol with the limits it lacks: read deadlines and a connection cap.

uvicorn (0.54) arms no timer until a connection has had its first response: a
connection that never sends a byte, or sends half a request head, or a body that
stalls, is held forever, with its file descriptor. Enough of them (20,000 silent
connections did it) exhaust the process's descriptors, and then every request
fails, `GET /live` included. This subclass adds:

- `REQUEST_HEAD_TIMEOUT`: a request's head (line and headers) must be complete
  this many seconds after the connection opens or the previous response ends;
  otherwise the connection is closed;
- `REQUEST_BODY_TIMEOUT`: its body must be complete this many seconds after the
  head; otherwise 408 and the connection is closed (the access line says 408);
- `MAX_CONNECTIONS`: a connection accepted while that many are open is answered
  503 (`Retry-After: 1`) as soon as its head arrives, or closed after
  `OVER_CAPACITY_GRACE_S` if it sends none; so an over-capacity flood holds its
  descriptors for about a second, not for a whole head timeout;
- a hard ceiling from the descriptor limit (`connection_ceiling`): past it a new
  connection is reset at once, so the process never runs out of descriptors;
- the raw `X-API-Key` value: the parser strips the whitespace before a header
  value, so `X-API-Key:<TAB>KEY` would pass as `KEY`; the value the app sees is
  the raw one (after the one conventional space), which the key check compares
  exactly;
- the scope flags of app/transport/flags.py (client gone, body timed out).

Every refusal is logged, at most a few lines per kind per few seconds (`ThrottledLog`).
"""

from __future__ import annotations

import asyncio
import re
import resource
from dataclasses import dataclass, field
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.errors import ThrottledLog
from app.transport.answers import send_json
from app.transport.flags import BODY_TIMED_OUT, CLIENT_GONE

#: How long a connection accepted past MAX_CONNECTIONS may take to send its head.
OVER_CAPACITY_GRACE_S = 1.0
#: Descriptors kept for everything but client connections: the listening socket,
#: the database pool (added on top), the model file, logs, the event loop's own.
RESERVED_FDS = 64
#: Largest request head accepted (431 past it); the parser itself sets no limit.
MAX_HEAD_BYTES = 64 * 1024
#: Why the protocol refused or cut off a connection (the metrics' `reason` label).
REASONS = ("head_timeout", "body_timeout", "over_capacity", "descriptor_ceiling", "head_too_large")
API_KEY_LINE = re.compile(rb"\r\nx-api-key: ?([^\r\n]*)", re.IGNORECASE)


@dataclass
class Limits:
    """What every connection of one server obeys."""

    head_timeout_s: float
    body_timeout_s: float
    max_connections: int
    ceiling: int  # connections past this are reset at once (descriptor limit)
    log: ThrottledLog = field(default_factory=ThrottledLog)
    #: Connections refused or cut off, by reason (`REASONS`), for `/metrics`.
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    #: The server's set of open connections (uvicorn's), once one was made.
    connections: set[Any] | None = None


def connection_ceiling(max_connections: int, pool_size: int) -> int:
    """Raise the soft RLIMIT_NOFILE as far as useful; return how many connections fit.

    Room is sought for twice MAX_CONNECTIONS (the over-capacity ones are answered
    503, which needs their descriptors for a moment) plus the reserve. Raises
    ValueError when even MAX_CONNECTIONS does not fit under the hard limit.
    """
    reserve = RESERVED_FDS + pool_size
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * max_connections + reserve
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if raised > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    ceiling = wanted if soft == resource.RLIM_INFINITY else soft - reserve
    if ceiling < max_connections:
        raise ValueError(
            f"MAX_CONNECTIONS={max_connections} needs at least {max_connections + reserve}"
            f" file descriptors and this process may open {soft} (ulimit -n): lower"
            " MAX_CONNECTIONS or raise the limit"
        )
    return ceiling


def _response(status: bytes, body: bytes, *extra: bytes) -> bytes:
    return b"".join(
        [
            b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            *extra,
            b"connection: close\r\n\r\n",
            body,
        ]
    )


BODY_TIMEOUT_RESPONSE = _response(
    b"408 Request Timeout",
    b'{"status_code":408,"detail":"the request body did not arrive in time"}',
)
HEAD_TOO_LARGE_RESPONSE = _response(
    b"431 Request Header Fields Too Large",
    b'{"status_code":431,"detail":"the request head is larger than 64 KiB"}',
)
OVER_CAPACITY_BODY = b'{"status_code":503,"detail":"the server is at its connection limit"}'


async def over_capacity(scope: Any, receive: Any, send: Any) -> None:
    """The app a connection accepted past MAX_CONNECTIONS gets: 503, then close."""
    await send_json(
        send, 503, OVER_CAPACITY_BODY, [(b"retry-after", b"1"), (b"connection", b"close")]
    )


class GuardedProtocol(HttpToolsProtocol):
    """One connection, with deadlines; `protocol_class(limits)` binds the limits."""

    limits: ClassVar[Limits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline: asyncio.TimerHandle | None = None
        self.reading_head = True
        self.head = bytearray()

    # -- deadlines -------------------------------------------------------------

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _head_timed_out(self) -> None:
        self.deadline = None
        if not self.transport.is_closing():
            self.limits.refused["head_timeout"] += 1
            self.limits.log.warning(
                "head timeout",
                f"closed a connection that sent no complete request head within"
                f" {self.limits.head_timeout_s:g} s (REQUEST_HEAD_TIMEOUT)",
            )
            self.transport.close()

    def _body_timed_out(self) -> None:
        self.deadline = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None or cycle.response_complete:
            return
        self.limits.refused["body_timeout"] += 1
        self.limits.log.warning(
            "body timeout",
            f"{self.scope.get('method')} {self.scope.get('path')}: the body did not arrive within"
            f" {self.limits.body_timeout_s:g} s (REQUEST_BODY_TIMEOUT); answered 408",
        )
        cycle.scope[BODY_TIMED_OUT] = True  # type: ignore[literal-required]
        if not cycle.response_started:
            self.transport.write(BODY_TIMEOUT_RESPONSE)
        cycle.disconnected = True  # the app's receive now says "disconnect", its send is dropped
        cycle.message_event.set()
        self.transport.close()

    # -- uvicorn's protocol hooks ------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Reset past the ceiling, refuse past the cap, else start the head deadline."""
        super().connection_made(transport)
        self.limits.connections = self.connections
        open_now = len(self.connections)
        if open_now > self.limits.ceiling:
            self.limits.refused["descriptor_ceiling"] += 1
            self.limits.log.warning(
                "descriptor ceiling",
                f"{open_now} connections open, past the {self.limits.ceiling} the descriptor"
                " limit allows: new connections are reset",
            )
            transport.abort()
            return
        if open_now > self.limits.max_connections:
            self.limits.refused["over_capacity"] += 1
            self.limits.log.warning(
                "connection cap",
                f"{open_now} connections open, past MAX_CONNECTIONS={self.limits.max_connections}:"
                " new connections are answered 503",
            )
            self.app = over_capacity
            self._arm(min(OVER_CAPACITY_GRACE_S, self.limits.head_timeout_s), self._head_timed_out)
            return
        self._arm(self.limits.head_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        """Flag a request whose response was not complete as a client abort."""
        self._disarm()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.scope[CLIENT_GONE] = True  # type: ignore[literal-required]
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Keep the raw head bytes (for `X-API-Key`) until the head is complete."""
        if self.reading_head:
            self.head += data
            if len(self.head) > MAX_HEAD_BYTES and not self._head_ends_in_time():
                self.reading_head = False
                self.head = bytearray()
                self.limits.refused["head_too_large"] += 1
                self.transport.write(HEAD_TOO_LARGE_RESPONSE)
                self.transport.close()
                return
        super().data_received(data)

    def _head_ends_in_time(self) -> bool:
        """Whether the head buffered ends (a blank line) within MAX_HEAD_BYTES."""
        end = MAX_HEAD_BYTES + 4
        return self.head.find(b"\r\n\r\n", 0, end) >= 0 or self.head.find(b"\n\n", 0, end) >= 0

    def on_headers_complete(self) -> None:
        """The head is in: stop its deadline, start the body's."""
        if self.reading_head:
            self._restore_api_key()
        self.reading_head = False
        self.head = bytearray()
        self._disarm()
        super().on_headers_complete()
        if not self.pipeline:  # a queued request's body is read once it runs
            self._arm(self.limits.body_timeout_s, self._body_timed_out)

    def on_message_complete(self) -> None:
        """The body is in: stop its deadline; the bytes that follow are the next head."""
        if not self.pipeline:
            if self.cycle is not None and self.cycle.response_complete:
                # Answered before its body was in (a 401, a 413): the next head's
                # deadline starts now, as uvicorn's keep-alive timer was cancelled
                # by the body's late bytes.
                self._arm(self.limits.head_timeout_s, self._head_timed_out)
            else:
                self._disarm()
        self.reading_head = True
        self.head = bytearray()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        """Wait for the next head, under its deadline."""
        queued = bool(self.pipeline)  # then uvicorn starts the next request now
        super().on_response_complete()
        if not self.transport.is_closing() and not queued:
            self._arm(self.limits.head_timeout_s, self._head_timed_out)

    def _restore_api_key(self) -> None:
        """Give `X-API-Key` its raw value: the parser dropped the whitespace before it."""
        indices = [i for i, (name, _) in enumerate(self.headers) if name == b"x-api-key"]
        if not indices:
            return
        raw = API_KEY_LINE.findall(bytes(self.head))
        for index, value in zip(indices, raw, strict=False):
            self.headers[index] = (b"x-api-key", value)


def protocol_class(limits: Limits) -> type[GuardedProtocol]:
    """A protocol class bound to `limits`, for `uvicorn.run(http=...)`."""
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits})

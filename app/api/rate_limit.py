"""Per-client rate limiting for the recommendation endpoints (off by default).

A token bucket per client address, kept in the process: each client may send
`RATE_LIMIT_BURST` requests at once and `RATE_LIMIT_PER_SECOND` on average; past
that it gets a 429 with `Retry-After` (whole seconds until a token is back). A
bucket costs a dict entry and two floats; the table forgets the clients idle the
longest when it grows past `MAX_CLIENTS`, so a flood of addresses cannot grow it
without bound. One process, one table: behind several processes each enforces
its own share.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from app.errors import RecoError

MAX_CLIENTS = 100_000


class TooManyRequests(RecoError):
    """The client spent its burst and must wait for the rate to refill it."""

    status_code = 429


class RateLimiter:
    """Token buckets keyed by client; `check` raises `TooManyRequests` when one is empty."""

    def __init__(self, per_second: float, burst: int, clock: Any = time.monotonic) -> None:
        self.per_second = per_second
        self.burst = float(burst)
        self.clock = clock
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, client: str) -> None:
        """Take a token for `client`, or raise with how long until one is back."""
        now = self.clock()
        tokens, stamp = self.buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.per_second)
        if tokens < 1.0:
            self.buckets[client] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / self.per_second)
            raise TooManyRequests(
                f"too many requests from this client: at most {self.per_second:g} per second"
                f" (bursts of {self.burst:g}); retry in {wait} s",
                retry_after_s=max(wait, 1),
            )
        self.buckets[client] = (tokens - 1.0, now)
        if len(self.buckets) > MAX_CLIENTS:
            self.buckets.popitem(last=False)  # the one idle the longest


def rate_limited(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard: applies the app's limiter, if the settings switched one on."""
    limiter: RateLimiter | None = connection.app.state.rate_limiter
    if limiter is not None:
        client = connection.client.host if connection.client else "unknown"
        limiter.check(client)

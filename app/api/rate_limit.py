"""Per-client rate limiting for the recommendation endpoints (off by default).

A token bucket per client address, kept in the process: each client may send
`RATE_LIMIT_BURST` requests at once and `RATE_LIMIT_PER_SECOND` on average; past
that it gets a 429 with `Retry-After` (whole seconds until a token is back). A
bucket costs a dict entry and two floats; the table forgets the clients idle the
longest when it grows past `MAX_CLIENTS`, so a flood of addresses cannot grow it
without bound. One process, one table: behind several processes (`WORKERS`, or
several hosts) each enforces its own share, unless `REDIS_URL` is set: then the
buckets live in Redis (app/api/rate_limit_redis.py) and this table is only the
fallback while Redis is down.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any, Protocol

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from app.errors import RecoError

MAX_CLIENTS = 100_000


class TooManyRequests(RecoError):
    """The client spent its burst and must wait for the rate to refill it."""

    status_code = 429


def too_many(per_second: float, burst: float, tokens: float) -> TooManyRequests:
    """The 429 for a bucket holding `tokens` (< 1): how long until one is back."""
    wait = math.ceil((1.0 - tokens) / per_second)
    return TooManyRequests(
        f"too many requests from this client: at most {per_second:g} per second"
        f" (bursts of {burst:g}); retry in {wait} s",
        retry_after_s=max(wait, 1),
    )


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
            raise too_many(self.per_second, self.burst, tokens)
        self.buckets[client] = (tokens - 1.0, now)
        if len(self.buckets) > MAX_CLIENTS:
            self.buckets.popitem(last=False)  # the one idle the longest

    async def acquire(self, client: str) -> None:
        """`check`, as the guard calls every limiter (the shared one waits on Redis)."""
        self.check(client)

    async def close(self) -> None:
        """Nothing to release."""


class Limiter(Protocol):
    """What the guard needs: this table, or the buckets in Redis."""

    async def acquire(self, client: str) -> None:
        """Take a token for `client`, or raise `TooManyRequests`."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


async def rate_limited(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard: applies the app's limiter, if the settings switched one on."""
    limiter: Limiter | None = connection.app.state.rate_limiter
    if limiter is not None:
        client = connection.client.host if connection.client else "unknown"
        await limiter.acquire(client)

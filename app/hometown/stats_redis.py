"""The stats answer shared through Redis: computed once per period for every process.

A module of its own (like app/feed/redis_cache.py) so that a server without
`REDIS_URL` never imports redis-py. The answer is one key holding msgpack of
(the TTL it was written with, the totals), expiring after that TTL: its
remaining TTL tells a reader how old it is, by Redis's clock alone. Redis
failing never fails a request: the process computes the answer itself, counts
the fallback and logs it (throttled), and leaves Redis alone for a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
from redis.exceptions import RedisError

from app.errors import ThrottledLog
from app.feed.redis_cache import REDIS_TIMEOUT_S, RETRY_AFTER_S, Backoff, redis_client
from app.hometown.stats import Totals

#: The key; its suffix changes with the layout of `Totals`.
KEY = "hometown:stats:1"

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(tuple[int, Totals])


class RedisTotals:
    """`SharedTotals` on Redis; failures are None from `get` and no-ops in `put`."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = REDIS_TIMEOUT_S,
        retry_after_s: float = RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = redis_client(url, timeout_s)
        self.backoff = Backoff(retry_after_s, clock)
        self.fallbacks = 0
        self.failures = ThrottledLog(every_s=10.0, burst=3)

    async def get(self) -> tuple[Totals, float] | None:
        """The shared totals and their age, from one GET and one PTTL in a pipeline."""
        if self._down():
            return None
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.get(KEY)
                pipe.pttl(KEY)
                raw, left_ms = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return None
        if raw is None or left_ms is None or int(left_ms) < 0:
            return None
        try:
            ttl_ms, totals = _DECODER.decode(raw)
        except msgspec.DecodeError:
            return None  # written by another version: compute and overwrite
        return totals, max(0.0, (ttl_ms - int(left_ms)) / 1000.0)

    async def put(self, totals: Totals, ttl_s: float) -> None:
        """One SET with PX: the entry expires when it would be too old to serve."""
        if self._down():
            return
        ttl_ms = max(1, round(ttl_s * 1000))
        try:
            await self.client.set(KEY, _ENCODER.encode((ttl_ms, totals)), px=ttl_ms)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)

    def _down(self) -> bool:
        if self.backoff.waiting:
            self.fallbacks += 1
            return True
        return False

    def _failed(self, exc: BaseException) -> None:
        self.fallbacks += 1
        self.backoff.failed()
        self.failures.warning(
            "stats cache",
            f"stats cache in Redis unavailable ({type(exc).__name__}): computing in the process",
        )

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()

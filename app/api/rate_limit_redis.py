"""Rate-limit buckets in Redis, so one client's limit holds across processes and hosts.

With `WORKERS` processes, or several hosts behind a balancer, buckets kept in
each process would let a client through `WORKERS` times as often. With
`REDIS_URL` set, each client's bucket is one Redis hash, read and written by a
Lua script in one round trip: Redis runs a script alone, so two processes can
never both take the last token, and the script reads Redis's own clock, so the
hosts' clocks need not agree. A bucket expires once it would be full again.

Redis going down never fails a request: the process falls back to its own
buckets (app/api/rate_limit.py) until Redis answers again, counts the fallback
and logs it (throttled). A module of its own, like app/feed/redis_cache.py, so
that a server without `REDIS_URL` never imports redis-py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from app.api.rate_limit import RateLimiter, too_many
from app.errors import ThrottledLog
from app.feed.redis_cache import REDIS_TIMEOUT_S, RETRY_AFTER_S, Backoff, redis_client

log = logging.getLogger("app.rate_limit")

#: Every bucket's key starts with this.
PREFIX = "hometown:ratelimit:"

#: KEYS[1] the bucket; ARGV[1] tokens a second, ARGV[2] the burst. Returns
#: {1 if a token was taken else 0, the tokens left as a string (Lua numbers
#: would come back truncated to integers)}.
TAKE_TOKEN = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(bucket[1]) or burst
local stamp = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local taken = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {taken, tostring(tokens)}
"""


class SharedRateLimiter:
    """Token buckets in Redis; this process's own `fallback` while Redis is down."""

    def __init__(
        self,
        url: str,
        per_second: float,
        burst: int,
        *,
        timeout_s: float = REDIS_TIMEOUT_S,
        retry_after_s: float = RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_second = per_second
        self.burst = float(burst)
        self.fallback = RateLimiter(per_second, burst, clock)
        self.client = redis_client(url, timeout_s)
        self._take = self.client.register_script(TAKE_TOKEN)
        self.backoff = Backoff(retry_after_s, clock)
        self.fallbacks = 0
        self.failures = ThrottledLog(every_s=10.0, burst=3)

    async def acquire(self, client: str) -> None:
        """Take a token for `client`, or raise `TooManyRequests` with how long to wait."""
        if self.backoff.waiting:
            self._fall_back(client)
            return
        try:
            taken, left = await self._take(
                keys=[PREFIX + client], args=[self.per_second, self.burst]
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self.backoff.failed()
            self.failures.warning(
                "rate limit",
                f"rate-limit buckets in Redis unavailable ({type(exc).__name__}):"
                " each process limits on its own until Redis answers",
            )
            self._fall_back(client)
            return
        if not int(taken):
            raise too_many(self.per_second, self.burst, float(left))

    def _fall_back(self, client: str) -> None:
        self.fallbacks += 1
        self.fallback.check(client)

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()

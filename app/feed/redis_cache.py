"""The feature cache on Redis, through redis-py's asyncio client (hiredis parser).

A module of its own so that a server without `REDIS_URL` never imports redis-py:
its command modules alone add ~18 MiB of resident memory to every process
(measured: 100.3 -> 117.9 MiB for `import redis.asyncio` on top of the rest of
the server). app/feed/cache.py says what the store needs from a cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.feed.cache import CacheUnavailable

#: Seconds a Redis call may take before it counts as a failure.
REDIS_TIMEOUT_S = 0.075
#: Seconds after a failure before Redis is tried again.
RETRY_AFTER_S = 1.0


def redis_client(url: str, timeout_s: float = REDIS_TIMEOUT_S) -> aioredis.Redis:
    """A client whose every call gives up after `timeout_s` and is never retried.

    The callers (this cache, the shared rate limit, the shared stats) all fall back
    to the process when Redis fails, so a short deadline costs less than a wait.
    It connects on first use, so one made before `WORKERS` fork is safe.
    """
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry_on_timeout=False,
        health_check_interval=0,
    )


class Backoff:
    """After a failure, Redis is left alone for `retry_after_s`.

    An outage then costs one timeout a second, not one per call. The feature
    cache, the shared rate limit and the shared stats each keep one.
    """

    def __init__(
        self, retry_after_s: float = RETRY_AFTER_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.retry_after_s = retry_after_s
        self.clock = clock
        self._until = float("-inf")

    @property
    def waiting(self) -> bool:
        """Whether a recent failure says not to try Redis yet."""
        return self.clock() < self._until

    def failed(self) -> None:
        """A call just failed: wait `retry_after_s` before the next one."""
        self._until = self.clock() + self.retry_after_s


class RedisCache:
    """Redis through redis-py's asyncio client (hiredis parser); failures are `CacheUnavailable`.

    `url` is `redis://`, `rediss://` or `unix://`; it is never logged or shown
    (it may hold a password).
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        timeout_s: float = REDIS_TIMEOUT_S,
        retry_after_s: float = RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = redis_client(url, timeout_s)
        self.backoff = Backoff(retry_after_s, clock)
        self.last_error: str | None = None

    def _check(self) -> None:
        if self.backoff.waiting:
            raise CacheUnavailable(f"redis is down ({self.last_error}); retrying shortly")

    def _failed(self, exc: BaseException) -> CacheUnavailable:
        self.backoff.failed()
        self.last_error = type(exc).__name__
        return CacheUnavailable(f"redis failed: {type(exc).__name__}")

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """One MGET."""
        if not keys:
            return []
        self._check()
        try:
            values = await self.client.mget(list(keys))
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._failed(exc) from exc
        return values  # type: ignore[return-value]  # bytes: the client does not decode

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        """One pipeline of `SET key value PX ttl` (no MULTI: nothing to make atomic)."""
        if not items:
            return
        self._check()
        ttl_ms = max(1, round(ttl_s * 1000))
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    pipe.set(key, value, px=ttl_ms)
                await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._failed(exc) from exc

    async def delete(self, keys: Sequence[str]) -> None:
        """One UNLINK (freed in the background on the server)."""
        if not keys:
            return
        self._check()
        try:
            await self.client.unlink(*keys)
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._failed(exc) from exc

    async def clear(self, prefix: str) -> None:
        """SCAN for `prefix*` and UNLINK each batch found (rare: a full invalidation)."""
        self._check()
        try:
            batch: list[bytes] = []
            async for key in self.client.scan_iter(match=_glob_escape(prefix) + "*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await self.client.unlink(*batch)
                    batch = []
            if batch:
                await self.client.unlink(*batch)
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._failed(exc) from exc

    async def describe(self) -> dict[str, Any]:
        """PING and DBSIZE (all keys of the database, not only the store's)."""
        out: dict[str, Any] = {"backend": self.name, "reachable": False, "entries": None}
        try:
            self._check()
            await self.client.ping()
            out["entries"] = int(await self.client.dbsize())
            out["reachable"] = True
        except CacheUnavailable:
            pass
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
        if self.last_error is not None and not out["reachable"]:
            out["error"] = self.last_error
        return out

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()


def _glob_escape(text: str) -> str:
    """`text` with Redis glob characters escaped, so a prefix matches only itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)

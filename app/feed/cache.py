"""A small async cache of bytes with TTLs: Redis when configured, else in-process.

The feature store (app/feed/store.py) needs four calls, each one round trip
whatever the number of keys: `get_many` (one MGET), `set_many` (one pipeline of
`SET ... PX`), `delete` (one UNLINK) and `clear(prefix)` (SCAN + UNLINK, for a
rare full invalidation). Values are opaque bytes; the store serialises.

`RedisCache` turns every Redis failure (refused, timed out, gone, or any other
`RedisError`) into `CacheUnavailable`, which the store answers by reading
PostgreSQL. Its socket timeout is short (75 ms by default), so a Redis that
stopped answering costs a request at most that once; after a failure it does
not try again for `retry_after_s` (1 s) and raises at once in between, so an
outage costs no request a timeout more than once a second.

`MemoryCache` has the same TTL semantics in the process, bounded at
`max_entries`: past it, the least recently used entry (read or written) goes.
An expired entry counts as absent and is dropped when next touched, or when it
reaches the old end of the LRU order.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

#: Seconds a Redis call may take before it counts as a failure.
REDIS_TIMEOUT_S = 0.075
#: Seconds after a failure before Redis is tried again.
RETRY_AFTER_S = 1.0


class CacheUnavailable(Exception):
    """The cache could not answer; the caller reads the source of truth instead."""


class Cache(Protocol):
    """What the feature store needs from a cache."""

    name: str

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of `keys`, None where absent or expired, in the order asked."""
        ...

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        """Store every item, each expiring `ttl_s` seconds from now."""
        ...

    async def delete(self, keys: Sequence[str]) -> None:
        """Remove `keys` (absent ones are fine)."""
        ...

    async def clear(self, prefix: str) -> None:
        """Remove every key that starts with `prefix`."""
        ...

    async def describe(self) -> dict[str, Any]:
        """Backend, whether it answers, and how many entries it holds."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryCache:
    """In-process LRU cache with per-entry expiry, at most `max_entries` entries."""

    name = "memory"

    def __init__(
        self, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """See `Cache.get_many`; a hit becomes the most recently used entry."""
        now = self.clock()
        out: list[bytes | None] = []
        entries = self._entries
        for key in keys:
            entry = entries.get(key)
            if entry is None:
                out.append(None)
            elif entry[0] <= now:
                del entries[key]
                out.append(None)
            else:
                entries.move_to_end(key)
                out.append(entry[1])
        return out

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        """See `Cache.set_many`; evicts the least recently used entries past the bound."""
        expires = self.clock() + ttl_s
        entries = self._entries
        for key, value in items.items():
            entries[key] = (expires, value)
            entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    async def delete(self, keys: Sequence[str]) -> None:
        """See `Cache.delete`."""
        for key in keys:
            self._entries.pop(key, None)

    async def clear(self, prefix: str) -> None:
        """See `Cache.clear`."""
        self.drop(prefix)

    def drop(self, prefix: str) -> None:
        """`clear`, synchronously (the store calls it from a notification callback)."""
        if not prefix:
            self._entries.clear()
            return
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]

    async def describe(self) -> dict[str, Any]:
        """See `Cache.describe`."""
        return {
            "backend": self.name,
            "reachable": True,
            "entries": len(self._entries),
            "max_entries": self.max_entries,
        }

    async def close(self) -> None:
        """Nothing to release."""


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
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self.retry_after_s = retry_after_s
        self.clock = clock
        self._down_until = float("-inf")
        self.last_error: str | None = None

    def _check(self) -> None:
        if self.clock() < self._down_until:
            raise CacheUnavailable(f"redis is down ({self.last_error}); retrying shortly")

    def _failed(self, exc: BaseException) -> CacheUnavailable:
        self._down_until = self.clock() + self.retry_after_s
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

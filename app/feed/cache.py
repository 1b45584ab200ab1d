"""A small async cache of bytes with TTLs: the protocol, and the in-process backend.

The feature store (app/feed/store.py) needs four calls, each one round trip
whatever the number of keys: `get_many` (one MGET), `set_many` (one pipeline of
`SET ... PX`), `delete` (one UNLINK) and `clear(prefix)` (SCAN + UNLINK, for a
rare full invalidation). Values are opaque bytes; the store serialises.

`RedisCache` (app/feed/redis_cache.py, imported only when `REDIS_URL` is set,
since redis-py costs a process ~18 MiB) turns every Redis failure (refused,
timed out, gone, or any other `RedisError`) into `CacheUnavailable`, which
the store answers by reading PostgreSQL. Its socket timeout is short (75 ms by
default), so a Redis that stopped answering costs a request at most that once;
after a failure it does not try again for `retry_after_s` (1 s) and raises at
once in between, so an outage costs no request a timeout more than once a
second.

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

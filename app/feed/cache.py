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
`max_entries` entries and `max_bytes` bytes (keys, values and the bookkeeping
per entry, estimated): past either, the least recently used entry (read or
written) goes. The byte bound is the one that keeps a server's memory in check:
on the benchmark world a viewer's entry counts about 740 bytes and a stream's
about 900 (kept as objects, see below), so the default 20 MB holds some
25,000 of them. An expired entry counts as absent and is
dropped when next touched, or when it reaches the old end of the LRU order.
Besides bytes it keeps objects as they are (`put_objects`, with their size
given): the feature store keeps decoded stream facts there, since decoding 300
msgpack entries a request was 3% of a loaded feed server's CPU.
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


#: Bytes an entry costs beyond its key's and value's characters: the str and bytes
#: headers (49 + 33), the (expiry, value) tuple with its float (56 + 24) and the
#: ordered dict's slot and link (about 100).
ENTRY_OVERHEAD = 262


def entry_bytes(key: str, value: bytes) -> int:
    """What one entry is counted as against `max_bytes`."""
    return len(key) + len(value) + ENTRY_OVERHEAD


class MemoryCache:
    """In-process LRU cache with per-entry expiry, bounded in entries and in bytes."""

    name = "memory"

    def __init__(
        self,
        max_entries: int = 100_000,
        max_bytes: int = 20_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        # key -> (expiry, value, bytes counted): values are bytes or `put_objects`'s.
        self._entries: OrderedDict[str, tuple[float, Any, int]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get_many(self, keys: Sequence[str]) -> list[Any]:
        """See `Cache.get_many`; a hit becomes the most recently used entry.

        An entry `put_objects` stored comes back as that object, not as bytes.
        """
        now = self.clock()
        out: list[Any] = []
        entries = self._entries
        for key in keys:
            entry = entries.get(key)
            if entry is None:
                out.append(None)
            elif entry[0] <= now:
                self._forget(key)
                out.append(None)
            else:
                entries.move_to_end(key)
                out.append(entry[1])
        return out

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        """See `Cache.set_many`; evicts the least recently used entries past the bound."""
        self.put_objects(
            {key: (value, entry_bytes(key, value)) for key, value in items.items()}, ttl_s
        )

    def put_objects(self, items: Mapping[str, tuple[object, int]], ttl_s: float) -> None:
        """Store each (object, bytes it is counted as) as it is, expiring in `ttl_s`.

        Evicts the least recently used entries past the bounds. The caller says
        what an object costs (`sys.getsizeof` of it and what it holds, say): the
        byte bound is only as good as that.
        """
        expires = self.clock() + ttl_s
        entries = self._entries
        for key, (value, size) in items.items():
            self._forget(key)
            entries[key] = (expires, value, size)
            self._bytes += size
        while entries and (len(entries) > self.max_entries or self._bytes > self.max_bytes):
            _, (_, _, size) = entries.popitem(last=False)
            self._bytes -= size

    async def delete(self, keys: Sequence[str]) -> None:
        """See `Cache.delete`."""
        for key in keys:
            self._forget(key)

    async def clear(self, prefix: str) -> None:
        """See `Cache.clear`."""
        self.drop(prefix)

    def drop(self, prefix: str) -> None:
        """`clear`, synchronously (the store calls it from a notification callback)."""
        if not prefix:
            self._entries.clear()
            self._bytes = 0
            return
        for key in [k for k in self._entries if k.startswith(prefix)]:
            self._forget(key)

    def _forget(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[2]

    async def describe(self) -> dict[str, Any]:
        """See `Cache.describe`."""
        return {
            "backend": self.name,
            "reachable": True,
            "entries": len(self._entries),
            "max_entries": self.max_entries,
            "bytes": self._bytes,
            "max_bytes": self.max_bytes,
        }

    async def close(self) -> None:
        """Nothing to release."""

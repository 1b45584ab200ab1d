"""The feature store: a viewer's and the candidates' facts, from PostgreSQL through a cache.

PostgreSQL is the source of truth: `users`, `streams`, the aggregated
`feed_user_features` / `feed_stream_features` (app/feed/refresh.py) and the
active model's vectors in `feed_embeddings`. A request asks for one viewer
(`user`: one query on a miss, joining all three) and a few hundred candidates
(`streams`: one MGET, then one query for the misses); hits cost no query.
`candidates` turns the facts into the reranker's `Candidates`, with the
definitions training uses (ml/feed/candidates.py), so `pair_features` gives the
same matrix on both sides (tests/integration/test_feed_parity.py).

What is cached, and for how long: a viewer for `user_ttl_s` (1 h) under a key
with the model version (a retrain's new active model misses the old entries);
a stream's static profile and audience for `stream_ttl_s` (30 min). The live
state (is_live, viewers now) is never cached here: it changes every second and
app/feed/live.py follows it. Unknown viewers are cached too (as unknown); unknown
streams are not.

Every key carries the *generation* of the feature tables, the time of the
refresh that wrote them. A refresh announces its generation with NOTIFY
(app/feed/refreshes.py listens and calls `set_generation`), so each server process
switches to fresh keys within milliseconds of the commit, without deleting a
key; the old ones expire. While a process does not follow (its listening
connection is lost) it cannot know about refreshes, so it reads PostgreSQL
directly and caches nothing until it follows again.

A cache that fails (`CacheUnavailable`: Redis refused, timed out, gone) never
fails a request: the store reads PostgreSQL, counts the fallback, logs it
(throttled) and tries the cache again on later calls. Deletes that failed are
kept and sent before the next read from the cache, so an invalidation made
during an outage is not lost when Redis comes back.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
import numpy as np
import numpy.typing as npt
from litestar import Litestar

from app.db.limits import DEVICES
from app.errors import ThrottledLog
from app.feed.cache import ENTRY_OVERHEAD, Cache, CacheUnavailable, MemoryCache
from app.feed.embeddings import VECTOR_DTYPE
from app.feed.features import Candidates, Viewer

log = logging.getLogger("app.features")

FloatArray = npt.NDArray[np.float64]
#: The candidate sources whose ranks are features, as `ranks` names them.
SOURCES = ("cf", "near", "trending", "trending_language", "own")
#: Lends a pooled connection for the length of an `async with` (as app/feed/service.py's).
Connect = Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]
#: Every key of the store starts with this (`invalidate_all` clears it).
PREFIX = "hometown:features:"
#: The layout of a cached stream entry (`StreamFacts`), in its keys: a server that
#: packs them differently never reads another's entries (2: numbers as one block).
_STREAM_FORMAT = 2
#: Model versions whose user entries `invalidate_users` deletes (the most recent ones).
_VERSIONS_KEPT = 4

USER_SQL = """
SELECT u.city, u.latitude, u.longitude, u.language, u.timezone_offset, u.preferred_categories,
       u.local_preference_strength,
       f.user_id IS NOT NULL AS has_history, f.category_ids, f.category_minutes, f.hour_watches,
       f.creator_ids, f.creator_minutes, f.creator_watches, e.vector
FROM users u
LEFT JOIN feed_user_features f ON f.user_id = u.user_id
LEFT JOIN feed_embeddings e
       ON e.model_version = $2::text AND e.entity = 'user' AND e.entity_id = u.user_id
WHERE u.user_id = $1
"""
STREAMS_SQL = """
SELECT s.stream_id, s.creator_id, s.title, s.city, s.latitude, s.longitude, s.language,
       s.category_id, s.stream_quality_score, s.avg_viewer_count, s.creator_followers,
       s.is_partnered, s.mature_content, f.viewers, f.device_watches, f.hour_watches
FROM streams s LEFT JOIN feed_stream_features f ON f.stream_id = s.stream_id
WHERE s.stream_id = ANY($1::text[])
"""


#: The numeric facts of a stream, in the order `StreamFacts.numbers` packs them.
NUMERIC = (
    "latitude",
    "longitude",
    "quality",
    "avg_viewers",
    "followers",
    "partnered",
    "mature",
    "popularity",
)
#: `numbers` holds `NUMERIC`, then the 24 hour shares: float64, so serving's features
#: equal training's to the last bit (tests/integration/test_feed_parity.py).
_WIDTH = len(NUMERIC) + 24
_NUMBER = np.dtype("<f8")


class StreamFacts(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A stream's static profile and audience, as cached (msgpack, fields by position).

    The numbers travel as one packed float64 block (`numbers`: `NUMERIC`, then
    `hour_profile`), not as 32 msgpack floats: a request reads a few hundred
    streams, and one `np.frombuffer` over their joined blocks gives the
    reranker's columns without a Python loop per number.

    `popularity` is the distinct viewers who watched it; `dominant_device` the
    device most of its watches came from (ties by `DEVICES` order), None without
    watches; `hour_profile` the 24 shares of its watches per UTC hour (all 0
    without watches).
    """

    stream_id: str
    creator_id: str
    title: str
    city: str
    language: str
    category_id: str
    dominant_device: str | None
    numbers: bytes

    @classmethod
    def of(
        cls,
        *,
        stream_id: str,
        creator_id: str,
        title: str,
        city: str,
        language: str,
        category_id: str,
        dominant_device: str | None,
        hour_profile: Sequence[float],
        **numeric: float,
    ) -> StreamFacts:
        """Facts from named values (`numeric` takes every name of `NUMERIC`)."""
        if sorted(numeric) != sorted(NUMERIC) or len(hour_profile) != 24:
            raise ValueError(f"need {NUMERIC} and 24 hour shares, got {sorted(numeric)}")
        values = [float(numeric[name]) for name in NUMERIC] + [float(h) for h in hour_profile]
        return cls(
            stream_id=stream_id,
            creator_id=creator_id,
            title=title,
            city=city,
            language=language,
            category_id=category_id,
            dominant_device=dominant_device,
            numbers=np.asarray(values, dtype=_NUMBER).tobytes(),
        )

    def _values(self) -> FloatArray:
        return np.frombuffer(self.numbers, dtype=_NUMBER)

    def number(self, name: str) -> float:
        """One of `NUMERIC` by name."""
        return float(self._values()[NUMERIC.index(name)])

    @property
    def popularity(self) -> float:
        """Distinct viewers who watched the stream (in the feature tables' window)."""
        return self.number("popularity")

    @property
    def hour_profile(self) -> tuple[float, ...]:
        """Shares of the stream's watches per UTC hour 0..23 (all 0 without watches)."""
        return tuple(self._values()[len(NUMERIC) :].tolist())


class _UserRecord(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A viewer's row as cached: counts as stored, shares computed on the way out."""

    city: str
    latitude: float
    longitude: float
    language: str
    timezone_offset: float
    preferred_categories: list[str]
    has_history: bool
    category_ids: list[str]
    category_minutes: list[float]
    hour_watches: list[float]
    creator_ids: list[str]
    creator_minutes: list[float]
    creator_watches: list[float]
    embedding: bytes | None
    # Last and without a default: an entry cached before the field existed is shorter,
    # fails to decode, and is read again from PostgreSQL (a miss, not a wrong value).
    local_preference_strength: float


@dataclass(frozen=True)
class UserFacts:
    """What the feed knows about a viewer: profile, habits, creators and embedding.

    `creator_ids` are the creators the viewer watched, most minutes first (ties
    by id), with `creator_minutes` and `creator_watches` parallel to them;
    `embedding` is the viewer's float32 vector in the requested model, None when
    the model has none for them (or no model was named). `local_preference_strength`
    is the profile's, which the near-you search (HOMETOWN's) scores with.
    """

    user_id: str
    viewer: Viewer
    local_preference_strength: float
    city: str
    language: str
    creator_ids: tuple[str, ...]
    creator_minutes: tuple[float, ...]
    creator_watches: tuple[float, ...]
    has_history: bool
    embedding: npt.NDArray[np.float32] | None = field(default=None, compare=False)

    def creator_history(self) -> dict[str, tuple[float, float]]:
        """Creator id -> (minutes, watches)."""
        return {
            c: (m, w)
            for c, m, w in zip(
                self.creator_ids, self.creator_minutes, self.creator_watches, strict=True
            )
        }


_ENCODER = msgspec.msgpack.Encoder()
_USER_DECODER = msgspec.msgpack.Decoder(_UserRecord | None)
_STREAM_DECODER = msgspec.msgpack.Decoder(StreamFacts)
_STREAMS_DECODER = msgspec.msgpack.Decoder(list[StreamFacts])


def _footprint(key: str, facts: StreamFacts) -> int:
    """What a stream's facts cost kept as objects: their own sizes, the entry's overhead.

    The city, language, category and device are interned (`_stream_facts`):
    one string for every entry that names it, so no entry counts them.
    """
    held = (facts.stream_id, facts.creator_id, facts.title, facts.numbers)
    return (
        len(key)
        + ENTRY_OVERHEAD
        + sys.getsizeof(facts)
        + sum(sys.getsizeof(value) for value in held)
    )


def _decode_streams(raws: Sequence[bytes]) -> list[StreamFacts]:
    """Many cached entries in one decoder call: a msgpack array header before their bytes.

    An entry that does not decode (written by another version of this code) is
    a miss rather than an error: the caller reads it from PostgreSQL again.
    """
    header = b"\xdd" + len(raws).to_bytes(4, "big")  # array 32
    try:
        return _STREAMS_DECODER.decode(header + b"".join(raws))
    except msgspec.DecodeError:
        return [_decode_one(raw) for raw in raws]


def _decode_one(raw: bytes) -> StreamFacts:
    try:
        return _STREAM_DECODER.decode(raw)
    except msgspec.DecodeError:
        return _UNREADABLE


#: Stands in for an entry that did not decode (compared by identity).
_UNREADABLE = StreamFacts("", "", "", "", "", "", None, b"")


def _user_record(row: asyncpg.Record | None) -> _UserRecord | None:
    if row is None:
        return None
    history = bool(row["has_history"])
    return _UserRecord(
        city=row["city"],
        latitude=float(row["latitude"]),
        longitude=float(row["longitude"]),
        language=row["language"],
        timezone_offset=float(row["timezone_offset"]),
        preferred_categories=list(row["preferred_categories"] or ()),
        has_history=history,
        category_ids=list(row["category_ids"] or ()),
        category_minutes=[float(m) for m in row["category_minutes"] or ()],
        hour_watches=[float(h) for h in row["hour_watches"] or ()],
        creator_ids=list(row["creator_ids"] or ()),
        creator_minutes=[float(m) for m in row["creator_minutes"] or ()],
        creator_watches=[float(w) for w in row["creator_watches"] or ()],
        embedding=row["vector"],
        local_preference_strength=float(row["local_preference_strength"]),
    )


def _user_facts(user_id: str, record: _UserRecord) -> UserFacts:
    """Shares as ml/feed/history.py defines them (counts divided by their sum, or none)."""
    total = sum(record.category_minutes)
    share = (
        {c: m / total for c, m in zip(record.category_ids, record.category_minutes, strict=True)}
        if total > 0
        else {}
    )
    hours = np.zeros(24)
    if record.hour_watches:
        hours[:] = record.hour_watches
    if hours.sum() > 0:
        hours = hours / hours.sum()
    embedding = (
        np.frombuffer(record.embedding, dtype=VECTOR_DTYPE).astype(np.float32)
        if record.embedding is not None
        else None
    )
    return UserFacts(
        user_id=user_id,
        viewer=Viewer(
            latitude=record.latitude,
            longitude=record.longitude,
            language=record.language,
            utc_offset_hours=record.timezone_offset,
            preferred_categories=frozenset(record.preferred_categories),
            category_share=share,
            hour_share=hours,
        ),
        local_preference_strength=record.local_preference_strength,
        city=record.city,
        language=record.language,
        creator_ids=tuple(record.creator_ids),
        creator_minutes=tuple(record.creator_minutes),
        creator_watches=tuple(record.creator_watches),
        has_history=record.has_history,
        embedding=embedding,
    )


def _stream_facts(row: asyncpg.Record) -> StreamFacts:
    devices = row["device_watches"]
    dominant = None
    if devices and max(devices) > 0:
        dominant = DEVICES[int(np.argmax(devices[: len(DEVICES)]))]
    hours = row["hour_watches"]
    total = float(sum(hours)) if hours else 0.0
    profile = tuple(float(h) / total for h in hours) if total > 0 else (0.0,) * 24
    # The few cities, languages and categories repeat across thousands of cached
    # streams: one interned string each instead of one per entry (DEVICES' are
    # constants already).
    return StreamFacts.of(
        stream_id=row["stream_id"],
        creator_id=row["creator_id"],
        title=row["title"],
        city=sys.intern(row["city"]),
        language=sys.intern(row["language"]),
        category_id=sys.intern(row["category_id"]),
        dominant_device=dominant,
        hour_profile=profile,
        latitude=float(row["latitude"]),
        longitude=float(row["longitude"]),
        quality=float(row["stream_quality_score"]),
        avg_viewers=float(row["avg_viewer_count"]),
        followers=float(row["creator_followers"]),
        partnered=float(bool(row["is_partnered"])),
        mature=float(bool(row["mature_content"])),
        popularity=float(row["viewers"] or 0),
    )


class FeatureStore:
    """Viewer and stream facts through `cache`; see the module docstring."""

    def __init__(self, cache: Cache, user_ttl_s: float = 3600.0, stream_ttl_s: float = 1800.0):
        self.cache = cache
        self.user_ttl_s = user_ttl_s
        self.stream_ttl_s = stream_ttl_s
        self.hits = 0
        self.misses = 0
        self.fallbacks = 0
        #: The feature tables' generation this process believes in (app/feed/refreshes.py).
        self.generation = 0
        #: False while the process cannot hear refreshes: the cache is then bypassed.
        self.following = True
        self.failures = ThrottledLog(every_s=10.0, burst=3)
        self._pending_all = False
        self._pending: set[str] = set()
        self._versions: dict[str | None, None] = {}

    # ------------------------------------------------------------------ keys

    def _user_key(self, user_id: str, model_version: str | None) -> str:
        return f"{PREFIX}{self.generation}:u:{model_version or '-'}:{user_id}"

    def _stream_key(self, stream_id: str) -> str:
        return f"{PREFIX}{self.generation}:s{_STREAM_FORMAT}:{stream_id}"

    # ------------------------------------------------------------------ cache calls

    def _fell_back(self, what: str, exc: CacheUnavailable) -> None:
        self.fallbacks += 1
        self.failures.warning(
            f"feature cache {what}",
            f"feature cache ({self.cache.name}) {what} failed, reading PostgreSQL: {exc}",
        )

    async def _get(self, keys: list[str]) -> list[bytes | None] | None:
        """The cached values, or None when the cache must not or cannot be used."""
        if not self.following:
            return None
        try:
            await self._flush_pending()
            return await self.cache.get_many(keys)
        except CacheUnavailable as exc:
            self._fell_back("read", exc)
            return None

    async def _set(self, items: dict[str, bytes], ttl_s: float) -> None:
        if not items or not self.following:
            return
        try:
            await self.cache.set_many(items, ttl_s)
        except CacheUnavailable as exc:
            self._fell_back("write", exc)

    async def _delete(self, keys: list[str]) -> None:
        try:
            await self._flush_pending()
            await self.cache.delete(keys)
        except CacheUnavailable as exc:
            self._pending.update(keys)
            self._fell_back("delete", exc)

    async def _flush_pending(self) -> None:
        if self._pending_all:
            await self.cache.clear(PREFIX)
            self._pending_all = False
            self._pending.clear()
        if self._pending:
            await self.cache.delete(sorted(self._pending))
            self._pending.clear()

    # ------------------------------------------------------------------ reads

    async def user(
        self, conn: asyncpg.Connection, user_id: str, model_version: str | None
    ) -> UserFacts | None:
        """The viewer's facts, None for an unknown user; a hit costs no query."""
        return await self.user_via(lambda: _lent(conn), user_id, model_version)

    async def user_via(
        self, connect: Connect, user_id: str, model_version: str | None
    ) -> UserFacts | None:
        """`user`, borrowing a connection (`connect()`) only on a cache miss.

        A request whose viewer is cached then takes no connection from the pool
        for them (an acquire and release is about 1% of a loaded feed server's CPU).
        """
        self._versions.pop(model_version, None)  # the most recent last
        self._versions[model_version] = None
        while len(self._versions) > _VERSIONS_KEPT:
            del self._versions[next(iter(self._versions))]
        key = self._user_key(user_id, model_version)
        cached = await self._get([key])
        if cached is not None:
            if cached[0] is not None:
                self.hits += 1
                hit = _USER_DECODER.decode(cached[0])
                return None if hit is None else _user_facts(user_id, hit)
            self.misses += 1
        async with connect() as conn:
            record = _user_record(await conn.fetchrow(USER_SQL, user_id, model_version))
        if cached is not None:
            await self._set({key: _ENCODER.encode(record)}, self.user_ttl_s)
        return None if record is None else _user_facts(user_id, record)

    async def streams(
        self, conn: asyncpg.Connection, stream_ids: Sequence[str]
    ) -> dict[str, StreamFacts]:
        """Facts of the known ones among `stream_ids`, in their order; one MGET, one query."""
        ids = list(dict.fromkeys(stream_ids))
        if not ids:
            return {}
        keys = [self._stream_key(s) for s in ids]
        cached = await self._get(keys)
        # The process's own cache keeps the facts themselves: nothing to decode.
        local = isinstance(self.cache, MemoryCache)
        found: dict[str, StreamFacts] = {}
        missing: list[str] = []
        if cached is None:
            missing = ids
        else:
            present = [(s, raw) for s, raw in zip(ids, cached, strict=True) if raw is not None]
            values = [v for _, v in present]
            # What `_keep_streams` put there: facts in the process, msgpack in Redis.
            # Anything else (bytes another writer left) is a miss, as an entry that
            # does not decode is.
            decoded = (
                [v if isinstance(v, StreamFacts) else _UNREADABLE for v in values]
                if local
                else _decode_streams(values)
            )
            for (stream_id, _), facts in zip(present, decoded, strict=True):
                if facts is not _UNREADABLE:
                    found[stream_id] = facts
            missing = [s for s in ids if s not in found]
            self.hits += len(found)
            self.misses += len(missing)
        if missing:
            read = [_stream_facts(row) for row in await conn.fetch(STREAMS_SQL, missing)]
            found.update((facts.stream_id, facts) for facts in read)
            if cached is not None:
                await self._keep_streams(read)
        return {s: found[s] for s in ids if s in found}

    async def _keep_streams(self, read: Sequence[StreamFacts]) -> None:
        """Cache facts read from PostgreSQL: as objects in the process, else msgpack."""
        keys = [self._stream_key(facts.stream_id) for facts in read]
        if isinstance(self.cache, MemoryCache):
            if self.following:
                self.cache.put_objects(
                    {key: (f, _footprint(key, f)) for key, f in zip(keys, read, strict=True)},
                    self.stream_ttl_s,
                )
            return
        encoded = {key: _ENCODER.encode(f) for key, f in zip(keys, read, strict=True)}
        await self._set(encoded, self.stream_ttl_s)

    # ------------------------------------------------------------------ invalidation

    async def invalidate_streams(self, ids: Sequence[str]) -> None:
        """Forget these streams' facts (a profile changed)."""
        await self._delete([self._stream_key(s) for s in ids])

    async def invalidate_users(self, ids: Sequence[str]) -> None:
        """Forget these viewers' facts, under every model version seen lately."""
        versions = [*self._versions] or [None]
        await self._delete([self._user_key(u, v) for u in ids for v in versions])

    async def invalidate_all(self) -> None:
        """Forget everything the store cached (after a refresh or a retrain)."""
        try:
            self._pending.clear()
            await self.cache.clear(PREFIX)
            self._pending_all = False
        except CacheUnavailable as exc:
            self._pending_all = True
            self._fell_back("clear", exc)

    def set_generation(self, generation: int) -> None:
        """Use the keys of `generation` from now on (app/feed/refreshes.py calls this).

        Entries of older generations are never read again; in the process's own
        memory they are dropped at once, in Redis they expire.
        """
        if generation == self.generation:
            return
        self.generation = generation
        self._pending.clear()
        if isinstance(self.cache, MemoryCache):
            self.cache.drop(PREFIX)

    # ------------------------------------------------------------------ health

    async def describe(self) -> dict[str, Any]:
        """For the health page: backend, reachable, entries, hits, misses, fallbacks."""
        return {
            **(await self.cache.describe()),
            "hits": self.hits,
            "misses": self.misses,
            "fallbacks": self.fallbacks,
            "generation": self.generation,
            "following": self.following,
        }


def candidates(
    user: UserFacts,
    streams: Sequence[StreamFacts],
    ranks: Mapping[str, Mapping[str, int]],
    cf_scores: Mapping[str, float],
) -> Candidates:
    """The reranker's view of `streams` for `user`, in the order given.

    `ranks[source][stream_id]` is the stream's 1-based rank in each source that
    proposed it (NaN for the others); `cf_scores` the known embedding dot
    products (NaN for the others). Creator minutes and watches come from the
    viewer's history with each stream's creator (0 when none).
    """
    n = len(streams)
    ids = [s.stream_id for s in streams]
    history = user.creator_history()
    none = (0.0, 0.0)
    # One packed block per stream: every numeric column at once, no loop per number.
    numeric = np.frombuffer(b"".join([s.numbers for s in streams]), dtype=_NUMBER)
    numeric = numeric.reshape(n, _WIDTH)
    column = {name: numeric[:, i] for i, name in enumerate(NUMERIC)}

    position = {s: i for i, s in enumerate(ids)}

    def rank_of(source: str) -> FloatArray:
        """One look-up per stream the source proposed, not one per candidate and source."""
        out = np.full(n, np.nan)
        for stream_id, rank in ranks.get(source, {}).items():
            i = position.get(stream_id)
            if i is not None:
                out[i] = rank
        return out

    cf = np.full(n, np.nan)
    for stream_id, value in cf_scores.items():
        i = position.get(stream_id)
        if i is not None:
            cf[i] = value

    creators = np.array([history.get(s.creator_id, none) for s in streams], dtype=np.float64)
    creators = creators.reshape(n, 2)
    return Candidates(
        stream_id=np.array(ids, dtype=object),
        latitude=column["latitude"],
        longitude=column["longitude"],
        language=np.array([s.language for s in streams], dtype=object),
        category_id=np.array([s.category_id for s in streams], dtype=object),
        quality=column["quality"],
        avg_viewers=column["avg_viewers"],
        followers=column["followers"],
        partnered=column["partnered"],
        mature=column["mature"],
        dominant_device=np.array([s.dominant_device for s in streams], dtype=object),
        hour_profile=numeric[:, len(NUMERIC) :],
        popularity=column["popularity"],
        creator_minutes=creators[:, 0],
        creator_sessions=creators[:, 1],
        cf_score=cf,
        cf_rank=rank_of("cf"),
        near_rank=rank_of("near"),
        trending_rank=rank_of("trending"),
        trending_language_rank=rank_of("trending_language"),
        own_rank=rank_of("own"),
    )


@asynccontextmanager
async def _lent(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """A connection the caller already holds, as `Connect` hands one out."""
    yield conn


def build_cache(redis_url: str | None, max_entries: int, max_bytes: int) -> Cache:
    """Redis when a URL is set, else the in-process cache (and redis-py stays unloaded)."""
    if redis_url:
        from app.feed.redis_cache import RedisCache

        return RedisCache(redis_url)
    return MemoryCache(max_entries, max_bytes)


@asynccontextmanager
async def feature_store(app: Litestar) -> AsyncIterator[None]:
    """Lifespan hook: the store in `app.state.features`, following refreshes, for the app's life.

    With `REDIS_URL` set the cache is Redis (shared by every process), else in
    the process (`FEATURE_CACHE_ENTRIES` entries at most). The Redis client is
    closed at shutdown.
    """
    from app.feed.refreshes import Follower

    settings = app.state.settings
    url = settings.redis_url.get_secret_value() if settings.redis_url is not None else None
    cache = build_cache(
        url, settings.feature_cache_entries, round(settings.feature_cache_mb * 1_000_000)
    )
    store = FeatureStore(cache)
    follower = Follower(store, settings.database_url, settings.db_connect_timeout_s)
    await follower.start()
    app.state.features = store
    try:
        yield
    finally:
        await follower.stop()
        await store.cache.close()

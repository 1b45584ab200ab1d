"""Keep a process's live set (app/feed/live.py) in step with PostgreSQL, by LISTEN/NOTIFY.

The triggers of migration 0008 announce every committed change of the live set
on `LIVE_CHANNEL`: JSON arrays of `[stream_id, is_live, current_viewer_count]`,
the state after the change (not a delta); a bulk seed load announces `RELOAD`.
One dedicated connection (not the request pool's: a LISTEN belongs to one
session, and a pooled connection would be reset and handed to requests) listens
and applies them as they come; a full resync reads every live stream with its
embedding from one snapshot, group by group through a cursor: into the set as
it stands under the same model (`_refresh_in_place`), else into a new set built
aside and swapped in (`read_live_set`, `LiveSet.take`).

Why a resync that races with notifications loses nothing: the follower LISTENs
*before* the resync query, so every change committed after LISTEN is queued as a
notification, and every change committed before the query's snapshot is in the
snapshot. The queue is applied on top of the snapshot, in the order PostgreSQL
delivered it (commit order). A queued change may already be in the snapshot:
applying it again sets the same absolute state, and if a later change of the
same stream is also in the snapshot, its notification comes later in the queue
and wins again. So after the queue is drained, every stream is in its latest
committed state. Conversely, whatever was delivered before the resync's query
starts can be dropped: NOTIFY is delivered after its commit, so the snapshot has
it (this is how a `RELOAD` drops the notifications around it, which may name a
table the load swapped away). A stream going live needs its creator, language,
category and embedding: one query per drained batch fetches them, on the same
connection.

Failures never reach the app: a lost connection (the database restarted, the
backend was terminated, a query failed) is retried with capped exponential
backoff, and requests keep the last known live set meanwhile. Each reconnect
LISTENs and resyncs, so changes made while the follower was away are picked up.
Start-up does not wait for the database: the set is empty until the first sync.

Resyncs also happen every `LIVE_RESYNC_SECONDS` (catching a new active model,
and anything a notification could not say), on `LiveSet.reload()` (SIGHUP, a
trainer's model change), and on `RELOAD`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt
from litestar import Litestar

from app.db.limits import LIVE_CHANNEL, RELOAD
from app.feed.embeddings import VECTOR_DTYPE, active_model
from app.feed.live import LiveRows, LiveSet
from app.reload import on_reload
from app.settings import Settings

log = logging.getLogger(__name__)

#: What the follower's connection calls itself in `pg_stat_activity`.
APPLICATION_NAME = "hometown-live"
#: Statement deadline of the follower's session: a full resync reads every live
#: stream with its vector (about 0.13 s at 100K), so the request path's 2 s would
#: be too tight at a few million; this still ends a query that hangs.
STATEMENT_TIMEOUT_MS = 60_000
#: Backoff between reconnection attempts: doubles from the first to the cap, jittered.
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0
#: Seconds the follower waits for its connection to close at shutdown before dropping it.
CLOSE_TIMEOUT_S = 1.0

#: Every live stream with its vector, as a few rows of parallel arrays rather than
#: one row per stream: asyncpg decodes a text[] in C, where 100K records with six
#: fields each cost about a second of Python. `string_agg` skips streams without
#: a vector, and `has_vector` says which those are; all aggregates of a group see
#: its rows in one order. The groups (by a hash of the id, `$2` = groups - 1) keep
#: each concatenated bytea far below PostgreSQL's 1 GB limit, and each group's
#: decoding and `LiveSet.add` short enough not to hold up requests (`groups_for`).
_LIVE_QUERY = """
SELECT array_agg(s.stream_id) AS ids,
       array_agg(s.creator_id) AS creators,
       array_agg(s.language) AS languages,
       array_agg(s.category_id) AS categories,
       array_agg(s.current_viewer_count) AS viewers,
       array_agg(e.vector IS NOT NULL) AS has_vector,
       string_agg(e.vector, ''::bytea) AS vectors
FROM streams s
LEFT JOIN feed_embeddings e
  ON e.model_version = $1 AND e.entity = 'stream' AND e.entity_id = s.stream_id
WHERE s.is_live
GROUP BY hashtext(s.stream_id) & $2
"""
#: How many streams `_LIVE_QUERY` returns, and how many with a vector: a rebuilt set
#: is allocated at its final size (read in the same snapshot, so exact).
_LIVE_COUNT_QUERY = """
SELECT count(*) AS streams, count(e.vector) AS vectors
FROM streams s
LEFT JOIN feed_embeddings e
  ON e.model_version = $1 AND e.entity = 'stream' AND e.entity_id = s.stream_id
WHERE s.is_live
"""
#: Streams going live, with their vectors. A correlated subquery, not a join: it is
#: one primary-key probe per stream whatever the statistics say, where a join was
#: planned as a hash of every stream vector of the model (0.6 s for 5,000 going
#: live at 100K streams, on a model not yet analysed).
_GOING_LIVE_QUERY = """
SELECT s.stream_id, s.creator_id, s.language, s.category_id,
       (SELECT e.vector FROM feed_embeddings e
        WHERE e.model_version = $1 AND e.entity = 'stream' AND e.entity_id = s.stream_id
       ) AS vector
FROM streams s
WHERE s.stream_id = ANY($2::text[])
"""

#: Live streams per group of `_LIVE_QUERY`, about: each group is decoded and added
#: in one go on the event loop's thread, so this bounds how long a resync holds up
#: the requests around it. At a million live streams, 64 groups of ~16K streams
#: stalled the loop 40-50 ms each (2.4 s a resync; HOMETOWN's p99 at one connection
#: rose to ~300 ms); groups of ~4K cost ~3 ms each.
GROUP_STREAMS = 1024
#: Groups at least (a power of two): also the bound on each group's bytea, 1 GB.
MIN_GROUPS = 64

#: What a lost or failing database raises (TimeoutError is an OSError); retried.
FOLLOW_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)

Change = tuple[bool, int]  # (is_live, current viewers)


class Follower:
    """Follows the live set of one database into one `LiveSet`, until cancelled."""

    def __init__(self, settings: Settings, live: LiveSet) -> None:
        """Follow `settings.database_url` into `live` (nothing happens until `run()`)."""
        self.settings = settings
        self.live = live
        self._pending: list[str] = []  # payloads, in delivery order
        self._wake = asyncio.Event()
        self._resync_wanted = False
        self._lost = asyncio.Event()

    def request_resync(self) -> None:
        """Resync fully as soon as the follower is connected (`LiveSet.reload()` calls this)."""
        self._resync_wanted = True
        self._wake.set()

    async def run(self) -> None:
        """Connect, listen, resync and apply notifications; reconnect forever on failure."""
        self.live.on_reload(self.request_resync)
        failures = 0
        try:
            while True:
                conn: asyncpg.Connection | None = None
                try:
                    conn = await self._connect()
                    failures = 0
                    await self._follow(conn)
                except FOLLOW_ERRORS as exc:
                    failures += 1
                    self._disconnected(exc, failures)
                except Exception:  # a bug must not end the following: log it, start over
                    failures += 1
                    log.exception("live set follower failed; reconnecting")
                    self.live.status.listener_connected = False
                finally:
                    if conn is not None:
                        await _close(conn)
                delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (failures - 1))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
        finally:
            self.live.status.listener_connected = False
            self.live.on_reload(None)

    async def _connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(
            self.settings.database_url,
            timeout=self.settings.db_connect_timeout_s,
            command_timeout=STATEMENT_TIMEOUT_MS / 1000 + 1,
            server_settings={
                "application_name": APPLICATION_NAME,
                "jit": "off",
                "statement_timeout": str(STATEMENT_TIMEOUT_MS),
                "idle_in_transaction_session_timeout": str(STATEMENT_TIMEOUT_MS),
            },
        )
        self._lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: self._lost_connection())
        return conn

    def _lost_connection(self) -> None:
        self._lost.set()
        self._wake.set()

    def _disconnected(self, exc: BaseException, failures: int) -> None:
        was = self.live.status.listener_connected
        self.live.status.listener_connected = False
        self.live.status.last_error = f"{type(exc).__name__}: {exc}"[:300]
        # One warning when the connection is lost, then one every 20 failed attempts.
        if was or failures == 1 or failures % 20 == 0:
            log.warning(
                "live set follower: database unavailable (%s), retrying; requests use the"
                " last known live set (%d streams)",
                type(exc).__name__,
                len(self.live),
            )

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._pending.append(payload)
        self._wake.set()

    async def _follow(self, conn: asyncpg.Connection) -> None:
        """LISTEN, resync, then apply notifications until the connection fails."""
        self._pending.clear()
        await conn.add_listener(LIVE_CHANNEL, self._notified)
        await self._resync(conn)
        self.live.status.listener_connected = True
        self.live.status.last_error = None
        period = self.settings.live_resync_s
        loop = asyncio.get_running_loop()
        next_resync = loop.time() + period
        while True:
            if self._lost.is_set() or conn.is_closed():
                raise asyncpg.InterfaceError("the live set's listening connection was closed")
            if not self._pending and not self._resync_wanted:
                timeout = next_resync - loop.time()
                if timeout > 0:
                    self._wake.clear()
                    # asyncio.timeout, not wait_for: on Python 3.11, wait_for returns
                    # instead of raising when a cancel meets a wake-up, and the
                    # follower would outlive the app's shutdown.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout):
                            await self._wake.wait()
                    continue
                self._resync_wanted = True
            if self._resync_wanted:
                await self._resync(conn)
                next_resync = loop.time() + period
            else:
                await self._apply_pending(conn)

    async def _resync(self, conn: asyncpg.Connection) -> None:
        """Bring the live set to the database's state, then apply what was queued meanwhile.

        Everything queued before this point is dropped: the snapshot covers it
        (see the module docstring). Under the same model the set is refreshed in
        place (`_refresh_in_place`); a new model, or vocabularies grown well past
        the live set, rebuild it whole.
        """
        self._resync_wanted = False
        self._pending.clear()
        previous = self.live.model_version
        refreshed = await _refresh_in_place(conn, self.live)
        if refreshed is None:
            fresh, embedded = await read_live_set(conn)
            # Rows by norm, largest first: what keeps the collaborative query's
            # scan short (app/feed/live.py). In place, new streams keep it so.
            fresh.order_rows()
            self.live.take(fresh)
            refreshed = (len(self.live), embedded)
        version = self.live.model_version
        status = self.live.status
        status.last_full_sync = datetime.now(UTC)
        status.full_syncs += 1
        status.last_change_at = status.last_full_sync
        # The first sync and a change of model are news; the periodic ones are not.
        level = logging.INFO if status.full_syncs == 1 or version != previous else logging.DEBUG
        log.log(
            level,
            "live set synced: %d live streams, %d with embeddings of model %s",
            *refreshed,
            version,
        )
        if self._pending:
            await self._apply_pending(conn)

    async def _apply_pending(self, conn: asyncpg.Connection) -> None:
        """Apply every queued notification: one query for the streams going live."""
        payloads, self._pending = self._pending, []
        if RELOAD in payloads:
            # Everything heard so far, before or after the RELOAD, was committed before
            # the resync's snapshot will be taken: the resync covers it.
            self._resync_wanted = True
            return
        changes = _parse(payloads)
        going_live = [sid for sid, (on, _) in changes.items() if on and sid not in self.live]
        found = await _fetch_streams(conn, self.live.model_version, self.live.dim, going_live)
        # From here to the end: no await, so requests see the whole batch or none of it.
        offline = [sid for sid, (on, _) in changes.items() if not on]
        self.live.discard(offline)
        for sid, (on, viewers) in changes.items():
            if on:
                self.live.set_viewers(sid, viewers)
        if found is not None:
            rows, ids = found
            self.live.add(
                LiveRows(
                    ids=ids,
                    viewers=[changes[sid][1] for sid in ids],
                    creators=rows.creators,
                    languages=rows.languages,
                    categories=rows.categories,
                    vectors=rows.vectors,
                    has_vector=rows.has_vector,
                )
            )
        status = self.live.status
        status.notifications_applied += len(payloads)
        status.last_change_at = datetime.now(UTC)


async def _refresh_in_place(conn: asyncpg.Connection, live: LiveSet) -> tuple[int, int] | None:
    """Resync `live` group by group under its own model; None when it must be rebuilt.

    The periodic resync replaced the whole set: for a moment the old set and a
    new one, with every row of the snapshot decoded at once, were all in memory
    (about 40 MiB more at 100K live streams, the server's peak). Here the
    snapshot's groups come one at a time through a cursor, each applied with
    `LiveSet.add` (a stream keeps its slot and takes the snapshot's values), and
    the streams the snapshot does not have are discarded at the end. Requests
    running between two groups see some streams as the snapshot has them and
    others as the set last heard: each state was true a moment ago, and the
    queue applied afterwards brings both up to date.

    Returns:
        (live streams, of which with a vector), or None when the active model
        differs from the set's, or `live.needs_rebuild()` says so.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        model = await active_model(conn)
        version, dim = (None, 0) if model is None else (model.version, model.dim)
        if version != live.model_version or dim != live.dim or live.needs_rebuild():
            return None
        # The slots the snapshot's streams hold: a mask, not a set of ids (a set
        # of a million ids cost a sixth of the resync's CPU and ~40 MB).
        marked = np.zeros(live.capacity, dtype=bool)
        embedded = 0
        async for group in conn.cursor(_LIVE_QUERY, version, groups_for(len(live)) - 1, prefetch=1):
            rows = _group_rows(group, version, dim)
            slots = live.add(rows)
            if len(marked) < live.capacity:
                marked = np.concatenate([marked, np.zeros(live.capacity - len(marked), bool)])
            marked[slots] = True
            embedded += int(np.count_nonzero(rows.has_vector))
    live.discard_unmarked(marked)
    return len(live), embedded


def groups_for(streams: int) -> int:
    """Groups for `_LIVE_QUERY` over about `streams` live streams: a power of two."""
    groups = MIN_GROUPS
    while groups * GROUP_STREAMS < streams:
        groups *= 2
    return groups


def _group_rows(group: asyncpg.Record, version: str | None, dim: int) -> LiveRows:
    """One group of `_LIVE_QUERY` as columns, its vectors in a matrix of their own."""
    has = np.array(group["has_vector"], dtype=bool)
    matrix = np.zeros((int(np.count_nonzero(has)), dim), dtype=np.float32)
    _put_vectors(matrix, group["vectors"], version, dim)
    return LiveRows(
        ids=group["ids"],
        viewers=group["viewers"],
        creators=group["creators"],
        languages=group["languages"],
        categories=group["categories"],
        vectors=matrix,
        has_vector=has,
    )


def _put_vectors(
    rows: npt.NDArray[np.float32], data: bytes | None, version: str | None, dim: int
) -> None:
    """A group's concatenated vectors into `rows`, one row each (in place)."""
    data = data or b""
    if dim and len(data) != 4 * dim * len(rows):
        raise ValueError(f"feed model {version!r}: a stream vector is not {4 * dim} bytes")
    if dim and data:
        rows[:] = np.frombuffer(data, dtype=VECTOR_DTYPE).reshape(-1, dim)


async def read_live_set(conn: asyncpg.Connection) -> tuple[LiveSet, int]:
    """A new set of every live stream with its embedding (one snapshot), and how many have one.

    The first sync and a change of model build the set whole. Fetching the
    snapshot at once and joining it into columns left some 20 MB of freed heap
    behind in the server at 100K live streams (Python's allocator keeps its
    arenas): here the live streams are counted first, so the set is allocated at
    its final size, and then come one group at a time through a cursor, each
    decoded, added and let go before the next.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        model = await active_model(conn)
        version, dim = (None, 0) if model is None else (model.version, model.dim)
        counts = await conn.fetchrow(_LIVE_COUNT_QUERY, version)
        streams, vectors = int(counts["streams"]), int(counts["vectors"])
        fresh = LiveSet.sized(version, dim, streams=streams, vectors=vectors)
        async for group in conn.cursor(_LIVE_QUERY, version, groups_for(streams) - 1, prefetch=1):
            fresh.add(_group_rows(group, version, dim))
    return fresh, vectors


async def _fetch_streams(
    conn: asyncpg.Connection, version: str | None, dim: int, ids: Sequence[str]
) -> tuple[LiveRows, list[str]] | None:
    """Attributes and embeddings of streams going live; None when there are none."""
    if not ids:
        return None
    records = await conn.fetch(_GOING_LIVE_QUERY, version, list(ids))
    if not records:
        return None
    rows = _rows(records, dim, viewers=[0] * len(records))
    return rows, list(rows.ids)


def _rows(records: Sequence[asyncpg.Record], dim: int, *, viewers: Sequence[int]) -> LiveRows:
    """Columns from rows of (stream_id, creator_id, language, category_id, ..., vector)."""
    vectors = [r["vector"] for r in records]
    row_bytes = 4 * dim
    has = np.fromiter(
        (v is not None and dim > 0 and len(v) == row_bytes for v in vectors),
        dtype=bool,
        count=len(vectors),
    )
    matrix = np.zeros((int(np.count_nonzero(has)), dim), dtype=np.float32)
    if has.any():
        data = b"".join(v for v, ok in zip(vectors, has, strict=True) if ok)
        matrix[:] = np.frombuffer(data, dtype=VECTOR_DTYPE).reshape(-1, dim)
    bad = sum(1 for v, ok in zip(vectors, has, strict=True) if v is not None and not ok)
    if bad:
        log.error("live set: %d stream vectors have the wrong length; left out", bad)
    return LiveRows(
        ids=[r["stream_id"] for r in records],
        viewers=viewers,
        creators=[r["creator_id"] for r in records],
        languages=[r["language"] for r in records],
        categories=[r["category_id"] for r in records],
        vectors=matrix,
        has_vector=has,
    )


def _parse(payloads: Sequence[str]) -> dict[str, Change]:
    """The last state of each stream the payloads name, in first-mention order."""
    changes: dict[str, Change] = {}
    for payload in payloads:
        try:
            triples = json.loads(payload)
            for stream_id, is_live, viewers in triples:
                changes[str(stream_id)] = (bool(is_live), int(viewers or 0))
        except (ValueError, TypeError) as exc:
            log.error("live set: ignored a malformed notification (%s): %.200s", exc, payload)
    return changes


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), CLOSE_TIMEOUT_S)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        conn.terminate()


@contextlib.asynccontextmanager
async def live_streams(app: Litestar) -> AsyncIterator[None]:
    """Lifespan hook: `app.state.live` is the live set, followed by a background task.

    Returns at once: the first sync happens in the background, so the app serves
    (with an empty live set) even while the database is down. At shutdown the
    task is cancelled and its connection closed (within about a second).
    """
    live = LiveSet()
    app.state.live = live
    on_reload(app.state, live.reload)  # SIGHUP: read the set and the active model again
    follower = Follower(app.state.settings, live)
    task = asyncio.create_task(follower.run(), name="hometown-live-follower")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

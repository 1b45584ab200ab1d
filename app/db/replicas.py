"""Read replicas: where a recommendation read goes, and how far behind each replica is.

With `DATABASE_REPLICA_URLS` set, the recommendation endpoints read from hot
standbys (PostgreSQL's own streaming replication) and everything that writes
uses the primary. A replica serves a read only while it is known to hold every
commit the primary had at most `REPLICA_MAX_LAG` seconds ago; otherwise, or when
it is down, it is skipped, and with none left the primary serves.

"Known to hold" is measured, not assumed. Every `CHECK_INTERVAL_S` a monitor
samples the primary's WAL insert position, stamped with the time just before
the query left, so every commit visible on the primary by then lies below it.
Each replica's check reads its replay position: the latest primary sample at or
below it is a moment of which the replica holds everything, `covered_through`.
A read is routed only where `now - covered_through <= REPLICA_MAX_LAG`, checked
at the read itself, so a replica that stops being checked (monitor stuck, primary
unreachable) ages out by itself. Replay timestamps would not do: on an idle
primary they grow without any lag, and they say nothing about commits not yet
streamed.

With the default half second and checks every 100 ms, a stream that goes
offline is gone from every recommendation within one second, replica lag
included. A read may still see a profile written a moment ago as it was before
(no read-your-writes across the primary and a replica); the write endpoints
themselves read the primary.

A replica found down at acquire time is marked down and the primary serves that
read. One that fails mid-query fails that request (503 with Retry-After, as on
the primary) and is marked down, so the next read goes elsewhere.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from litestar import Litestar

from app.db.pool import CONNECTION_ERRORS, QUERY_TIMEOUTS, Pool, connection, create_pool
from app.errors import DatabaseUnavailable
from app.settings import Settings, redact

log = logging.getLogger(__name__)

#: Seconds between checks of the primary's position and of each replica.
CHECK_INTERVAL_S = 0.1
#: Seconds of primary samples kept: a replica further behind is simply "lagging".
HISTORY_S = 60.0
#: PostgreSQL's WAL page header sizes (`SizeOfXLogShortPHD`, `SizeOfXLogLongPHD`).
SHORT_PAGE_HEADER = 24
LONG_PAGE_HEADER = 40

_PRIMARY_POSITION = """
SELECT (pg_current_wal_insert_lsn() - '0/0')::int8,
       current_setting('wal_block_size')::int8,
       pg_size_bytes(current_setting('wal_segment_size'))
"""
_REPLAYED = "SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0')::int8"


def record_end(position: int, page: int, segment: int) -> int:
    """The WAL position a standby reports once it replayed everything before `position`.

    The primary's insert position sits past the page header when the last record
    ended exactly at a page boundary, where no record can end; a standby's replay
    position then stops at the boundary itself. Without this, an idle primary in
    that state would make every replica look behind forever.
    """
    if position % segment == LONG_PAGE_HEADER:
        return position - LONG_PAGE_HEADER
    if position % page == SHORT_PAGE_HEADER:
        return position - SHORT_PAGE_HEADER
    return position


@dataclass
class Replica:
    """One standby: its pool, and what the last check found."""

    name: str
    url: str
    pool: Pool
    #: "unknown" (not checked yet), "up", "lagging", "down", or "not_standby".
    state: str = "unknown"
    #: Monotonic time of which this replica holds every commit; None until known.
    covered_through: float | None = None
    error: str | None = None
    checked_at: float | None = None
    reads: int = 0

    def staleness(self, now: float) -> float | None:
        """Seconds of primary commits this replica may lack right now (None: unknown)."""
        return None if self.covered_through is None else now - self.covered_through

    def failed(self, exc: BaseException) -> None:
        """Skip this replica until a check finds it back."""
        if self.state != "down":
            log.warning("replica %s is down: %s", self.name, _reason(exc))
        self.state = "down"
        self.error = _reason(exc)


@dataclass
class Reads:
    """Picks the connection each recommendation read uses: a fresh replica, else the primary."""

    primary: Pool
    replicas: Sequence[Replica]
    max_lag_s: float
    clock: Callable[[], float] = time.monotonic
    primary_reads: int = 0
    _turn: int = field(default=0, repr=False)

    def choose(self) -> Replica | None:
        """The next fresh replica in turn, or None for the primary."""
        if not self.replicas:
            return None
        now = self.clock()
        fresh = [r for r in self.replicas if r.state == "up" and _fresh(r, now, self.max_lag_s)]
        if not fresh:
            return None
        self._turn += 1
        return fresh[self._turn % len(fresh)]

    @asynccontextmanager
    async def connection(self, timeout_s: float) -> AsyncIterator[asyncpg.Connection]:
        """A connection for a read, with the primary's fault handling (see app/db/pool.py)."""
        replica = self.choose()
        if replica is None:  # no replica fresh (or none configured): the plain path
            self.primary_reads += 1
            async with connection(self.primary, timeout_s) as conn:
                yield conn
            return
        try:
            async with AsyncExitStack() as stack:
                conn = None
                try:
                    conn = await stack.enter_async_context(connection(replica.pool, timeout_s))
                except DatabaseUnavailable as exc:
                    replica.failed(exc)  # down at acquire: the primary serves this one
                    replica = None
                if conn is None:
                    conn = await stack.enter_async_context(connection(self.primary, timeout_s))
                if replica is None:
                    self.primary_reads += 1
                else:
                    replica.reads += 1
                yield conn
        except DatabaseUnavailable as exc:
            if replica is not None:
                replica.failed(exc)
            raise


def _fresh(replica: Replica, now: float, max_lag_s: float) -> bool:
    staleness = replica.staleness(now)
    return staleness is not None and staleness <= max_lag_s


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


class Monitor:
    """Samples the primary's WAL position and each replica's replay position, forever.

    One task per server, plus one per replica, each on a connection of its own (not
    from the request pools, so a busy pool cannot starve the checks).
    """

    def __init__(self, settings: Settings, reads: Reads) -> None:
        self.settings = settings
        self.reads = reads
        self.clock = reads.clock
        #: (time before the query, record-end position), oldest first.
        self._samples: deque[tuple[float, int]] = deque()
        self.primary_error: str | None = None

    async def run(self) -> None:
        """Check until cancelled (the app's shutdown)."""
        await asyncio.gather(self._sample_primary(), *(self._check(r) for r in self.reads.replicas))

    async def _sample_primary(self) -> None:
        conn: asyncpg.Connection | None = None
        while True:
            try:
                if conn is None or conn.is_closed():
                    conn = await self._connect(self.settings.database_url)
                started = self.clock()
                position, page, segment = await conn.fetchrow(_PRIMARY_POSITION)
                self._samples.append((started, record_end(position, page, segment)))
                while self._samples and self._samples[0][0] < started - HISTORY_S:
                    self._samples.popleft()
                self.primary_error = None
            except (*CONNECTION_ERRORS, *QUERY_TIMEOUTS, asyncpg.PostgresError) as exc:
                self.primary_error = _reason(exc)
                _drop(conn)
                conn = None
            await asyncio.sleep(CHECK_INTERVAL_S)

    async def _check(self, replica: Replica) -> None:
        conn: asyncpg.Connection | None = None
        while True:
            try:
                if conn is None or conn.is_closed():
                    conn = await self._connect(replica.url)
                in_recovery, replayed = await conn.fetchrow(_REPLAYED)
                self._update(replica, in_recovery, replayed)
            except (*CONNECTION_ERRORS, *QUERY_TIMEOUTS, asyncpg.PostgresError) as exc:
                replica.failed(exc)
                _drop(conn)
                conn = None
            replica.checked_at = self.clock()
            await asyncio.sleep(CHECK_INTERVAL_S)

    def _update(self, replica: Replica, in_recovery: bool, replayed: int | None) -> None:
        if not in_recovery or replayed is None:
            # A promoted standby, or a URL that names a primary: its data may
            # diverge from our primary's, so it serves nothing.
            if replica.state != "not_standby":
                log.warning("replica %s is not a hot standby; it serves no reads", replica.name)
            replica.state = "not_standby"
            replica.error = "not in recovery (pg_is_in_recovery() is false)"
            return
        positions = [position for _, position in self._samples]
        at = bisect.bisect_right(positions, replayed) - 1
        if at >= 0:
            covered = self._samples[at][0]
            if replica.covered_through is None or covered > replica.covered_through:
                replica.covered_through = covered
        staleness = replica.staleness(self.clock())
        fresh = staleness is not None and staleness <= self.reads.max_lag_s
        if replica.state != "up" and fresh:
            log.info("replica %s serves reads (%.3fs behind)", replica.name, staleness)
        replica.state = "up" if fresh else "lagging"
        replica.error = None

    async def _connect(self, url: str) -> asyncpg.Connection:
        timeout = self.settings.db_connect_timeout_s
        return await asyncpg.connect(
            url,
            timeout=timeout,
            command_timeout=timeout,
            server_settings={"application_name": "hometown-replica-monitor"},
        )


def _drop(conn: asyncpg.Connection | None) -> None:
    """Close a check's connection without waiting on a server that may be gone."""
    if conn is not None:
        conn.terminate()


def build(settings: Settings, primary: Pool, clock: Callable[[], float] = time.monotonic) -> Reads:
    """The read router for `settings`: one pool per replica, sized as the primary's."""
    replicas = [
        Replica(
            name=f"replica{index}",
            url=url,
            pool=create_pool(settings.model_copy(update={"database_url": url})),
        )
        for index, url in enumerate(settings.database_replica_urls, start=1)
    ]
    return Reads(primary, replicas, settings.replica_max_lag_s, clock)


@asynccontextmanager
async def replicas(app: Litestar) -> AsyncIterator[None]:
    """Lifespan hook (after `database`): `app.state.reads`, and the monitor when replicas exist."""
    state = app.state
    reads = build(state.settings, state.pool)
    state.reads = reads
    if not reads.replicas:
        yield
        return
    for replica in reads.replicas:
        await replica.pool  # lazy (min size 0): opens no connection yet
    monitor = Monitor(state.settings, reads)
    state.replica_monitor = monitor
    task = asyncio.create_task(monitor.run(), name="replica-monitor")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for replica in reads.replicas:
            await replica.pool.close()


def status(reads: Reads | None, now: float) -> list[dict[str, Any]]:
    """Each replica's state for `GET /` and `/metrics`: URL without the password, lag, reads.

    The state and the lag are as `Reads.choose` would judge them at `now`, so the
    health page never calls a replica "up" that reads are already skipping.
    """
    found: list[dict[str, Any]] = []
    if reads is None:
        return found
    for r in reads.replicas:
        staleness = r.staleness(now)
        # As the router sees it now: "up" at the last check but too old since is lagging.
        state = r.state
        if state == "up" and not _fresh(r, now, reads.max_lag_s):
            state = "lagging"
        found.append(
            {
                "name": r.name,
                "url": redact(r.url),
                "state": state,
                "lag_s": None if staleness is None else round(staleness, 3),
                "reads": r.reads,
                "error": r.error,
            }
        )
    return found

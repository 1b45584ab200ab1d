"""Record viewer events (impression, click, watch, follow), each at most once.

The log is `events` (migration 0010), partitioned by month of `at`, the
event's own time: old months are dropped whole (`drop_months_before`), and a
training job that reads one period touches only its partitions. A month's
partition is created the first time an event of that month arrives
(`EventLog.ensure_months`), so the log needs no scheduled job to keep
accepting events.

An event is identified by its `event_id` and its `at` (the partition key has
to be part of every unique key of a partitioned table): a client that sends an
event again, after a timeout say, sends the same id and time, and the second
copy changes nothing (`duplicate`). Events of unknown users or streams are not
stored (`unknown_user`, `unknown_stream`); the others of the batch still are.
The whole batch is one statement, in one transaction: all of it is stored, or,
on a database error, none of it, and the client may send it again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import asyncpg

#: What a viewer can do with a stream the service showed them.
TYPES = ("impression", "click", "watch", "follow")
#: How far an event's `at` may lie in the server's future (clock skew), as for live status.
MAX_FUTURE = timedelta(minutes=5)
#: The first month an event may fall in: older ones are refused, not stored.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)

INSERT_SQL = """
WITH batch AS (
    SELECT * FROM unnest(
        $1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::int[], $8::float8[]
    ) WITH ORDINALITY AS b(event_id, at, type, user_id, stream_id, request_id, position,
                           minutes, n)
), checked AS (
    SELECT b.*,
           EXISTS (SELECT 1 FROM users u WHERE u.user_id = b.user_id) AS user_known,
           EXISTS (SELECT 1 FROM streams s WHERE s.stream_id = b.stream_id) AS stream_known
    FROM batch b
), stored AS (
    INSERT INTO events (event_id, at, type, user_id, stream_id, request_id, position, minutes)
    SELECT event_id, at, type, user_id, stream_id, request_id, position, minutes
    FROM checked WHERE user_known AND stream_known
    ON CONFLICT (event_id, at) DO NOTHING
    RETURNING event_id, at
)
SELECT c.n, c.user_known, c.stream_known, s.event_id IS NOT NULL AS stored
FROM checked c LEFT JOIN stored s ON s.event_id = c.event_id AND s.at = c.at
ORDER BY c.n
"""


class Outcome(StrEnum):
    """What became of one event."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate"  # this event id and time are in the log already (or earlier here)
    UNKNOWN_USER = "unknown_user"
    UNKNOWN_STREAM = "unknown_stream"
    REJECTED = "rejected"  # not a valid event; `detail` says why


@dataclass(frozen=True)
class Event:
    """One thing a viewer did: `type` of `stream_id` at `at`, from list `request_id`.

    `position` is the stream's place in that list (1 = first); `minutes` is how
    long a `watch` lasted, and only a watch has it.
    """

    event_id: str
    type: str
    user_id: str
    stream_id: str
    at: datetime
    request_id: str | None = None
    position: int | None = None
    minutes: float | None = None


@dataclass(frozen=True)
class Result:
    """One event's outcome, in the order the events came."""

    event_id: str | None
    outcome: Outcome
    detail: str | None = None


def problem(event: Event, now: datetime) -> str | None:
    """Why `event` cannot be stored, or None: the rules the schema alone cannot say."""
    if (event.type == "watch") != (event.minutes is not None):
        return "`minutes` is required for a watch and allowed for nothing else"
    try:
        at = event.at.astimezone(UTC)
    except OverflowError:
        return f"`at` {event.at.isoformat()} is outside the years 1 to 9999 in UTC"
    if at > now + MAX_FUTURE:
        return f"`at` {event.at.isoformat()} is more than {MAX_FUTURE} ahead of the server's clock"
    if at < EARLIEST:
        return f"`at` {event.at.isoformat()} is before {EARLIEST.date().isoformat()}"
    return None


class EventLog:
    """The event log of one database: `record` batches, creating months as they come.

    Holds the months it has seen a partition for, so a batch of a known month
    asks the catalog nothing. A partition dropped meanwhile (`drop_months_before`
    from another process) makes an insert fail; the log then forgets what it
    knew, creates the month again and retries once.
    """

    def __init__(self) -> None:
        self.known: set[tuple[int, int]] = set()

    async def record(
        self,
        conn: asyncpg.Connection,
        events: Sequence[Event | Result],
        now: datetime | None = None,
    ) -> list[Result]:
        """Store the valid events of a batch; every item gets a result, in input order.

        Items that are already a `Result` (the API's refusals of malformed events)
        keep their place in the answer and are not sent to the database.
        """
        now = now or datetime.now(UTC)
        results: list[Result | None] = [None] * len(events)
        seen: set[tuple[str, datetime]] = set()
        pending: list[tuple[int, Event]] = []
        for position, item in enumerate(events):
            if isinstance(item, Result):
                results[position] = item
                continue
            why = problem(item, now)
            if why is not None:
                results[position] = Result(item.event_id, Outcome.REJECTED, why)
                continue
            key = (item.event_id, item.at.astimezone(UTC))
            if key in seen:
                results[position] = Result(
                    item.event_id, Outcome.DUPLICATE, "sent twice in this batch"
                )
            else:
                seen.add(key)
                pending.append((position, item))
        if pending:
            rows = await self._insert(conn, [event for _, event in pending])
            for (position, event), row in zip(pending, rows, strict=True):
                results[position] = Result(event.event_id, _outcome(row))
        return [r for r in results if r is not None]

    async def _insert(self, conn: asyncpg.Connection, events: list[Event]) -> list[asyncpg.Record]:
        for attempt in (1, 2):
            await self.ensure_months(conn, (event.at for event in events))
            try:
                return list(await conn.fetch(INSERT_SQL, *_columns(events)))
            except asyncpg.CheckViolationError as exc:
                if attempt == 2 or "no partition" not in str(exc):
                    raise
                self.known.clear()  # a month was dropped under us: look again
        raise AssertionError("unreachable")

    async def ensure_months(self, conn: asyncpg.Connection, times: Iterable[datetime]) -> None:
        """Create the monthly partitions `times` fall in that do not exist yet.

        `CREATE TABLE ... PARTITION OF` runs outside any transaction of the
        caller's and locks the parent for a moment, once a month. Two processes
        creating the same month at once is fine: IF NOT EXISTS, and the loser of
        a race on the catalog takes the other's table.
        """
        months = {month_of(at) for at in times} - self.known
        if not months:
            return
        existing = set(await partitions(conn))
        for year, month in sorted(months):
            name = partition_name(year, month)
            if name not in existing:
                low, high = _bounds(year, month)
                # Another process may create it between our check and our CREATE.
                with contextlib.suppress(asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
                    await conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF events"
                        f" FOR VALUES FROM ('{low}') TO ('{high}')"
                    )
            self.known.add((year, month))


def _outcome(row: asyncpg.Record) -> Outcome:
    if not row["user_known"]:
        return Outcome.UNKNOWN_USER
    if not row["stream_known"]:
        return Outcome.UNKNOWN_STREAM
    return Outcome.RECORDED if row["stored"] else Outcome.DUPLICATE


def _columns(events: Sequence[Event]) -> tuple[list[object], ...]:
    return (
        [e.event_id for e in events],
        [e.at for e in events],
        [e.type for e in events],
        [e.user_id for e in events],
        [e.stream_id for e in events],
        [e.request_id for e in events],
        [e.position for e in events],
        [e.minutes for e in events],
    )


# --------------------------------------------------------------------------- partitions


def month_of(at: datetime) -> tuple[int, int]:
    """The (year, month) in UTC whose partition holds an event at `at`."""
    utc = at.astimezone(UTC)
    return utc.year, utc.month


def partition_name(year: int, month: int) -> str:
    """`events_2026_12`: one table a month."""
    return f"events_{year:04d}_{month:02d}"


def _bounds(year: int, month: int) -> tuple[str, str]:
    following = (year + 1, 1) if month == 12 else (year, month + 1)
    return (
        f"{year:04d}-{month:02d}-01 00:00:00+00",
        f"{following[0]:04d}-{following[1]:02d}-01 00:00:00+00",
    )


async def partitions(conn: asyncpg.Connection) -> list[str]:
    """The monthly partitions of `events`, oldest first."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'events'::regclass ORDER BY 1"
    )
    return [row["relname"] for row in rows]


async def drop_months_before(conn: asyncpg.Connection, year: int, month: int) -> list[str]:
    """Drop every monthly partition before (`year`, `month`): the retention cut. Returns them."""
    cut = partition_name(year, month)
    dropped = [name for name in await partitions(conn) if name < cut]
    for name in dropped:
        await conn.execute(f"DROP TABLE {name}")
    return dropped

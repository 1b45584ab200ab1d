"""Record viewer events (impression, click, watch, follow), each at most once.

The log is `events` (migration 0010), partitioned by month of `at`, the
event's own time, each month made as its first event arrives (app/events/months.py).

An event is identified by its `event_id` and its `at` (the partition key has
to be part of every unique key of a partitioned table): a client that sends an
event again, after a timeout say, sends the same id and time, and the second
copy changes nothing (`duplicate`). Events of unknown users or streams are not
stored (`unknown_user`, `unknown_stream`); the others of the batch still are.
The whole batch is one statement, in one transaction: all of it is stored, or,
on a database error, none of it, and the client may send it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import asyncpg

from app.events.months import Months, missing_partition

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

    A partition dropped meanwhile (retention, from another process) makes an
    insert fail; the log then forgets the months it knew, creates the month
    again and retries once.
    """

    def __init__(self) -> None:
        self.months = Months("events")

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
            await self.months.ensure(conn, (event.at for event in events))
            try:
                return list(await conn.fetch(INSERT_SQL, *_columns(events)))
            except asyncpg.CheckViolationError as exc:
                if attempt == 2 or not missing_partition(exc):
                    raise
                self.months.forget()  # a month was dropped under us: look again
        raise AssertionError("unreachable")


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

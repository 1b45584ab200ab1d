"""Apply live-status updates in event-time order, a whole batch in one statement.

Updates come from a platform's event stream: late, duplicated and out of order.
Each carries the time of its event (`at`); a stream remembers the `at` of the
last update applied (`status_at`, migration 0005) and takes an update only when
it is strictly newer. So a late, older update never overwrites a newer state,
and sending an update twice changes nothing the second time.

The batch is one `UPDATE ... FROM unnest(...)`: the comparison with `status_at`
happens in the row's own update, so two batches racing for one stream settle it
by `at`, not by arrival (PostgreSQL re-checks the condition on the row version
the other batch wrote). Before it, one `SELECT ... ORDER BY stream_id FOR
UPDATE` in the same transaction locks the batch's rows in `stream_id` order, so two
batches take their common rows in the same order and cannot deadlock: the UPDATE's
own join visits rows in whatever order the plan likes (a hash join walks the table
in its physical order, which every update changes). A batch that still waits past
the lock timeout is run again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import asyncpg

#: How far an update's `at` may lie in the server's future (clock skew). Further,
#: and a wrong clock could freeze a stream: no real update would ever be newer.
MAX_FUTURE = timedelta(minutes=5)
#: Attempts when the batch waited too long for rows another batch holds, or was
#: picked as a deadlock's victim; past them, the caller answers 503.
LOCK_ATTEMPTS = 4

#: Locks come before the update, in one order for every batch (see the docstring).
#: PostgreSQL sorts before it locks, so `ORDER BY` is the order the locks are taken.
LOCK_SQL = """
SELECT 1 FROM streams WHERE stream_id = ANY($1::text[]) ORDER BY stream_id FOR UPDATE
"""

APPLY_SQL = """
WITH batch AS (
    SELECT * FROM unnest($1::text[], $2::bool[], $3::int[], $4::timestamptz[])
        AS b(stream_id, is_live, viewers, at)
), applied AS (
    UPDATE streams s
    SET is_live = b.is_live,
        current_viewer_count = CASE
            WHEN NOT b.is_live THEN 0
            ELSE COALESCE(b.viewers, s.current_viewer_count)
        END,
        live_since = CASE
            WHEN NOT b.is_live THEN NULL
            WHEN s.is_live THEN s.live_since
            ELSE b.at
        END,
        status_at = b.at,
        updated_at = now()
    FROM batch b
    WHERE s.stream_id = b.stream_id AND (s.status_at IS NULL OR s.status_at < b.at)
    RETURNING s.stream_id
)
SELECT b.stream_id,
       a.stream_id IS NOT NULL AS applied,
       EXISTS (SELECT 1 FROM streams s WHERE s.stream_id = b.stream_id) AS known
FROM batch b LEFT JOIN applied a USING (stream_id)
"""


class Outcome(StrEnum):
    """What became of one update."""

    APPLIED = "applied"
    STALE = "stale"  # the stream already holds a state from this `at` or later
    UNKNOWN = "unknown"  # no such stream
    SUPERSEDED = "superseded"  # the same batch carries a newer update for the stream
    REJECTED = "rejected"  # `at` too far in the future, or not an instant we can store


@dataclass(frozen=True)
class StatusUpdate:
    """One event: the stream went (or still is) live or offline at `at`.

    `current_viewer_count` None keeps the stream's count when it is live; an
    offline stream always has 0 viewers.
    """

    stream_id: str
    is_live: bool
    at: datetime
    current_viewer_count: int | None = None


@dataclass(frozen=True)
class Result:
    """One update's outcome, in the order the updates came."""

    stream_id: str
    outcome: Outcome
    detail: str | None = None


def representable(at: datetime) -> bool:
    """Whether `at` in UTC is still a datetime (years 1 to 9999).

    RFC 3339 allows `0001-01-01T00:00:00+01:00`, which is in year 0 in UTC, and
    `9999-12-31T23:59:59-01:00`, in year 10000: Python cannot convert either to UTC,
    so the driver would fail on them (PostgreSQL's range, 4713 BC to 294276 AD,
    holds every instant that passes here).
    """
    try:
        at.astimezone(UTC)
    except OverflowError:
        return False
    return True


async def apply(
    conn: asyncpg.Connection, updates: Sequence[StatusUpdate], now: datetime | None = None
) -> list[Result]:
    """Apply `updates`; every one gets a result, in input order."""
    now = now or datetime.now(UTC)
    results: list[Result | None] = [None] * len(updates)
    newest: dict[str, int] = {}  # stream_id -> position of its newest update here
    for position, update in enumerate(updates):
        if not representable(update.at):
            results[position] = Result(
                update.stream_id,
                Outcome.REJECTED,
                f"`at` {update.at.isoformat()} is outside the years 1 to 9999 in UTC",
            )
            continue
        if update.at > now + MAX_FUTURE:
            results[position] = Result(
                update.stream_id,
                Outcome.REJECTED,
                f"`at` {update.at.isoformat()} is more than"
                f" {MAX_FUTURE.total_seconds() / 60:.0f} minutes ahead of the server's clock",
            )
            continue
        seen = newest.get(update.stream_id)
        if seen is not None and updates[seen].at > update.at:
            results[position] = Result(update.stream_id, Outcome.SUPERSEDED)
            continue
        if seen is not None:
            results[seen] = Result(update.stream_id, Outcome.SUPERSEDED)
        newest[update.stream_id] = position

    chosen = sorted(newest.values(), key=lambda position: updates[position].stream_id)
    if chosen:
        outcomes = await _apply_sorted(conn, [updates[position] for position in chosen])
        for position in chosen:
            results[position] = Result(
                updates[position].stream_id, outcomes[updates[position].stream_id]
            )
    assert all(result is not None for result in results)
    return [result for result in results if result is not None]


async def _apply_sorted(
    conn: asyncpg.Connection, updates: Sequence[StatusUpdate]
) -> dict[str, Outcome]:
    """Run the statement (one update per stream, in stream_id order)."""
    columns = (
        [u.stream_id for u in updates],
        [u.is_live for u in updates],
        [u.current_viewer_count for u in updates],
        [u.at for u in updates],
    )
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            async with conn.transaction():
                await conn.execute(LOCK_SQL, columns[0])
                rows = await conn.fetch(APPLY_SQL, *columns)
            break
        except (asyncpg.DeadlockDetectedError, asyncpg.LockNotAvailableError):
            # Another batch held some of these rows past the session's lock timeout
            # (or a writer outside this module deadlocked with us). The statements are
            # idempotent in effect: run them again after a short, jittered pause.
            if attempt == LOCK_ATTEMPTS:
                raise
            await asyncio.sleep(random.uniform(0.02, 0.1) * attempt)
    return {
        row["stream_id"]: (
            Outcome.APPLIED
            if row["applied"]
            else Outcome.STALE
            if row["known"]
            else Outcome.UNKNOWN
        )
        for row in rows
    }

"""Every recommendation answer, recorded as exposures without a round trip in the request.

An answer is handed over (`ExposureLog.add`, no I/O: a deque append) and
written later by a background task as one row (its streams as an array), in
batches of answers showing up to `BATCH_ROWS` streams, pipelined in one round
trip (`executemany`), at least every `flush_s` seconds. "Rows" here count
streams shown (exposures), the unit of the buffer's bound and of the counters.
The buffer is bounded (`max_rows`, the `EXPOSURE_BUFFER_ROWS` setting): an
answer that would overflow it is dropped whole and counted (`dropped`, and
`hometown_exposures_dropped` in /metrics), so an outage of the database costs
memory up to the bound and then exposures, never requests. A batch that failed
goes back to the front and is tried again after a pause; the primary key
(request_id, at) and `ON CONFLICT DO NOTHING` make a batch that reached the
database before the failure was seen harmless. At shutdown the buffer is flushed (within
`close_timeout_s`), and what could not be written then is counted as dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from litestar import Litestar

from app.db.pool import BROKEN_CONNECTION_ERRORS, QUERY_TIMEOUTS
from app.errors import ThrottledLog
from app.events.months import Months, missing_partition
from app.experiments import Experiment, Variant

log = logging.getLogger("app.exposures")

#: Rows one write sends at most.
BATCH_ROWS = 5000
#: Seconds to wait after a failed write before the next try.
RETRY_PAUSE_S = 1.0

INSERT_SQL = """
INSERT INTO exposures (request_id, at, scenario, user_id, stream_ids, model, experiment, variant)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (request_id, at) DO NOTHING
"""
#: What a write can fail with that waiting may cure (the database down, slow, or busy);
#: anything else is logged as an error, and tried again all the same.
RETRYABLE: tuple[type[BaseException], ...] = (
    *BROKEN_CONNECTION_ERRORS,
    *QUERY_TIMEOUTS,
    asyncpg.PostgresError,
)


@dataclass(frozen=True)
class Exposure:
    """One answer: `stream_ids` in the order shown, to `user_id`, at `at`."""

    request_id: str
    at: datetime
    scenario: str
    user_id: str | None
    stream_ids: Sequence[str]
    model: str | None = None
    experiment: str | None = None
    variant: str | None = None


def answered(
    request_id: str,
    scenario: str,
    user_id: str | None,
    stream_ids: Sequence[str],
    model: str | None,
    assigned: tuple[Experiment, Variant] | None,
) -> Exposure:
    """An answer given now, under the experiment arm it was served in (if any)."""
    return Exposure(
        request_id=request_id,
        at=datetime.now(UTC),
        scenario=scenario,
        user_id=user_id,
        stream_ids=stream_ids,
        model=model,
        experiment=None if assigned is None else assigned[0].name,
        variant=None if assigned is None else assigned[1].name,
    )


class ExposureLog:
    """The bounded buffer of answers not yet written, and its writer."""

    def __init__(self, max_rows: int, flush_s: float = 1.0, close_timeout_s: float = 5.0) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        self.max_rows = max_rows
        self.flush_s = flush_s
        self.close_timeout_s = close_timeout_s
        self.pending: deque[Exposure] = deque()
        self.rows = 0  # rows in `pending`
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self.last_error: str | None = None
        self.months = Months("exposures")
        self.failure_log = ThrottledLog(every_s=10.0, burst=3)
        self._wake = asyncio.Event()

    def add(self, exposure: Exposure) -> None:
        """Queue one answer for writing; drop it (counted) if the buffer is full."""
        n = len(exposure.stream_ids)
        if n == 0:
            return
        if self.rows + n > self.max_rows:
            self.dropped += n
            return
        self.pending.append(exposure)
        self.rows += n
        if self.rows >= BATCH_ROWS:
            self._wake.set()

    async def run(self, pool: asyncpg.Pool) -> None:
        """Write what is pending, at least every `flush_s`, until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_s)
            self._wake.clear()
            while self.pending:
                if not await self.flush_once(pool):
                    await asyncio.sleep(RETRY_PAUSE_S)
                    break

    async def flush_once(self, pool: asyncpg.Pool) -> bool:
        """Write the oldest batch; on failure put it back. Returns whether it was written."""
        batch: list[Exposure] = []
        rows = 0
        while self.pending and (not batch or rows + len(self.pending[0].stream_ids) <= BATCH_ROWS):
            taken = self.pending.popleft()
            batch.append(taken)
            rows += len(taken.stream_ids)
        self.rows -= rows
        try:
            await self._write(pool, batch)
        except BaseException as exc:
            # Back to the front, whatever happened: a cancelled write (shutdown's
            # deadline) is counted by `close`, not lost uncounted.
            self.pending.extendleft(reversed(batch))
            self.rows += rows
            if not isinstance(exc, Exception):
                raise
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            message = f"exposures not written ({self.rows} rows waiting): {self.last_error}"
            if isinstance(exc, RETRYABLE):
                self.failure_log.warning("exposures", message)
            else:
                self.failure_log.error("exposures", message)
            return False
        self.written += rows
        return True

    async def _write(self, pool: asyncpg.Pool, batch: list[Exposure]) -> None:
        rows = [
            (e.request_id, e.at, e.scenario, e.user_id, list(e.stream_ids), e.model,
             e.experiment, e.variant)
            for e in batch
        ]  # fmt: skip
        async with pool.acquire() as conn:
            for attempt in (1, 2):
                await self.months.ensure(conn, (e.at for e in batch))
                try:
                    # One transaction: a batch is written whole or not at all.
                    async with conn.transaction():
                        await conn.executemany(INSERT_SQL, rows)
                    return
                except asyncpg.CheckViolationError as exc:
                    if attempt == 2 or not missing_partition(exc):
                        raise
                    self.months.forget()

    async def close(self, pool: asyncpg.Pool) -> None:
        """Write what is left within `close_timeout_s`; count the rest as dropped."""

        async def drain() -> None:
            while self.pending and await self.flush_once(pool):
                pass

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drain(), self.close_timeout_s)
        if self.rows:
            log.warning("exposures: %d rows not written at shutdown", self.rows)
            self.dropped += self.rows
            self.pending.clear()
            self.rows = 0

    def describe(self) -> dict[str, Any]:
        """For the health page: what waits, what was written and dropped, the last error."""
        return {
            "pending_rows": self.rows,
            "max_rows": self.max_rows,
            "written": self.written,
            "dropped": self.dropped,
            "failures": self.failures,
            "last_error": self.last_error,
        }


@asynccontextmanager
async def exposure_log(app: Litestar) -> AsyncIterator[None]:
    """Lifespan hook: `app.state.exposures` and its writer, flushed at shutdown.

    Comes after `database` in the lifespan list, so at shutdown it flushes
    while the pool is still open.
    """
    settings = app.state.settings
    exposures = ExposureLog(settings.exposure_buffer_rows, settings.exposure_flush_s)
    app.state.exposures = exposures
    task = asyncio.create_task(exposures.run(app.state.pool))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await exposures.close(app.state.pool)

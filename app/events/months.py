"""Monthly partitions, made as rows arrive: the event log's and the exposure log's.

Both logs are partitioned by month of their time column (migrations 0010 and
0011), so retention drops a month whole and a read of one period touches only
its months. A month's partition (`events_2026_12`, `exposures_2026_12`) is
created the first time a row of that month is written (`Months.ensure`), so
neither log needs a scheduled job to keep accepting rows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import UTC, datetime

import asyncpg

#: The tables partitioned this way (the names are interpolated into DDL: only these).
TABLES = ("events", "exposures")


def month_of(at: datetime) -> tuple[int, int]:
    """The (year, month) in UTC whose partition holds a row at `at`."""
    utc = at.astimezone(UTC)
    return utc.year, utc.month


def partition_name(table: str, year: int, month: int) -> str:
    """`events_2026_12`: one table a month."""
    return f"{_checked(table)}_{year:04d}_{month:02d}"


def _checked(table: str) -> str:
    if table not in TABLES:
        raise ValueError(f"{table!r} is not a monthly-partitioned table ({', '.join(TABLES)})")
    return table


def _bounds(year: int, month: int) -> tuple[str, str]:
    following = (year + 1, 1) if month == 12 else (year, month + 1)
    low = f"{year:04d}-{month:02d}-01 00:00:00+00"
    return low, f"{following[0]:04d}-{following[1]:02d}-01 00:00:00+00"


class Months:
    """The partitions of one table this process has seen, and the making of new ones.

    A month seen once asks the catalog nothing again. A partition dropped
    meanwhile (`drop_before` from another process) makes a write fail with
    "no partition of relation"; the writer then calls `forget` and retries.
    """

    def __init__(self, table: str) -> None:
        self.table = _checked(table)
        self.known: set[tuple[int, int]] = set()

    def forget(self) -> None:
        """Look at the catalog again on the next write (a month was dropped under us)."""
        self.known.clear()

    async def ensure(self, conn: asyncpg.Connection, times: Iterable[datetime]) -> None:
        """Create the monthly partitions `times` fall in that do not exist yet.

        `CREATE TABLE ... PARTITION OF` runs outside any transaction of the
        caller's and locks the parent for a moment, once a month. Two processes
        creating the same month at once is fine: IF NOT EXISTS, and the loser of
        a race on the catalog takes the other's table.
        """
        months = {month_of(at) for at in times} - self.known
        if not months:
            return
        existing = set(await partitions(conn, self.table))
        for year, month in sorted(months):
            name = partition_name(self.table, year, month)
            if name not in existing:
                low, high = _bounds(year, month)
                # Another process may create it between our check and our CREATE.
                with contextlib.suppress(asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
                    await conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {self.table}"
                        f" FOR VALUES FROM ('{low}') TO ('{high}')"
                    )
            self.known.add((year, month))


def missing_partition(exc: BaseException) -> bool:
    """Whether a write failed because its month's partition is gone."""
    return isinstance(exc, asyncpg.CheckViolationError) and "no partition" in str(exc)


async def partitions(conn: asyncpg.Connection, table: str) -> list[str]:
    """The monthly partitions of `table`, oldest first."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = $1::regclass ORDER BY 1",
        _checked(table),
    )
    return [row["relname"] for row in rows]


async def drop_before(conn: asyncpg.Connection, table: str, year: int, month: int) -> list[str]:
    """Drop every monthly partition of `table` before (`year`, `month`); returns their names.

    The retention cut: nothing calls it on a schedule (README, "Viewer events").
    """
    cut = partition_name(table, year, month)
    dropped = [name for name in await partitions(conn, table) if name < cut]
    for name in dropped:
        await conn.execute(f"DROP TABLE {name}")
    return dropped

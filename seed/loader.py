"""Bulk loader: replace the whole dataset atomically, fast, with indexes built last.

Both the synthetic generator and the file importer hand their frames to `load()`.
It never touches the live tables until the very end:

1. `CREATE TABLE hometown_staging.<t> (LIKE public.<t> ...)` copies each table's
   columns, defaults, CHECK constraints, generated `location` and comments, but
   no indexes; the COPY into it runs in the transaction that created it, so on a
   `wal_level=minimal` server (our local cluster) it writes no WAL at all.
2. Rows stream in with COPY (CSV made by pyarrow in a worker thread, chunk by
   chunk, so formatting overlaps the server's parsing and memory stays bounded).
   Streams go in along a Hilbert curve (spatial_order.py), so that neighbours
   share heap and index pages and the nearest-first search touches few of them.
3. Primary keys, indexes, foreign keys and triggers are rebuilt on the staging tables from
   the live tables' own definitions in the catalog (so a later migration that adds
   an index needs no change here), then ANALYZE.
4. One short transaction drops the live tables and moves the staging ones into
   `public`. Readers are blocked only for that swap.
5. The feed's feature tables are recomputed from the new interactions
   (app/feed/refresh.py), which also tells serving processes to drop the
   facts they cached about the old dataset.

A load that fails or is killed at any point before step 4 leaves the previous
dataset untouched; the next load starts by dropping what it left behind.
"""

from __future__ import annotations

import asyncio
import io
import re
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field

import asyncpg
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from app.db.limits import ARRAY_COLUMNS, COLUMNS, INTERACTION_COLUMNS, LIVE_CHANNEL, RELOAD
from app.feed.refresh import refresh_features
from seed.spatial_order import in_hilbert_order

STAGING = "hometown_staging"
TABLES = ("users", "streams", "interactions")  # creation order: referenced tables first
# Any 64-bit number unique to this job: serialises concurrent loads on one database.
LOAD_LOCK_KEY = 0x486F6D65746F776E
CHUNK_ROWS = 250_000


@dataclass
class Dataset:
    """What `load()` writes: one frame per table, columns named as in `COLUMNS`.

    `interactions` may be one frame or an iterable of chunks, so a generator of
    ten million impressions never has to sit in memory at once. Array columns hold
    lists of strings, or ready-made PostgreSQL array literals (`{a,b}`) when the
    producer can build those faster.
    """

    users: pd.DataFrame
    streams: pd.DataFrame
    interactions: pd.DataFrame | Iterable[pd.DataFrame] = field(
        default_factory=lambda: pd.DataFrame(columns=list(INTERACTION_COLUMNS))
    )


@dataclass
class LoadSummary:
    """Rows written per table and seconds spent per phase."""

    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        rows = ", ".join(f"{table} {count:,}" for table, count in self.rows.items())
        phases = ", ".join(f"{name} {secs:.1f}s" for name, secs in self.seconds.items())
        return f"loaded {rows} ({phases}; total {sum(self.seconds.values()):.1f}s)"


def say(message: str) -> None:
    """Progress on stderr, one line per step."""
    print(f"[load] {message}", file=sys.stderr, flush=True)


def pg_array_literal(values: pd.Series) -> pd.Series:
    """Format a column of string lists as PostgreSQL text[] literals.

    Strings that are already literals pass through untouched. Elements are always
    double-quoted, so commas, braces and spaces inside a tag survive.
    """

    def one(items: object) -> str:
        if isinstance(items, str):
            return items
        if items is None or (isinstance(items, float) and pd.isna(items)):
            return "{}"
        quoted = (
            '"' + str(item).replace("\\", "\\\\").replace('"', '\\"') + '"'
            for item in items  # type: ignore[attr-defined]
        )
        return "{" + ",".join(quoted) + "}"

    return values.map(one)


def to_csv_bytes(frame: pd.DataFrame, columns: tuple[str, ...]) -> bytes:
    """One chunk as CSV for COPY: every value quoted, NULLs as bare empty fields.

    pyarrow's writer is multi-threaded C++ and about six times faster than
    `DataFrame.to_csv` here; it writes floats in shortest round-trip form, so
    coordinates survive to the last bit, and quoting every value keeps an empty
    string distinct from NULL.
    """
    out = frame.loc[:, list(columns)]
    arrays = ARRAY_COLUMNS.intersection(columns)
    if arrays:
        out = out.assign(**{name: pg_array_literal(out[name]) for name in arrays})
    table = pa.Table.from_pandas(out, preserve_index=False)
    buffer = io.BytesIO()
    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    pacsv.write_csv(table, buffer, write_options=options)
    return buffer.getvalue()


def iter_chunks(frames: pd.DataFrame | Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Split frames into pieces of at most `CHUNK_ROWS`, the unit of COPY and progress."""
    if isinstance(frames, pd.DataFrame):
        for start in range(0, len(frames), CHUNK_ROWS):
            yield frames.iloc[start : start + CHUNK_ROWS]
    else:
        for frame in frames:
            yield from iter_chunks(frame)


async def _csv_source(
    frames: pd.DataFrame | Iterable[pd.DataFrame], columns: tuple[str, ...], counter: list[int]
) -> AsyncIterator[bytes]:
    """Yield CSV chunks, formatting the next one in a thread while COPY sends this one."""
    iterator = iter_chunks(frames)

    def next_chunk() -> tuple[int, bytes] | None:
        frame = next(iterator, None)
        if frame is None:
            return None
        return len(frame), to_csv_bytes(frame, columns)

    pending = asyncio.ensure_future(asyncio.to_thread(next_chunk))
    while True:
        item = await pending
        if item is None:
            return
        pending = asyncio.ensure_future(asyncio.to_thread(next_chunk))
        counter[0] += item[0]
        yield item[1]


async def _copy_table(
    conn: asyncpg.Connection, table: str, frames: pd.DataFrame | Iterable[pd.DataFrame]
) -> int:
    columns = COLUMNS[table]
    counter = [0]
    async with conn.transaction():
        # Created and filled in one transaction: no WAL for it under wal_level=minimal.
        await conn.execute(
            f"CREATE TABLE {STAGING}.{table} (LIKE public.{table} INCLUDING DEFAULTS"
            " INCLUDING CONSTRAINTS INCLUDING COMMENTS INCLUDING GENERATED"
            " INCLUDING IDENTITY INCLUDING STORAGE)"
        )
        # LIKE leaves out storage parameters; streams keeps free room per page for
        # cheap live-status updates (migration 0005), so copy them over.
        options = await conn.fetchval(
            "SELECT reloptions FROM pg_class WHERE oid = $1::regclass", f"public.{table}"
        )
        if options:
            await conn.execute(f"ALTER TABLE {STAGING}.{table} SET ({', '.join(options)})")
        await conn.copy_to_table(
            table,
            schema_name=STAGING,
            source=_csv_source(frames, columns, counter),
            columns=list(columns),
            format="csv",
        )
    return counter[0]


async def _structure_ddl(conn: asyncpg.Connection) -> list[str]:
    """DDL that gives the staging tables the live tables' keys, indexes and comments.

    Read from the catalog while `search_path` is `public`, so definitions name the
    live tables unqualified; run later with `search_path = hometown_staging`,
    where the same names mean the staging tables.
    """
    ddl: list[str] = []
    for table in TABLES:
        constraints = await conn.fetch(
            """
            SELECT conname, pg_get_constraintdef(oid) AS def, contype
            FROM pg_constraint
            WHERE conrelid = $1::regclass AND contype IN ('p', 'u', 'x', 'f')
            ORDER BY contype = 'f', conname
            """,
            f"public.{table}",
        )
        indexes = await conn.fetch(
            """
            SELECT pg_get_indexdef(i.indexrelid) AS def
            FROM pg_index i
            WHERE i.indrelid = $1::regclass
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
            ORDER BY i.indexrelid
            """,
            f"public.{table}",
        )
        triggers = await conn.fetch(
            "SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger"
            " WHERE tgrelid = $1::regclass AND NOT tgisinternal ORDER BY tgname",
            f"public.{table}",
        )
        comment = await conn.fetchval("SELECT obj_description($1::regclass, 'pg_class')", table)
        for row in constraints:
            if row["contype"] != "f":
                ddl.append(f'ALTER TABLE {table} ADD CONSTRAINT "{row["conname"]}" {row["def"]}')
        for row in indexes:
            statement, count = re.subn(rf" ON (public\.)?{table} ", f" ON {table} ", row["def"])
            if count != 1:
                raise RuntimeError(f"cannot retarget index definition: {row['def']}")
            ddl.append(statement)
        for row in constraints:
            if row["contype"] == "f":
                ddl.append(f'ALTER TABLE {table} ADD CONSTRAINT "{row["conname"]}" {row["def"]}')
        for row in triggers:
            # Created last, so the loaded rows fire nothing: the swap announces a reload.
            statement, count = re.subn(rf" ON (public\.)?{table} ", f" ON {table} ", row["def"])
            if count != 1:
                raise RuntimeError(f"cannot retarget trigger definition: {row['def']}")
            ddl.append(statement)
        if comment:
            ddl.append(f"COMMENT ON TABLE {table} IS {_literal(comment)}")
    return ddl


def _describe(statement: str) -> str:
    """A short progress label for one DDL statement (its target and constraint or index)."""
    words = statement.replace('"', "").split()
    if words[:2] == ["ALTER", "TABLE"]:
        return f"{words[2]}: {words[5]} added"
    if words[0] == "CREATE" and "INDEX" in words:
        name = words[words.index("INDEX") + 1]
        return f"{words[words.index('ON') + 1]}: {name} built"
    return " ".join(words[:4])


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


async def _swap(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        await conn.execute("SET LOCAL lock_timeout = '30s'")
        await conn.execute(
            "LOCK TABLE public.users, public.streams, public.interactions IN ACCESS EXCLUSIVE MODE"
        )
        await conn.execute("DROP TABLE public.interactions, public.streams, public.users")
        for table in TABLES:
            await conn.execute(f"ALTER TABLE {STAGING}.{table} SET SCHEMA public")
        await conn.execute(f"DROP SCHEMA {STAGING}")
        # Servers that keep the live set in memory (app/feed/live.py) read it again.
        await conn.execute(f"NOTIFY {LIVE_CHANNEL}, '{RELOAD}'")


async def load_async(url: str, dataset: Dataset) -> LoadSummary:
    """Replace users, streams and interactions with `dataset`, atomically."""
    summary = LoadSummary()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET search_path = public")
        if await conn.fetchval("SELECT to_regclass('public.users')") is None:
            raise RuntimeError("the schema is missing: run `alembic upgrade head` first")
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOAD_LOCK_KEY):
            say("another load is running on this database; waiting for it")
            await conn.execute("SELECT pg_advisory_lock($1)", LOAD_LOCK_KEY)
        structure = await _structure_ddl(conn)
        await conn.execute(f"DROP SCHEMA IF EXISTS {STAGING} CASCADE")
        await conn.execute(f"CREATE SCHEMA {STAGING}")

        frames = {"users": dataset.users, "streams": in_hilbert_order(dataset.streams)}
        frames["interactions"] = dataset.interactions  # type: ignore[assignment]
        for table in TABLES:
            started = time.perf_counter()
            summary.rows[table] = await _copy_table(conn, table, frames[table])
            elapsed = summary.seconds[f"copy {table}"] = time.perf_counter() - started
            say(f"{table}: {summary.rows[table]:,} rows copied in {elapsed:.1f}s")

        started = time.perf_counter()
        await conn.execute(f"SET search_path = {STAGING}, public")
        await conn.execute("SET maintenance_work_mem = '1GB'")
        for statement in structure:
            step_started = time.perf_counter()
            await conn.execute(statement)
            if (elapsed := time.perf_counter() - step_started) > 1.0:
                say(f"{_describe(statement)} in {elapsed:.1f}s")
        for table in TABLES:
            await conn.execute(f"ANALYZE {table}")
        await conn.execute("SET search_path = public")
        summary.seconds["indexes+analyze"] = time.perf_counter() - started
        say(f"keys, indexes and statistics built in {time.perf_counter() - started:.1f}s")

        started = time.perf_counter()
        await _swap(conn)
        summary.seconds["swap"] = time.perf_counter() - started

        if await conn.fetchval("SELECT to_regclass('public.feed_user_features')") is None:
            say("feed feature tables missing (migration 0008 not applied): not refreshed")
        else:
            say("refreshing the feed's feature tables from the new interactions")
            refreshed = await refresh_features(conn)
            summary.seconds["features"] = refreshed.seconds
            say(str(refreshed))
    finally:
        await conn.close()  # also releases the advisory lock
    say(str(summary))
    return summary


def load(url: str, dataset: Dataset) -> LoadSummary:
    """Synchronous wrapper for command-line tools."""
    return asyncio.run(load_async(url, dataset))

"""Load benchmark: generate + load against a bare COPY of the same rows, same run.

    uv run python -m bench.load --users 1000000 --streams 1000000 --impressions 10000000

Timings on shared 2-core machines are noisy, so the report pairs every number
with a baseline measured in the same run on the same server: a bare `COPY` of
the very same CSV bytes (formatted beforehand, untimed) into plain tables with
no constraints, no generated column and no indexes. The ratio says what our
generation, checks, indexes, ANALYZE and atomic swap cost on top of the server's
raw ingest speed.

It works in a scratch database `<name>_bench` beside the one in DATABASE_URL,
created, migrated and dropped by the run, so the real dataset is never touched.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from app.db.limits import COLUMNS
from app.settings import load_settings
from bench.database import admin, migrate, scratch_url
from seed.generate import generate
from seed.loader import TABLES, iter_chunks, load, say, to_csv_bytes


@dataclass
class Result:
    """What one run measured, in seconds."""

    generate_users_streams: float
    load_phases: dict[str, float]
    end_to_end: float
    bare_copy: dict[str, float]

    def markdown(self, rows: dict[str, int]) -> str:
        """A table ready for BENCHMARKS.md."""
        bare = sum(self.bare_copy.values())
        lines = [
            f"machine: {os.cpu_count()} cores, {platform.python_implementation()} "
            f"{platform.python_version()}, {platform.system()} {platform.machine()}",
            "rows: " + ", ".join(f"{t} {n:,}" for t, n in rows.items()),
            "",
            "| step | seconds |",
            "| --- | ---: |",
            f"| generate users + streams | {self.generate_users_streams:.1f} |",
        ]
        lines += [f"| load: {name} | {secs:.1f} |" for name, secs in self.load_phases.items()]
        lines += [
            f"| **end to end (generate + load)** | **{self.end_to_end:.1f}** |",
            *(f"| baseline: bare COPY {t} | {s:.1f} |" for t, s in self.bare_copy.items()),
            f"| **baseline total** | **{bare:.1f}** |",
            f"| **ratio end to end / bare COPY** | **{self.end_to_end / bare:.2f}x** |",
        ]
        return "\n".join(lines)


async def _replay(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def bare_copy(url: str, payloads: dict[str, list[bytes]]) -> dict[str, float]:
    """COPY ready-made CSV into constraint-free tables; seconds per table."""
    conn = await asyncpg.connect(url)
    seconds: dict[str, float] = {}
    try:
        for table, chunks in payloads.items():
            types = await conn.fetch(
                "SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute"
                " WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
                table,
            )
            by_name = {row["attname"]: row["type"] for row in types}
            columns = ", ".join(f"{name} {by_name[name]}" for name in COLUMNS[table])
            started = time.perf_counter()
            async with conn.transaction():
                # Same transaction as the COPY, as the loader does: equal WAL treatment.
                await conn.execute(f"CREATE TABLE bare_{table} ({columns})")

                await conn.copy_to_table(f"bare_{table}", source=_replay(chunks), format="csv")
            seconds[table] = time.perf_counter() - started
            await conn.execute(f"DROP TABLE bare_{table}")
    finally:
        await conn.close()
    return seconds


def run(url: str, users: int, streams: int, impressions: int, seed: int) -> Result:
    """Measure generate + load, then the bare-COPY baseline, on a scratch database."""
    started = time.perf_counter()
    data = generate(users, streams, impressions, seed=seed)
    generated = time.perf_counter() - started
    summary = load(url, data)
    end_to_end = time.perf_counter() - started

    say("baseline: formatting the same rows as CSV (untimed)")
    again = generate(users, streams, impressions, seed=seed)
    frames = {"users": again.users, "streams": again.streams, "interactions": again.interactions}
    payloads = {
        table: [to_csv_bytes(chunk, COLUMNS[table]) for chunk in iter_chunks(frames[table])]
        for table in TABLES
    }
    bare = asyncio.run(bare_copy(url, payloads))
    return Result(generated, summary.seconds, end_to_end, bare)


def main() -> None:
    """Entry point for `python -m bench.load`."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--streams", type=int, default=1_000_000)
    parser.add_argument("--impressions", type=int, default=0)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    server = load_settings().database_url
    url = scratch_url(server)
    name = url.rpartition("/")[2]
    asyncio.run(admin(server, f'DROP DATABASE IF EXISTS "{name}"'))
    asyncio.run(admin(server, f'CREATE DATABASE "{name}"'))
    try:
        migrate(url)
        result = run(url, args.users, args.streams, args.impressions, args.seed)
    finally:
        asyncio.run(admin(server, f'DROP DATABASE IF EXISTS "{name}"'))
    rows = {"users": args.users, "streams": args.streams, "interactions": args.impressions}
    print(result.markdown(rows))


if __name__ == "__main__":
    main()

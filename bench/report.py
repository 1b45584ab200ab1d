"""The markdown block for BENCHMARKS.md: machine, data, one row per concurrency."""

from __future__ import annotations

import asyncio
import os
import platform
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import asyncpg

from bench.database import Counts
from bench.pgbench import PgbenchResult
from bench.wrk import WrkResult


@dataclass(frozen=True)
class Machine:
    """What the numbers were measured on."""

    cores: int
    ram_gib: float
    python: str
    postgres: str
    postgis: str


async def _versions(url: str) -> tuple[str, str]:
    conn = await asyncpg.connect(url)
    try:
        server = await conn.fetchval("SHOW server_version")
        postgis = await conn.fetchval("SELECT postgis_lib_version()")
    finally:
        await conn.close()
    return str(server).split()[0], str(postgis)


def machine(url: str) -> Machine:
    """Cores, memory, the server's Python (ours: it runs with our interpreter), versions."""
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    server, postgis = asyncio.run(_versions(url))
    return Machine(
        cores=os.cpu_count() or 0,
        ram_gib=mem_kib / 1024**2,
        python=f"{platform.python_implementation()} {platform.python_version()}",
        postgres=server,
        postgis=postgis,
    )


@dataclass(frozen=True)
class Report:
    """Everything one run measured."""

    machine: Machine
    counts: Counts
    target: str
    duration_s: int
    http: list[WrkResult]
    sql: dict[int, PgbenchResult]
    sql_limit: int
    peak_rss_bytes: int

    def markdown(self) -> str:
        """A section ready to paste into BENCHMARKS.md."""
        m, c = self.machine, self.counts
        lines = [
            f"### {date.today().isoformat()}: {c.users:,} users, {c.streams:,} streams",
            "",
            f"Machine: {m.cores} cores, {m.ram_gib:.0f} GiB, {m.python}, "
            f"PostgreSQL {m.postgres} + PostGIS {m.postgis}.",
            f"Data: {c.users:,} users, {c.streams:,} streams, {c.live:,} live.",
            f"Target: `{self.target}`, {self.duration_s} s per level after a warm-up; "
            "bare SQL: pgbench, one transaction = the service's `USER_SQL` + `NEAREST_SQL` "
            f"(ring 0, LIMIT {self.sql_limit}) for a random user.",
            "",
            "| concurrency | req/s | p50 ms | p95 ms | p99 ms | errors "
            "| SQL tps | SQL p50 ms | SQL p99 ms | p50 / SQL p50 | req/s / tps |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for h in self.http:
            s = self.sql.get(h.concurrency)
            sql_cells = (
                f"{s.tps:,.0f} | {s.p50_ms:.2f} | {s.p99_ms:.2f} | "
                f"{h.p50_ms / s.p50_ms:.1f}x | {h.rps / s.tps:.2f}"
                if s
                else "- | - | - | - | -"
            )
            lines.append(
                f"| {h.concurrency} | {h.rps:,.0f} | {h.p50_ms:.2f} | {h.p95_ms:.2f} "
                f"| {h.p99_ms:.2f} | {h.errors} | {sql_cells} |"
            )
        lines += ["", f"Server peak RSS (VmHWM): {self.peak_rss_bytes / 1024**2:.0f} MiB."]
        return "\n".join(lines)

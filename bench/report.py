"""The markdown block for BENCHMARKS.md: machine, data, one row per concurrency."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import asyncpg

from bench.cpu import CpuSplit
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
    #: 1-minute load average when measuring began: other jobs on a shared box show here.
    load_at_start: float


async def _versions(url: str) -> tuple[str, str]:
    conn = await asyncpg.connect(url)
    try:
        server = await conn.fetchval("SHOW server_version")
        postgis = await conn.fetchval("SELECT postgis_lib_version()")
    finally:
        await conn.close()
    return str(server).split()[0], str(postgis)


def machine(url: str, load_at_start: float) -> Machine:
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
        load_at_start=load_at_start,
    )


def code_version() -> str:
    """The commit measured, flagged when app/ or migrations/ differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "app", "migrations", "seed"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{head} with uncommitted changes" if dirty else head


def _ceiling(cores: int, total_ms: float | None) -> str:
    """Requests per second the cores allow when each costs `total_ms` of CPU."""
    return "-" if not total_ms else f"{cores * 1000 / total_ms:,.0f}"


@dataclass(frozen=True)
class Report:
    """Everything one run measured."""

    machine: Machine
    code: str
    counts: Counts
    target: str
    duration_s: int
    http: list[WrkResult]
    http_cpu: dict[int, CpuSplit]
    sql: dict[int, PgbenchResult]
    sql_cpu: dict[int, CpuSplit]
    sql_limit: int
    peak_rss_bytes: int
    #: Server processes (WORKERS); with more than one, `peak_rss_bytes` is their PSS.
    workers: int = 1

    def markdown(self) -> str:
        """A section ready to paste into BENCHMARKS.md."""
        m, c = self.machine, self.counts
        lines = [
            f"### {date.today().isoformat()}: {c.users:,} users, {c.streams:,} streams",
            "",
            f"Machine: {m.cores} cores, {m.ram_gib:.0f} GiB, {m.python}, "
            f"PostgreSQL {m.postgres} + PostGIS {m.postgis}; "
            f"1-minute load average when measuring began: {m.load_at_start:.2f}.",
            f"Code: {self.code}. Data: {c.users:,} users, {c.streams:,} streams, {c.live:,} live.",
            f"Target: `{self.target}` (WORKERS={self.workers}), {self.duration_s} s per level"
            " after a warm-up; "
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
        memory = (
            f"Server peak RSS (VmHWM): {self.peak_rss_bytes / 1024**2:.0f} MiB."
            if self.workers == 1
            else f"Server: {self.workers} workers; PSS of all its processes after the load"
            f" {self.peak_rss_bytes / 1024**2:.0f} MiB."
        )
        lines += ["", memory, ""]
        lines += self._cpu_table()
        return "\n".join(lines)

    def _cpu_table(self) -> list[str]:
        """CPU ms per request by process, and the req/s the cores allow at that cost."""
        cores = self.machine.cores

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        lines = [
            "CPU per request (per transaction for pgbench), ms; ceiling = cores × 1000 / total:",
            "",
            "| concurrency | server | PostgreSQL | wrk | total | ceiling req/s "
            "| SQL: PostgreSQL | pgbench | total | ceiling tps |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for h in self.http:
            c, s = self.http_cpu.get(h.concurrency), self.sql_cpu.get(h.concurrency)
            http_cells = ["-"] * 5
            if c:
                http_cells = [ms(c.server_ms), ms(c.database_ms), ms(c.generator_ms)]
                http_cells += [ms(c.total_ms), _ceiling(cores, c.total_ms)]
            sql_cells = ["-"] * 4
            if s:
                sql_cells = [ms(s.database_ms), ms(s.generator_ms), ms(s.total_ms)]
                sql_cells += [_ceiling(cores, s.total_ms)]
            lines.append(f"| {h.concurrency} | {' | '.join(http_cells + sql_cells)} |")
        return lines

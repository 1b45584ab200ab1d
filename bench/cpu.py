"""CPU seconds spent by the server, the database and the load generator.

On a 2-core box the three share the cores, so throughput is bounded by the CPU that
one request costs all of them together: `cores / (CPU per request)`. Splitting that
cost shows where time goes: Python, PostgreSQL, or the generator itself.

PostgreSQL's share is read from /proc for the whole cluster: the postmaster's own
time, its live children's (backends, checkpointer, ...), and `cutime`/`cstime`,
which the kernel adds up for the children it has already reaped. So backends that
live only for one pgbench run still count. It needs the database on this machine
and readable /proc entries; otherwise the split leaves the database out.
"""

from __future__ import annotations

import asyncio
import os
import resource
from dataclasses import dataclass
from pathlib import Path

import asyncpg

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def process_cpu_s(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU seconds of one process so far (0 when it is gone)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    # Field 14 utime, 15 stime, 16 cutime, 17 cstime; `fields` starts at field 3.
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS_PER_S


def process_tree(pid: int) -> list[int]:
    """`pid` and every process under it (a server's `WORKERS`), parent first."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue  # gone meanwhile
        for task in tasks:
            try:
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
            except OSError:
                continue
            todo += [int(child) for child in children]
    return found


def children_cpu_s() -> float:
    """CPU seconds of every child process we have waited for (wrk, pgbench)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _postmaster_pid(url: str) -> int | None:
    conn = await asyncpg.connect(url)
    try:
        # Read the backend's parent while it is connected: it exits right after.
        backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
        fields = _stat(backend) if _is_postgres(backend) else None
    finally:
        await conn.close()
    return int(fields[1]) if fields and _is_postgres(int(fields[1])) else None


def _is_postgres(pid: int) -> bool:
    """Whether `pid` is a PostgreSQL process on this machine.

    A server in a container or on another host has pid numbers of its own, which
    may name any process here.
    """
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "postgres"
    except OSError:
        return False


def postmaster_pid(url: str) -> int | None:
    """The PostgreSQL server's main process, when it runs on this machine."""
    return asyncio.run(_postmaster_pid(url))


def cluster_cpu_s(postmaster: int) -> float:
    """CPU seconds of the whole cluster so far: postmaster, live and reaped children."""
    total = process_cpu_s(postmaster, reaped_children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and int(fields[1]) == postmaster:
                total += process_cpu_s(int(entry.name))
    return total


@dataclass(frozen=True)
class CpuSplit:
    """CPU milliseconds per request (or per pgbench transaction), by process."""

    server_ms: float
    database_ms: float | None
    generator_ms: float

    @property
    def total_ms(self) -> float | None:
        """What one request costs the box; unknown when the database's share is."""
        if self.database_ms is None:
            return None
        return self.server_ms + self.database_ms + self.generator_ms


@dataclass
class CpuMeter:
    """Counters sampled around one measured window; the split per request."""

    postmaster: int | None
    server_pid: int | None = None
    _at_start: tuple[float, float | None, float] = (0.0, None, 0.0)

    def _sample(self) -> tuple[float, float | None, float]:
        server = (
            sum(process_cpu_s(pid) for pid in process_tree(self.server_pid))
            if self.server_pid
            else 0.0
        )
        database = cluster_cpu_s(self.postmaster) if self.postmaster else None
        return server, database, children_cpu_s()

    def start(self) -> None:
        """Remember the counters at the start of the window."""
        self._at_start = self._sample()

    def split(self, count: int) -> CpuSplit:
        """CPU per request since `start()`, with `count` requests in the window."""
        (server0, database0, children0), (server1, database1, children1) = (
            self._at_start,
            self._sample(),
        )
        per = 1000.0 / max(count, 1)
        database = None
        if database0 is not None and database1 is not None:
            database = (database1 - database0) * per
        return CpuSplit((server1 - server0) * per, database, (children1 - children0) * per)

"""`python -m bench.mixed`: recommendations while live statuses churn, and no update lost.

    uv run python -m bench.mixed [--streams 1000000] [--users 1000000] [--live-share 0.1]
                                 [--duration 30] [--concurrency 8] [--rate 2500]
                                 [--batch 1000] [--connections 4] [--keep-db]

The question (issue 5): at 1M streams with ~100k live, can the service take at least
2,000 status updates per second through `POST /v1/streams/live-status` while it
serves recommendations, what does the write load cost the readers, and does every
update land? The run:

1. a scratch database `<name>_bench_mixed` beside DATABASE_URL's, migrated and seeded
   with `python -m seed generate --impressions 0 --live-share 0.1` (`--keep-db` keeps
   it and reuses it when it was built from the same code and arguments; the churn of
   the previous run stays in it, which changes the live share only a little);
2. `python -m app` on a free loopback port, with a fresh random `API_KEY` in its
   environment only (never printed);
3. phase A, reads alone: wrk POSTs random users to `/v1/scenarios/hometown` at
   `--concurrency` connections for `--duration` seconds after a warm-up;
4. phase W, writes alone: the churn simulator (bench/simulate.py) at `--rate`
   updates per second, so the write path's own cost is seen without readers;
5. phase B, both: the simulator keeps going at `--rate` while wrk repeats phase A;
6. "no update lost": every stream's (is_live, current_viewer_count, status_at) in the
   database against the last update sent to it, over phases W and B;
7. the plan of the service's nearest-first query (EXPLAIN ANALYZE, BUFFERS) before
   and after the churn, and the streams table's dead tuples and HOT-update share;
8. a markdown block on stdout (progress on stderr).

Server, PostgreSQL, wrk and the simulator share the machine's cores; the CPU table
says how many cores each used in each phase, so a shortfall can be placed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from types import FrameType
from typing import Any

import asyncpg
import httpx

from app.hometown.candidates import NEAREST_SQL
from app.settings import load_settings
from bench import database, server, wrk
from bench.cpu import children_cpu_s, cluster_cpu_s, postmaster_pid, process_cpu_s
from bench.log import say
from bench.pgbench import FIRST_LIMIT, VARIABLES
from bench.report import Machine, code_version, machine
from bench.simulate import Options, Simulation, SimulationResult, Verification, read_streams, verify
from seed.bench import _admin, scratch_url

HOMETOWN_PATH = "/v1/scenarios/hometown"
#: The session settings of the service's pool (app/db/pool.py), so EXPLAIN shows the
#: plan the service runs: the generic plan of a prepared statement.
SESSION_SETTINGS = {
    "jit": "off",
    "max_parallel_workers_per_gather": "0",
    "plan_cache_mode": "force_generic_plan",
}
#: NEAREST_SQL's parameter types, in order (see app/hometown/candidates.py).
NEAREST_TYPES = "float8, float8, float8, float8, text[], text[], boolean, integer"


# --------------------------------------------------------------------------- data set


@dataclass(frozen=True)
class MixedDataset(database.Dataset):
    """The API benchmark's dataset with a live share instead of every stream live."""

    live_share: float = 0.1

    def fingerprint(self) -> str:
        """Also says the live share, so a kept database of another share is rebuilt."""
        return f"{super().fingerprint()} live {self.live_share}"


def mixed_scratch_url(server_url: str) -> str:
    """`<name>_bench_mixed` on the same server as DATABASE_URL."""
    return scratch_url(server_url) + "_mixed"


def ensure_data(
    server_url: str, url: str, dataset: MixedDataset, *, reuse: bool
) -> database.Counts:
    """Seed unless a kept database already holds the requested users and streams."""
    if reuse:
        have = database.counts(url)
        if (have.users, have.streams) == (dataset.users, dataset.streams):
            say(f"reusing the kept database: {have.streams:,} streams, {have.live:,} live")
            return have
    database.seed(url, dataset)
    have = database.counts(url)
    if (have.users, have.streams) != (dataset.users, dataset.streams):
        raise RuntimeError(f"the seeded database holds {have}, expected {dataset}")
    name = database.database_name(url)
    asyncio.run(_admin(server_url, f"COMMENT ON DATABASE \"{name}\" IS '{dataset.fingerprint()}'"))
    return have


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Cores:
    """Cores used on average over a window, by process (None: not measurable here)."""

    server: float
    database: float | None
    wrk: float
    simulator: float


@dataclass
class CoreMeter:
    """CPU seconds of server, cluster, wrk and this process around one window.

    Per second rather than per request: in a mixed window there is no single unit
    of work to divide by.
    """

    postmaster: int | None
    server_pid: int
    _start: tuple[float, float, float | None, float, float] = (0.0, 0.0, None, 0.0, 0.0)

    def _sample(self) -> tuple[float, float, float | None, float, float]:
        cluster = cluster_cpu_s(self.postmaster) if self.postmaster else None
        own = process_cpu_s(os.getpid())
        return time.monotonic(), process_cpu_s(self.server_pid), cluster, children_cpu_s(), own

    def start(self) -> None:
        """Remember the counters now."""
        self._start = self._sample()

    def cores(self) -> Cores:
        """Average cores used since `start()`."""
        (t0, s0, d0, w0, o0), (t1, s1, d1, w1, o1) = self._start, self._sample()
        span = max(t1 - t0, 1e-9)
        db = None if d0 is None or d1 is None else (d1 - d0) / span
        # Our own CPU includes the wrk thread's waiting (nothing) and the simulator.
        return Cores((s1 - s0) / span, db, (w1 - w0) / span, (o1 - o0) / span)


@dataclass(frozen=True)
class Writes:
    """The simulator over one measured window."""

    seconds: float
    sent: int
    applied: int
    stale: int
    errors: int
    batches: int
    latency_p50_ms: float
    latency_p99_ms: float

    @property
    def sent_per_s(self) -> float:
        """Updates sent per second."""
        return self.sent / self.seconds

    @property
    def applied_per_s(self) -> float:
        """Updates applied per second."""
        return self.applied / self.seconds


@dataclass(frozen=True)
class TableStats:
    """pg_stat_user_tables for streams."""

    live_tuples: int
    dead_tuples: int
    updates: int
    hot_updates: int
    autovacuums: int


@dataclass(frozen=True)
class Plan:
    """EXPLAIN (ANALYZE, BUFFERS) of the nearest-first query."""

    text: str
    execution_ms: float
    shared_hit: int
    shared_read: int

    @property
    def buffers(self) -> int:
        """Shared buffers touched, from cache or not."""
        return self.shared_hit + self.shared_read


@dataclass
class Phases:
    """Everything measured, for the report."""

    machine: Machine
    code: str
    counts: database.Counts
    args: argparse.Namespace
    reads_alone: wrk.WrkResult
    reads_alone_cores: Cores
    writes_alone: Writes
    writes_alone_cores: Cores
    reads_mixed: wrk.WrkResult
    writes_mixed: Writes
    mixed_cores: Cores
    simulation: SimulationResult
    verification: Verification
    stats_before: TableStats
    stats_after: TableStats
    plan_before: Plan
    plan_after: Plan
    live_after: int
    peak_rss_bytes: int
    notes: list[str] = field(default_factory=list)


async def _table_stats(url: str) -> TableStats:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT n_live_tup, n_dead_tup, n_tup_upd, n_tup_hot_upd, autovacuum_count"
            " FROM pg_stat_user_tables WHERE relname = 'streams'"
        )
    finally:
        await conn.close()
    assert row is not None
    return TableStats(*(int(value) for value in row))


def table_stats(url: str) -> TableStats:
    """The streams table's tuple and update counters (cumulative since the reset)."""
    return asyncio.run(_table_stats(url))


async def _explain(url: str, user_id: str) -> Plan:
    conn = await asyncpg.connect(url, server_settings=SESSION_SETTINGS)
    try:
        user = await conn.fetchrow(
            "SELECT longitude, latitude FROM users WHERE user_id = $1", user_id
        )
        assert user is not None, user_id
        await conn.execute(f"PREPARE nearest({NEAREST_TYPES}) AS {NEAREST_SQL}")
        # Literal arguments from our own floats and integers: EXECUTE takes no binds.
        call = (
            f"EXECUTE nearest({float(user['longitude'])!r}, {float(user['latitude'])!r}, "
            f"{float(VARIABLES['radius_m'])!r}, -1, NULL, NULL, "
            f"{VARIABLES['mature_ok']}, {FIRST_LIMIT})"
        )
        await conn.execute(call)  # warm the plan cache and the pages, as the service is
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {call}")
        text_rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {call}")
    finally:
        await conn.close()
    tree = json.loads(rows[0][0])[0]
    top = tree["Plan"]
    return Plan(
        text="\n".join(r[0] for r in text_rows),
        execution_ms=float(tree["Execution Time"]),
        shared_hit=int(top.get("Shared Hit Blocks", 0)),
        shared_read=int(top.get("Shared Read Blocks", 0)),
    )


def explain(url: str, user_id: str = "user_000000") -> Plan:
    """The service's nearest-first query for a real user, as the service plans it."""
    return asyncio.run(_explain(url, user_id))


def writes_between(sim: Simulation, since: float, until: float, before: Any, after: Any) -> Writes:
    """The simulator's counters between two snapshots."""
    t = sim.tally
    return Writes(
        seconds=max(after.at - before.at, 1e-9),
        sent=after.sent - before.sent,
        applied=after.applied - before.applied,
        stale=after.stale - before.stale,
        errors=after.http_errors - before.http_errors,
        batches=after.batches - before.batches,
        latency_p50_ms=t.latency_ms(50, since, until),
        latency_p99_ms=t.latency_ms(99, since, until),
    )


async def _drive_writes(
    sim: Simulation,
    meter: CoreMeter,
    args: argparse.Namespace,
    *,
    with_reads: tuple[str, str] | None,
) -> tuple[Writes, Cores, wrk.WrkResult | None, SimulationResult]:
    """Run the simulator; measure a window of `duration` after a warm-up, with wrk or not.

    The simulator starts `warmup` seconds before the window and stops right after
    it, so the whole window sees the write load at full rate.
    """
    stop = asyncio.Event()
    task = asyncio.create_task(sim.run(stop))
    await asyncio.sleep(args.warmup)
    if task.done():
        await task  # raises what went wrong
    before, since = sim.tally.snapshot(), time.monotonic()
    meter.start()
    reads = None
    if with_reads is None:
        await asyncio.sleep(args.duration)
    else:
        wrk_path, base_url = with_reads
        script = wrk.lua_script(path=HOMETOWN_PATH, users=args.users, seed=args.seed)
        reads = await asyncio.to_thread(
            wrk.run,
            wrk_path,
            base_url,
            script,
            concurrency=args.concurrency,
            duration_s=args.duration,
        )
    cores = meter.cores()
    after, until = sim.tally.snapshot(), time.monotonic()
    stop.set()
    result = await task
    return writes_between(sim, since, until, before, after), cores, reads, result


def _probe_write(api: server.Server, key: str) -> None:
    """One harmless write, so a missing route or key fails before the load.

    Its stream does not exist, so it changes nothing and comes back "unknown".
    """
    update = {
        "stream_id": "bench-probe-no-such-stream",
        "is_live": False,
        "current_viewer_count": None,
        "at": "2000-01-01T00:00:00+00:00",
    }
    response = httpx.post(
        api.base_url + "/v1/streams/live-status",
        json={"updates": [update]},
        headers={"X-API-Key": key},
        timeout=30,
    )
    if response.status_code != 200:
        raise RuntimeError(f"the live-status endpoint answered {response.status_code}")


def measure(
    args: argparse.Namespace, server_url: str, url: str, dataset: MixedDataset, *, reuse: bool
) -> Phases:
    """Everything between a migrated database and the report; the caller cleans up."""
    wrk_path = wrk.ensure_wrk()
    counts = ensure_data(server_url, url, dataset, reuse=reuse)
    postmaster = postmaster_pid(url)
    if postmaster is None:
        say("the database runs elsewhere: its CPU is left out")
    say("reading the streams for the simulator")
    streams = read_streams(url)
    load_at_start = os.getloadavg()[0]
    key = secrets.token_urlsafe(32)
    api = server.start(url, extra_env={"API_KEY": key})
    try:
        status, answer = server.probe(
            api, HOMETOWN_PATH, json.dumps({"user_id": "user_000000"}).encode()
        )
        if status != 200:
            raise RuntimeError(f"probe {HOMETOWN_PATH} answered {status}: {answer[:300]!r}")
        _probe_write(api, key)
        meter = CoreMeter(postmaster, api.process.pid)
        script = wrk.lua_script(path=HOMETOWN_PATH, users=args.users, seed=args.seed)

        say(f"phase A (reads alone): warm-up {args.warmup}s, then {args.duration}s")
        wrk.run(
            wrk_path, api.base_url, script, concurrency=args.concurrency, duration_s=args.warmup
        )
        meter.start()
        reads_alone = wrk.run(
            wrk_path, api.base_url, script, concurrency=args.concurrency, duration_s=args.duration
        )
        reads_alone_cores = meter.cores()
        say(_reads_line("A", reads_alone))

        plan_before = explain(url)
        stats_before = table_stats(url)
        options = Options(
            url=api.base_url,
            api_key=key,
            duration_s=10 * (args.duration + args.warmup) + 600,  # stopped by the caller
            rate=args.rate,
            batch=args.batch,
            connections=args.connections,
            seed=args.seed,
            progress_s=5.0,
        )
        sim = Simulation(streams, options)

        say(f"phase W (writes alone): {args.rate:,.0f} updates/s, {args.duration}s")
        writes_alone, writes_alone_cores, _, _ = asyncio.run(
            _drive_writes(sim, meter, args, with_reads=None)
        )
        say(_writes_line("W", writes_alone))

        say(f"phase B (reads + {args.rate:,.0f} updates/s): {args.duration}s")
        writes_mixed, mixed_cores, reads_mixed, simulation = asyncio.run(
            _drive_writes(sim, meter, args, with_reads=(wrk_path, api.base_url))
        )
        assert reads_mixed is not None
        say(_reads_line("B", reads_mixed))
        say(_writes_line("B", writes_mixed))
        say(simulation.summary())
        peak_rss = api.peak_rss_bytes()
    finally:
        api.stop()
    say(f"verifying {len(simulation.last):,} streams against the last update sent")
    verification = verify(url, simulation.last)
    say(verification.summary())
    plan_after = explain(url)
    time.sleep(1.5)  # backends flush their table statistics about once a second
    stats_after = table_stats(url)
    return Phases(
        machine=machine(url, load_at_start),
        code=code_version(),
        counts=counts,
        args=args,
        reads_alone=reads_alone,
        reads_alone_cores=reads_alone_cores,
        writes_alone=writes_alone,
        writes_alone_cores=writes_alone_cores,
        reads_mixed=reads_mixed,
        writes_mixed=writes_mixed,
        mixed_cores=mixed_cores,
        simulation=simulation,
        verification=verification,
        stats_before=stats_before,
        stats_after=stats_after,
        plan_before=plan_before,
        plan_after=plan_after,
        live_after=database.counts(url).live,
        peak_rss_bytes=peak_rss,
    )


def _reads_line(phase: str, r: wrk.WrkResult) -> str:
    return (
        f"phase {phase}: {r.rps:,.0f} recommendations/s, p50 {r.p50_ms:.1f} ms, "
        f"p95 {r.p95_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, errors {r.errors}"
    )


def _writes_line(phase: str, w: Writes) -> str:
    return (
        f"phase {phase}: {w.sent_per_s:,.0f} updates/s sent, {w.applied_per_s:,.0f}/s applied, "
        f"batch p50 {w.latency_p50_ms:.0f} ms, p99 {w.latency_p99_ms:.0f} ms, errors {w.errors}"
    )


# --------------------------------------------------------------------------- report


def _ms(value: float) -> str:
    return "-" if value != value else f"{value:.1f}"  # NaN: no batch answered


def _cores(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(p: Phases) -> str:
    """A section ready to paste into BENCHMARKS.md."""
    m, c, a = p.machine, p.counts, p.args
    goal = 2000.0
    met = p.writes_mixed.applied_per_s >= goal and p.verification.ok
    lines = [
        f"### {date.today().isoformat()}: mixed reads and live-status writes, "
        f"{c.streams:,} streams",
        "",
        f"Machine: {m.cores} cores, {m.ram_gib:.0f} GiB, {m.python}, "
        f"PostgreSQL {m.postgres} + PostGIS {m.postgis}; "
        f"1-minute load average when measuring began: {m.load_at_start:.2f}.",
        f"Code: {p.code}. Data: {c.users:,} users, {c.streams:,} streams, {c.live:,} live "
        f"at the start ({p.live_after:,} at the end).",
        f"Reads: wrk, {a.concurrency} connections, random `user_id`s to "
        f"`POST {HOMETOWN_PATH}`, {a.duration} s after a {a.warmup} s warm-up. "
        f"Writes: `python -m bench.simulate` at {a.rate:,.0f} updates/s in batches of "
        f"{a.batch:,} over {a.connections} connections to `POST /v1/streams/live-status`.",
        "",
        "| phase | recommendations/s | p50 ms | p95 ms | p99 ms | errors "
        "| updates/s sent | applied/s | batch p50 ms | batch p99 ms | write errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    r, w = p.reads_alone, p.writes_alone
    lines.append(
        f"| A: reads alone | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.p99_ms:.1f} "
        f"| {r.errors} | - | - | - | - | - |"
    )
    lines.append(
        f"| W: writes alone | - | - | - | - | - | {w.sent_per_s:,.0f} | {w.applied_per_s:,.0f} "
        f"| {_ms(w.latency_p50_ms)} | {_ms(w.latency_p99_ms)} | {w.errors} |"
    )
    r, w = p.reads_mixed, p.writes_mixed
    lines.append(
        f"| B: both | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.p99_ms:.1f} "
        f"| {r.errors} | {w.sent_per_s:,.0f} | {w.applied_per_s:,.0f} "
        f"| {_ms(w.latency_p50_ms)} | {_ms(w.latency_p99_ms)} | {w.errors} |"
    )
    lines += [
        "",
        "Cores used on average (CPU seconds per second):",
        "",
        "| phase | server | PostgreSQL | wrk | simulator |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, u in (
        ("A: reads alone", p.reads_alone_cores),
        ("W: writes alone", p.writes_alone_cores),
        ("B: both", p.mixed_cores),
    ):
        lines.append(
            f"| {name} | {u.server:.2f} | {_cores(u.database)} | {u.wrk:.2f} | {u.simulator:.2f} |"
        )
    ws = p.writes_alone
    wc = p.writes_alone_cores
    if ws.applied and wc.database is not None:
        per = 1000.0 / max(ws.sent_per_s, 1e-9)
        lines += [
            "",
            f"Writes alone cost {wc.server * per * 1000:.0f} ms of server CPU and "
            f"{wc.database * per * 1000:.0f} ms of PostgreSQL CPU per 1,000 updates sent.",
        ]
    s = p.simulation
    v = p.verification
    lines += [
        "",
        f"Updates over phases W and B: {s.sent:,} sent, {s.applied:,} applied, "
        f"{s.stale:,} stale (an older update that lost a race with a newer one), "
        f"{s.superseded:,} superseded, {s.unknown:,} unknown, {s.rejected:,} rejected; "
        f"{s.failed_batches} batches failed after retries.",
        f"**No update lost: {'yes' if v.ok else 'NO'}** — {v.summary().removeprefix('verify: ')}.",
        f"**Goal (≥ {goal:,.0f} updates/s applied while serving, none lost): "
        f"{'met' if met else 'not met'}.**",
        "",
    ]
    b, f = p.stats_before, p.stats_after
    updates = f.updates - b.updates
    hot = f.hot_updates - b.hot_updates
    lines += [
        f"`streams` in pg_stat_user_tables: {f.dead_tuples:,} dead tuples after the run "
        f"({b.dead_tuples:,} before), for {c.streams:,} rows; "
        f"{updates:,} row updates during phases W and B, {hot:,} of them HOT "
        f"({hot / updates:.0%}); autovacuum ran {f.autovacuums - b.autovacuums} times."
        if updates
        else "`streams` in pg_stat_user_tables: no row updates counted.",
        "",
        f"Nearest-first query (`NEAREST_SQL`, user_000000, generic plan, LIMIT {FIRST_LIMIT}): "
        f"{p.plan_before.execution_ms:.2f} ms, {p.plan_before.buffers} buffers before the "
        f"churn; {p.plan_after.execution_ms:.2f} ms, {p.plan_after.buffers} buffers after:",
        "",
        "```",
        p.plan_after.text,
        "```",
        "",
        f"Server peak RSS (VmHWM): {p.peak_rss_bytes / 1024**2:.0f} MiB.",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def parser() -> argparse.ArgumentParser:
    """The command line."""
    doc = __doc__ or ""
    cli = argparse.ArgumentParser(prog="python -m bench.mixed", description=doc.split("\n")[0])
    cli.add_argument("--streams", type=_positive, default=1_000_000)
    cli.add_argument("--users", type=_positive, default=1_000_000)
    cli.add_argument("--live-share", type=float, default=0.1)
    cli.add_argument("--duration", type=_positive, default=30, help="seconds per phase")
    cli.add_argument("--warmup", type=_positive, default=5, help="seconds before each phase")
    cli.add_argument("--concurrency", type=_positive, default=8, help="wrk connections")
    cli.add_argument("--rate", type=float, default=2500.0, help="status updates per second")
    cli.add_argument("--batch", type=_positive, default=1000, help="updates per request")
    cli.add_argument("--connections", type=_positive, default=4, help="simulator connections")
    cli.add_argument("--seed", type=int, default=42)
    cli.add_argument(
        "--keep-db", action="store_true", help="keep the scratch database; reuse it if it fits"
    )
    return cli


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: set up, measure, always clean up, print the report."""
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    server_url = load_settings().database_url
    url = mixed_scratch_url(server_url)
    dataset = MixedDataset(
        users=args.users, streams=args.streams, seed=args.seed, live_share=args.live_share
    )
    try:
        reuse = database.prepare(server_url, url, dataset, keep=args.keep_db)
        phases = measure(args, server_url, url, dataset, reuse=reuse)
    except (
        RuntimeError,
        OSError,
        subprocess.SubprocessError,
        asyncpg.PostgresError,
        httpx.HTTPError,
    ) as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if args.keep_db:
            say(f"keeping {database.database_name(url)} (--keep-db)")
        else:
            database.drop(server_url, url)
    print(markdown(phases))
    return 0 if phases.verification.ok else 1


if __name__ == "__main__":
    sys.exit(main())

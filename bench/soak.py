"""`python -m bench.soak`: the service at about 70% of its capacity for ten minutes.

    uv run python -m bench.soak [--streams 1000000] [--users 1000000] [--live-share 0.1]
                                [--duration 600] [--slice 60] [--share 0.7]
                                [--write-rate 1000] [--workers 1] [--keep-db]

A short benchmark shows speed; a soak shows what only time shows: memory that
creeps, latency that drifts as tables churn and bloat, errors that come once a
minute. The run:

1. the mixed benchmark's dataset (1M streams, 10% live) in a scratch database
   `<name>_bench_soak` (`--keep-db` keeps and reuses it);
2. `python -m app` with a random API key; the churn simulator sends live-status
   updates at `--write-rate` per second for the whole run;
3. capacity: wrk at 16 connections for 15 s while the writes run;
4. the soak: reads paced to `--share` of that capacity (wrk's per-connection
   `delay()`, re-tuned every slice towards the target rate), in slices of
   `--slice` seconds, each slice reporting req/s, p50, p99, errors, the server's
   resident memory and the updates applied;
5. afterwards: zero errors, RSS at the start and the end, the spread of the
   per-slice p99, and "no update lost" against the database.

A markdown block goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from dataclasses import dataclass

import httpx

from bench import server, wrk
from bench.cli import add_dataset_options, positive, positive_float, run_main, scratch_database
from bench.log import say
from bench.mixed import HOMETOWN_PATH, MixedDataset, ensure_data
from bench.report import code_version, machine
from bench.simulate import (
    Options,
    Simulation,
    SimulationResult,
    StreamTable,
    read_streams,
    verify,
)

CAPACITY_CONCURRENCY = 16
CAPACITY_SECONDS = 15
#: Connections that carry the paced reads: enough that one slow answer does not
#: starve the rate, few enough to leave the box its cores.
SOAK_CONCURRENCY = 8


@dataclass(frozen=True)
class Slice:
    """One measured slice of the soak."""

    index: int
    reads: wrk.WrkResult
    rss_mib: float
    applied_per_s: float
    write_errors: int


@dataclass(frozen=True)
class SoakRun:
    """Everything the soak measured."""

    capacity: wrk.WrkResult
    target: float
    slices: list[Slice]
    rss_start: float
    simulation: SimulationResult


def memory_mib(api: server.Server) -> float:
    """The server's memory now, MiB: its RSS, or with several workers their PSS summed.

    RSS would count the pages the workers share (the app built before the fork) once
    per process; PSS splits them (bench/server.py).
    """
    if len(api.pids()) > 1:
        return api.pss_bytes() / 2**20
    return api.rss_bytes() / 2**20


def delay_for(target_rps: float, latency_ms: float) -> float:
    """Per-connection pause that brings `SOAK_CONCURRENCY` connections to `target_rps`."""
    return max(SOAK_CONCURRENCY * 1000.0 / target_rps - latency_ms, 0.0)


async def _soak(
    args: argparse.Namespace, api: server.Server, key: str, streams: StreamTable
) -> SoakRun:
    """Capacity, then the paced slices, with the writes running throughout."""
    wrk_path = wrk.ensure_wrk()
    sim = Simulation(
        streams,
        Options(
            url=api.base_url,
            api_key=key,
            duration_s=args.duration * 3 + 600,  # stopped below
            rate=args.write_rate,
            batch=1000,
            connections=2,
            seed=args.seed,
            progress_s=30.0,
        ),
    )
    stop = asyncio.Event()
    writer = asyncio.create_task(sim.run(stop))
    await asyncio.sleep(5)
    script = wrk.lua_script(path=HOMETOWN_PATH, users=args.users, seed=args.seed)
    capacity = await asyncio.to_thread(
        wrk.run,
        wrk_path,
        api.base_url,
        script,
        concurrency=CAPACITY_CONCURRENCY,
        duration_s=CAPACITY_SECONDS,
    )
    target = args.share * capacity.rps
    say(f"capacity with writes running: {capacity.rps:,.0f} req/s; soaking at {target:,.0f}")

    slices: list[Slice] = []
    delay = delay_for(target, capacity.p50_ms / 2)
    rss_start = memory_mib(api)
    for index in range(max(args.duration // args.slice, 1)):
        before = sim.tally.snapshot()
        paced = wrk.lua_script(
            path=HOMETOWN_PATH, users=args.users, seed=args.seed + index, delay_ms=delay
        )
        reads = await asyncio.to_thread(
            wrk.run,
            wrk_path,
            api.base_url,
            paced,
            concurrency=SOAK_CONCURRENCY,
            duration_s=args.slice,
        )
        after = sim.tally.snapshot()
        span = max(after.at - before.at, 1e-9)
        piece = Slice(
            index=index,
            reads=reads,
            rss_mib=memory_mib(api),
            applied_per_s=(after.applied - before.applied) / span,
            write_errors=after.http_errors - before.http_errors,
        )
        slices.append(piece)
        say(
            f"slice {index + 1}: {reads.rps:,.0f} req/s (target {target:,.0f}), p50"
            f" {reads.p50_ms:.1f} ms, p99 {reads.p99_ms:.1f} ms, errors {reads.errors},"
            f" RSS {piece.rss_mib:.0f} MiB, {piece.applied_per_s:,.0f} updates/s"
        )
        # Steer the pause towards the target: each connection's cycle is its latency
        # plus the pause, so infer the latency from the rate reached and solve again.
        cycle = SOAK_CONCURRENCY * 1000.0 / max(reads.rps, 1.0)
        delay = delay_for(target, max(cycle - delay, 0.0))
    stop.set()
    result = await writer
    return SoakRun(capacity, target, slices, rss_start, result)


def markdown(args: argparse.Namespace, url: str, load: float, run: SoakRun, checked: str) -> str:
    """The report."""
    slices = run.slices
    m = machine(url, load)
    p99s = [s.reads.p99_ms for s in slices]
    errors = sum(s.reads.errors for s in slices) + sum(s.write_errors for s in slices)
    lines = [
        f"### {time.strftime('%Y-%m-%d')}: soak, {args.duration / 60:g} minutes at"
        f" {args.share:.0%} of capacity",
        "",
        f"Machine: {m.cores} cores, {m.ram_gib:.0f} GiB, {m.python}, PostgreSQL {m.postgres} +"
        f" PostGIS {m.postgis}; 1-minute load average when the soak began: {m.load_at_start:.2f}.",
        f"Code: {code_version()}. Data: {args.users:,} users, {args.streams:,} streams,"
        f" {args.live_share:.0%} live. Writes: the churn simulator at {args.write_rate:,} updates/s"
        f" in batches of 1,000 throughout. Capacity (wrk, {CAPACITY_CONCURRENCY} connections,"
        f" {CAPACITY_SECONDS} s, writes running): {run.capacity.rps:,.0f} req/s; reads paced"
        f" to {run.target:,.0f} req/s over {SOAK_CONCURRENCY} connections."
        f" Server: {args.workers} process{'es' if args.workers > 1 else ''} (WORKERS)"
        f"{'; memory is their PSS summed' if args.workers > 1 else ''}.",
        "",
        "| slice | req/s | p50 ms | p99 ms | read errors | updates/s applied | write errors"
        " | server memory MiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in slices:
        lines.append(
            f"| {s.index + 1} | {s.reads.rps:,.0f} | {s.reads.p50_ms:.1f} | {s.reads.p99_ms:.1f}"
            f" | {s.reads.errors} | {s.applied_per_s:,.0f} | {s.write_errors} | {s.rss_mib:.0f} |"
        )
    lines += [
        "",
        f"- Errors over the run: **{errors}** (reads and writes).",
        f"- Server memory: {run.rss_start:.0f} MiB at the start of the soak,"
        f" {slices[-1].rss_mib:.0f} MiB at the end.",
        f"- p99 per slice: median {statistics.median(p99s):.1f} ms, min {min(p99s):.1f},"
        f" max {max(p99s):.1f} ms.",
        f"- {checked}",
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The command line."""
    cli = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    add_dataset_options(cli, streams=1_000_000)
    cli.add_argument("--live-share", type=float, default=0.1)
    cli.add_argument("--duration", type=positive, default=600, help="seconds of soak")
    cli.add_argument("--slice", type=positive, default=60, help="seconds per reported slice")
    cli.add_argument(
        "--share", type=positive_float, default=0.7, help="share of the measured capacity"
    )
    cli.add_argument("--write-rate", type=positive, default=1000, help="status updates per second")
    cli.add_argument(
        "--workers", type=positive, default=1, help="server processes (WORKERS; default 1)"
    )
    return cli


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parser().parse_args(argv)
    dataset = MixedDataset(
        users=args.users, streams=args.streams, seed=args.seed, live_share=args.live_share
    )

    def body() -> int:
        with scratch_database("_soak", dataset, keep=args.keep_db) as scratch:
            url = scratch.url
            ensure_data(scratch.server_url, url, dataset, reuse=scratch.reuse)
            load = os.getloadavg()[0]
            key = secrets.token_urlsafe(32)
            api = server.start(url, extra_env={"API_KEY": key, "WORKERS": str(args.workers)})
            try:
                run = asyncio.run(_soak(args, api, key, read_streams(url)))
            finally:
                api.stop()
            verification = verify(url, run.simulation.last)
            checked = verification.summary()
            say(checked)
            print(markdown(args, url, load, run, checked), flush=True)
        return 0 if verification.ok else 1

    return run_main(body, errors=(httpx.HTTPError,))


if __name__ == "__main__":
    sys.exit(main())

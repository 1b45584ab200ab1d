"""`python -m bench.feed_api`: the home feed over HTTP, next to HOMETOWN and bare SQL.

    uv run python -m bench.feed_api [--users 1000000 --streams 1000000
                                     --interactions 10000000] [--reuse] [--prepare-only]
                                    [--duration 20] [--warmup 5] [--concurrency 16]
                                    [--rate 2500] [--workers 1] [--model-dir DIR]
                                    [--out-dir reports]

1. a scratch database `<name>_bench_feed_api` beside DATABASE_URL's, migrated, with the
   generator's world at a 10% live share, and the feed's models and feature tables
   (bench/feed_prepare.py: every step timed, with its peak memory). The models are
   made to be served, not judged: ALS with few sweeps, a reranker fitted on a sample.
   `--reuse` keeps the database and the model directory and skips whatever still
   matches the code and the arguments (the preparation at 1M users takes minutes);
2. `python -m app` with MODEL_PATH inside the model directory, so the feed's
   reranker beside it is found, a fresh API key for the live-status writes, and
   `--workers` server processes (WORKERS; app/workers.py);
3. wrk at 1 and `--concurrency` connections, POSTing `home_feed` for random users
   (warm ones with an embedding, and `--cold-share` without) and a random context;
   `category_feed` at 1 connection; HOMETOWN on the same users at both levels (the
   same-run baseline); `home_feed` again while bench/simulate.py writes `--rate`
   live-status updates per second (streams going live and offline); pgbench running
   HOMETOWN's candidate SQL with the server stopped;
4. CPU per request by process (server, PostgreSQL, wrk, the simulator) and the
   server's memory against the goal of 150 MB + 300 bytes per live stream: one
   process's peak RSS, or with several workers the PSS of all of them together
   (RSS would count the pages they share once per process);
5. a markdown block on stdout and in `<out-dir>/bench_feed_api.md`, the same
   numbers as JSON in `<out-dir>/bench_feed_api.json` (progress on stderr).

Until the feed endpoint exists, the feed passes run against HOMETOWN as a stand-in
(with HOMETOWN's body), and the report says so: the harness is proven, the
numbers are not the feed's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np

from bench import database, pgbench, server, wrk
from bench.cli import positive, positive_float, run_main, scratch_database
from bench.cpu import children_cpu_s, cluster_cpu_s, postmaster_pid, process_cpu_s
from bench.feed_prepare import CLICK_MODEL_FILE, Prepared, World, prepare
from bench.log import say
from bench.mixed import Writes, writes_between
from bench.report import code_version, machine
from bench.simulate import Options, Simulation, StreamTable, read_streams

HOME_FEED_PATH = "/v1/scenarios/home_feed"
CATEGORY_FEED_PATH = "/v1/scenarios/category_feed"
HOMETOWN_PATH = "/v1/scenarios/hometown"
#: Goals of issue 13 (MB and bytes as written there: 10^6 bytes).
GOAL_P50_MS, GOAL_P99_MS, GOAL_RPS = 8.0, 25.0, 250.0
GOAL_BASE_BYTES, GOAL_PER_LIVE_BYTES = 150_000_000, 300
#: Locales the context draws from (`ctx_locale`), device names are the app's own.
LOCALES = ("en_US", "en_GB", "es_ES", "pt_BR", "fr_FR", "de_DE", "ja_JP", "ko_KR", "tr_TR")
#: Context timestamps fall in the week before the generator's "now".
CONTEXT_DAYS = 7
#: Loading the live streams' embeddings may take a while at 1M streams.
START_TIMEOUT_S = 300.0
#: Users sampled for the load, warm and cold together.
SAMPLED_USERS = 50_000


@dataclass(frozen=True)
class FeedDataset(database.Dataset):
    """The scratch database's data: users, streams, impressions at a live share."""

    interactions: int = 0
    live_share: float = 0.1

    def fingerprint(self) -> str:
        """Also says the impressions and the live share."""
        return f"{super().fingerprint()} impressions {self.interactions} live {self.live_share}"


# --------------------------------------------------------------------------- load script


def lua_script(
    path: str, ids_file: Path, kind: str, seed: int, devices: tuple[str, ...] = ()
) -> str:
    """The wrk script: POST `kind` bodies ("feed", "category", "hometown") for listed users.

    Every thread reads the user ids once, when the script is loaded (before the
    measured window). A feed body carries each context field 80-90% of the time.
    """
    from app.db.limits import DEVICES
    from seed.generate import CATEGORIES, DEFAULT_AS_OF

    devices = devices or DEVICES

    end = int(DEFAULT_AS_OF.timestamp())
    span = CONTEXT_DAYS * 86_400

    def table(values: tuple[str, ...]) -> str:
        return "{" + ", ".join(json.dumps(v) for v in values) + "}"

    head = "\n".join(
        [
            "local ids = {}",
            f"for line in io.lines({json.dumps(str(ids_file))}) do ids[#ids + 1] = line end",
            f"local devices = {table(devices)}",
            f"local locales = {table(LOCALES)}",
            f"local categories = {table(CATEGORIES)}",
        ]
    )
    lines = [
        "local parts = {'{\"user_id\": \"' .. ids[math.random(1, #ids)] .. '\"'}",
    ]
    if kind in ("feed", "category"):
        lines += [
            "if math.random() < 0.9 then",
            "    parts[#parts + 1] = ', \"ctx_timestamp\": '"
            f" .. ({end - span} + math.random(0, {span}))",
            "  end",
            "  if math.random() < 0.8 then",
            '    parts[#parts + 1] = \', "ctx_device": "\''
            " .. devices[math.random(1, #devices)] .. '\"'",
            "  end",
            "  if math.random() < 0.8 then",
            '    parts[#parts + 1] = \', "ctx_locale": "\''
            " .. locales[math.random(1, #locales)] .. '\"'",
            "  end",
        ]
    if kind == "category":
        lines.append(
            '  parts[#parts + 1] = \', "category_id": "\''
            " .. categories[math.random(1, #categories)] .. '\"'"
        )
    lines += [
        "  parts[#parts + 1] = '}'",
        f"  return wrk.format(nil, {json.dumps(path)}, nil, table.concat(parts))",
    ]
    body = wrk.LUA_TEMPLATE % {
        "seed": seed,
        "method": "POST",
        "request": "\n".join(lines),
        "prefix": wrk.RESULT_PREFIX,
    }
    return head + "\n" + body


async def _user_sample(
    url: str, version: str, n: int, cold_share: float, seed: int
) -> tuple[list[str], int]:
    """`n` users, shuffled, and how many of them are warm.

    Warm: an embedding in the active model; a `cold_share` of them have none.
    """
    conn = await asyncpg.connect(url)
    try:
        warm = [
            r[0]
            for r in await conn.fetch(
                "SELECT entity_id FROM feed_embeddings"
                " WHERE model_version = $1 AND entity = 'user' ORDER BY entity_id",
                version,
            )
        ]
        cold = [
            r[0]
            for r in await conn.fetch(
                "SELECT u.user_id FROM users u WHERE NOT EXISTS (SELECT 1 FROM feed_embeddings e"
                " WHERE e.model_version = $1 AND e.entity = 'user' AND e.entity_id = u.user_id)"
                " ORDER BY u.user_id",
                version,
            )
        ]
    finally:
        await conn.close()
    rng = np.random.default_rng(seed)
    n_warm = min(len(warm), round(n * (1.0 - cold_share)))
    n_cold = min(len(cold), round(n_warm * cold_share / max(1.0 - cold_share, 1e-9)))
    chosen = list(rng.choice(warm, n_warm, replace=False)) if n_warm else []
    chosen += list(rng.choice(cold, n_cold, replace=False)) if n_cold else []
    say(f"load users: {n_warm:,} warm (of {len(warm):,}), {n_cold:,} cold-start (of {len(cold):,})")
    rng.shuffle(chosen)
    return [str(u) for u in chosen], n_warm


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Cpu:
    """CPU milliseconds per request, by process."""

    server_ms: float
    database_ms: float | None
    wrk_ms: float
    simulator_ms: float

    @property
    def total_ms(self) -> float | None:
        """What one request costs the box (None when PostgreSQL's share is unknown)."""
        if self.database_ms is None:
            return None
        return self.server_ms + self.database_ms + self.wrk_ms + self.simulator_ms


@dataclass
class Meter:
    """CPU seconds of the server, the cluster, our children (wrk) and ourselves."""

    postmaster: int | None
    server: server.Server | None
    _start: tuple[float, float | None, float, float] = (0.0, None, 0.0, 0.0)

    def _sample(self) -> tuple[float, float | None, float, float]:
        s = self.server.cpu_s() if self.server else 0.0
        d = cluster_cpu_s(self.postmaster) if self.postmaster else None
        return s, d, children_cpu_s(), process_cpu_s(os.getpid())

    def start(self) -> None:
        """Remember the counters now."""
        self._start = self._sample()

    def split(self, requests: int) -> Cpu:
        """Per request since `start()`."""
        (s0, d0, w0, o0), (s1, d1, w1, o1) = self._start, self._sample()
        per = 1000.0 / max(requests, 1)
        db = None if d0 is None or d1 is None else (d1 - d0) * per
        return Cpu((s1 - s0) * per, db, (w1 - w0) * per, (o1 - o0) * per)


@dataclass(frozen=True)
class Pass:
    """One measured window."""

    name: str
    path: str
    concurrency: int
    result: wrk.WrkResult
    cpu: Cpu
    writes: Writes | None = None


@dataclass
class Results:
    """Everything one run measured."""

    passes: list[Pass] = field(default_factory=list)
    sql: dict[int, pgbench.PgbenchResult] = field(default_factory=dict)
    sql_cpu: dict[int, Cpu] = field(default_factory=dict)
    start_s: float = 0.0
    rss_warm_bytes: int = 0
    peak_rss_bytes: int = 0
    peak_rss_churn_bytes: int = 0
    #: PSS of all the server's processes after the passes, and after the churn passes.
    pss_bytes: int = 0
    pss_churn_bytes: int = 0
    health: dict[str, Any] = field(default_factory=dict)
    warm_users: int = 0
    cold_users: int = 0
    feed_available: bool = False
    category_available: bool = False
    notes: list[str] = field(default_factory=list)


def _probe(api: server.Server, path: str, body: dict[str, Any]) -> int:
    status, answer = server.probe(api, path, json.dumps(body).encode())
    say(f"probe {path}: {status}, {len(answer)} bytes: {answer[:300]!r}")
    if status == 404 and b"user" not in answer.lower():
        return 404
    if not 200 <= status < 300:
        raise RuntimeError(f"probe {path} answered {status}: {answer[:500]!r}")
    return status


def _health(api: server.Server) -> dict[str, Any]:
    with urllib.request.urlopen(api.base_url + "/", timeout=10) as response:
        body: dict[str, Any] = json.loads(response.read())
    return body


def measure_pass(
    args: argparse.Namespace,
    api: server.Server,
    meter: Meter,
    name: str,
    path: str,
    script: str,
    level: int,
) -> Pass:
    """A warm-up, then the measured window, at `level` connections."""
    wrk_path = wrk.ensure_wrk()
    wrk.run(wrk_path, api.base_url, script, concurrency=level, duration_s=args.warmup)
    meter.start()
    result = wrk.run(wrk_path, api.base_url, script, concurrency=level, duration_s=args.duration)
    cpu = meter.split(result.requests)
    say(
        f"{name} c={level}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
        f"p99 {result.p99_ms:.2f} ms, errors {result.errors}"
    )
    return Pass(name, path, level, result, cpu)


async def _churn_passes(
    args: argparse.Namespace,
    api: server.Server,
    meter: Meter,
    key: str,
    streams: StreamTable,
    feed: tuple[str, str],
) -> list[Pass]:
    """The feed at 1 and `--concurrency` connections while the simulator writes."""
    options = Options(
        url=api.base_url,
        api_key=key,
        duration_s=3600.0,  # stopped below
        rate=args.rate,
        batch=args.batch,
        connections=args.writers,
        seed=args.seed,
        progress_s=10.0,
    )
    sim = Simulation(streams, options)
    stop = asyncio.Event()
    task = asyncio.create_task(sim.run(stop))
    await asyncio.sleep(args.warmup)
    if task.done():
        await task  # raises what went wrong
    path, script = feed
    passes = []
    try:
        for level in (1, args.concurrency):
            before, since = sim.tally.snapshot(), time.monotonic()
            one = await asyncio.to_thread(
                measure_pass, args, api, meter, "feed + churn", path, script, level
            )
            after, until = sim.tally.snapshot(), time.monotonic()
            writes = writes_between(sim, since, until, before, after)
            say(
                f"churn: {writes.sent_per_s:,.0f} updates/s sent,"
                f" {writes.applied_per_s:,.0f} applied"
            )
            passes.append(Pass(one.name, one.path, one.concurrency, one.result, one.cpu, writes))
    finally:
        stop.set()
        await task
    return passes


def serve_and_measure(
    args: argparse.Namespace, url: str, model_dir: Path, prepared: Prepared, live: int
) -> Results:
    """Server up, every pass, server down, pgbench; see the module docstring."""
    results = Results()
    postmaster = postmaster_pid(url)
    if postmaster is None:
        results.notes.append("the database runs elsewhere: its CPU is left out")
    users, results.warm_users = asyncio.run(
        _user_sample(url, prepared.model_version, SAMPLED_USERS, args.cold_share, args.seed)
    )
    results.cold_users = len(users) - results.warm_users
    key = secrets.token_urlsafe(32)
    server.START_TIMEOUT_S = START_TIMEOUT_S  # read by wait_healthy at call time
    with tempfile.TemporaryDirectory(prefix="bench-feed-api-") as tmp:
        ids_file = Path(tmp) / "users.txt"
        ids_file.write_text("\n".join(users) + "\n")
        started = time.monotonic()
        api = server.start(
            url,
            {
                "MODEL_PATH": str(model_dir / CLICK_MODEL_FILE),
                "API_KEY": key,
                "WORKERS": str(args.workers),
            },
        )
        results.start_s = time.monotonic() - started
        try:
            results.health = _health(api)
            say(f"GET /: model {json.dumps(results.health.get('model'))[:300]}")
            body = {
                "user_id": users[0],
                "ctx_timestamp": 1_718_803_200,
                "ctx_device": args.devices[0],
                "ctx_locale": "en_US",
            }
            results.feed_available = _probe(api, HOME_FEED_PATH, body) != 404
            if results.feed_available:
                results.category_available = (
                    _probe(api, CATEGORY_FEED_PATH, {**body, "category_id": "gaming"}) != 404
                )
                script = lua_script(HOME_FEED_PATH, ids_file, "feed", args.seed, args.devices)
                feed = (HOME_FEED_PATH, script)
            else:
                results.notes.append(
                    f"{HOME_FEED_PATH} is not served yet (404): the feed passes ran against "
                    f"{HOMETOWN_PATH} as a stand-in, with HOMETOWN's body. These are not the "
                    "feed's numbers."
                )
                feed = (HOMETOWN_PATH, lua_script(HOMETOWN_PATH, ids_file, "hometown", args.seed))
            _probe(api, HOMETOWN_PATH, {"user_id": users[0]})
            hometown = lua_script(HOMETOWN_PATH, ids_file, "hometown", args.seed)
            meter = Meter(postmaster, api)
            levels = [1, args.concurrency]
            # Feed and baseline back to back at each level: the box's noise drifts.
            for level in levels:
                results.passes.append(measure_pass(args, api, meter, "feed", *feed, level))
                if level == 1:
                    results.rss_warm_bytes = api.rss_bytes()
                results.passes.append(
                    measure_pass(args, api, meter, "HOMETOWN", HOMETOWN_PATH, hometown, level)
                )
            if results.category_available:
                script = lua_script(
                    CATEGORY_FEED_PATH, ids_file, "category", args.seed, args.devices
                )
                results.passes.append(
                    measure_pass(args, api, meter, "category_feed", CATEGORY_FEED_PATH, script, 1)
                )
            results.peak_rss_bytes = api.peak_rss_bytes()
            results.pss_bytes = api.pss_bytes()
            if not args.no_churn:
                say("reading the streams for the simulator")
                streams = read_streams(url)
                results.passes += asyncio.run(_churn_passes(args, api, meter, key, streams, feed))
                results.peak_rss_churn_bytes = api.peak_rss_bytes()
                results.pss_churn_bytes = api.pss_bytes()
        finally:
            api.stop()
    if not args.no_pgbench:
        path = pgbench.find_pgbench()
        text = pgbench.script(args.users)
        sql_meter = Meter(postmaster, None)
        for level in levels:
            pgbench.run(path, url, text, clients=level, duration_s=args.warmup)
            sql_meter.start()
            result = pgbench.run(path, url, text, clients=level, duration_s=args.duration)
            results.sql[level] = result
            results.sql_cpu[level] = sql_meter.split(result.transactions)
            say(f"sql c={level}: {result.tps:,.0f} tps, p50 {result.p50_ms:.2f} ms")
    return results


# --------------------------------------------------------------------------- report


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _gib(value: int | None) -> str:
    return "-" if not value else f"{value / 1024**3:.2f}"


def _verdict(ok: bool, judged: bool) -> str:
    if not judged:
        return "not judged (stand-in)"
    return "**met**" if ok else "**not met**"


def markdown(
    args: argparse.Namespace,
    counts: dict[str, int],
    prepared: Prepared,
    results: Results,
    load_at_start: float,
    url: str,
) -> str:
    """A section ready to paste into BENCHMARKS.md."""
    m = machine(url, load_at_start)
    live = counts["live"]
    feed_target = HOME_FEED_PATH if results.feed_available else f"{HOMETOWN_PATH} (stand-in)"
    lines = [
        f"### {date.today().isoformat()}: home feed, {counts['users']:,} users, "
        f"{counts['streams']:,} streams ({live:,} live), {counts['interactions']:,} impressions",
        "",
        f"Machine: {m.cores} cores, {m.ram_gib:.0f} GiB, {m.python}, PostgreSQL {m.postgres} + "
        f"PostGIS {m.postgis}; 1-minute load average when measuring began: {m.load_at_start:.2f}. "
        f"Code: {code_version()}.",
        f"Models (made to be served, not judged): `{prepared.model_version}` active, "
        f"{prepared.embedded_users:,} user and {prepared.embedded_streams:,} stream vectors of "
        f"dim 64; reranker {prepared.reranker.get('trees', '?')} trees on "
        f"{prepared.reranker.get('queries', 0):,} sampled queries; feature tables by "
        f"{prepared.features_by}.",
        f"Load: wrk, {results.warm_users:,} users with an embedding and "
        f"{results.cold_users:,} without (cold-start), "
        f"random context (devices {', '.join(args.devices)}); {args.duration} s per pass after "
        f"{args.warmup} s of warm-up. Server processes: WORKERS={args.workers}. Feed "
        f"target: `{feed_target}`. "
        + (
            "Churn: skipped (`--no-churn`)."
            if args.no_churn
            else f"Churn: bench/simulate.py at {args.rate:,.0f} updates/s in batches of "
            f"{args.batch:,} over {args.writers} connections."
        ),
    ]
    if results.notes:
        lines += ["", *(f"**Note:** {n}" for n in results.notes)]
    lines += [
        "",
        "Preparation, in this process: peak = its VmHWM during the step, what earlier steps "
        "still hold included; PostgreSQL's own memory is not.",
        "",
        "| step | seconds | peak GiB | note |",
        "| --- | ---: | ---: | --- |",
    ]
    for s in prepared.steps:
        lines.append(f"| {s.name} | {s.seconds:.1f} | {_gib(s.peak_bytes)} | {s.note} |")
    if prepared.reused:
        lines.append("")
        lines.append("(Measured when the kept world was built; this run reused it with `--reuse`.)")
    lines += [
        "",
        "| pass | connections | req/s | p50 ms | p95 ms | p99 ms | errors | CPU ms/req: server "
        "| PostgreSQL | wrk | simulator | total | ceiling req/s | updates/s applied |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: |",
    ]
    for p in results.passes:
        r, c = p.result, p.cpu
        ceiling = "-" if not c.total_ms else f"{m.cores * 1000 / c.total_ms:,.0f}"
        writes = "-" if p.writes is None else f"{p.writes.applied_per_s:,.0f}"
        lines.append(
            f"| {p.name} | {p.concurrency} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p95_ms:.2f} "
            f"| {r.p99_ms:.2f} | {r.errors} | {_ms(c.server_ms)} | {_ms(c.database_ms)} "
            f"| {_ms(c.wrk_ms)} | {_ms(c.simulator_ms)} | {_ms(c.total_ms)} | {ceiling} "
            f"| {writes} |"
        )
    for level, sql in results.sql.items():
        c = results.sql_cpu[level]
        ceiling = "-" if not c.total_ms else f"{m.cores * 1000 / c.total_ms:,.0f}"
        lines.append(
            f"| pgbench: HOMETOWN's SQL | {level} | {sql.tps:,.0f} | {sql.p50_ms:.2f} | - "
            f"| {sql.p99_ms:.2f} | 0 | - | {_ms(c.database_ms)} | {_ms(c.wrk_ms)} (pgbench) "
            f"| - | {_ms(c.total_ms)} | {ceiling} | - |"
        )
    lines += [
        "",
        "CPU per request = CPU seconds over the window / requests in it; with churn it "
        "includes the writes' share (server and PostgreSQL handle both), and the simulator "
        "column is the writer's own client. Ceiling = cores × 1000 / total.",
    ]
    budget = GOAL_BASE_BYTES + GOAL_PER_LIVE_BYTES * live
    # One process: its peak RSS. Several: their PSS together (see the module docstring).
    several = args.workers > 1
    rss = (
        max(results.pss_bytes, results.pss_churn_bytes)
        if several
        else max(results.peak_rss_bytes, results.peak_rss_churn_bytes)
    )
    per_live = (rss - GOAL_BASE_BYTES) / live if live else float("nan")
    # Without the churn passes (--no-churn) there is no peak after them to show.
    churned = (
        f", {results.peak_rss_churn_bytes / 1e6:,.0f} MB after the churn"
        if results.peak_rss_churn_bytes
        else ""
    )
    lines += [
        "",
        f"Server: healthy {results.start_s:.1f} s after start; RSS after the first pass "
        f"{results.rss_warm_bytes / 1e6:,.0f} MB, peak (VmHWM) {results.peak_rss_bytes / 1e6:,.0f}"
        f" MB{churned}; "
        f"(peak − 150 MB) / live streams = {per_live:,.0f} bytes per live stream.",
        "",
    ]
    if several:
        lines[-2] = (
            f"Server: {args.workers} workers under one supervisor, healthy {results.start_s:.1f} s"
            f" after start; PSS of all {args.workers + 1} processes after the passes "
            f"{results.pss_bytes / 1e6:,.0f} MB"
            + (
                f", {results.pss_churn_bytes / 1e6:,.0f} MB after the churn"
                if results.pss_churn_bytes
                else ""
            )
            + f"; (that − 150 MB) / live streams = {per_live:,.0f} bytes per live stream."
        )
    judged = results.feed_available
    feed = {(p.name, p.concurrency): p.result for p in results.passes}
    one, many = feed.get(("feed", 1)), feed.get(("feed", args.concurrency))
    churn_one = feed.get(("feed + churn", 1))
    churn_many = feed.get(("feed + churn", args.concurrency))
    memory_kind = " (PSS, all processes)" if several else ""
    if one is not None and many is not None:
        lines += [
            "Against the goals (issue 13):",
            "",
            f"- 1 connection p50 {one.p50_ms:.2f} ms (< {GOAL_P50_MS:g}), p99 {one.p99_ms:.2f} ms"
            f" (< {GOAL_P99_MS:g}): "
            f"{_verdict(one.p50_ms < GOAL_P50_MS and one.p99_ms < GOAL_P99_MS, judged)}",
            f"- {args.concurrency} connections {many.rps:,.0f} req/s (≥ {GOAL_RPS:g}): "
            f"{_verdict(many.rps >= GOAL_RPS, judged)}",
            f"- server memory{memory_kind} {rss / 1e6:,.0f} MB"
            f" (≤ {budget / 1e6:,.0f} MB = 150 MB + 300 B × {live:,} live): "
            f"{_verdict(rss <= budget, judged)}",
        ]
        if churn_one is not None and churn_many is not None:
            lines.append(
                f"- with churn: 1 connection p50 {churn_one.p50_ms:.2f} ms, p99 "
                f"{churn_one.p99_ms:.2f} ms; {args.concurrency} connections "
                f"{churn_many.rps:,.0f} req/s: "
                + _verdict(
                    churn_one.p50_ms < GOAL_P50_MS
                    and churn_one.p99_ms < GOAL_P99_MS
                    and churn_many.rps >= GOAL_RPS,
                    judged,
                )
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError("a comma-separated list of names")
    return names


def parser() -> argparse.ArgumentParser:
    """The command line."""
    doc = __doc__ or ""
    cli = argparse.ArgumentParser(prog="python -m bench.feed_api", description=doc.split("\n")[0])
    cli.add_argument("--users", type=positive, default=1_000_000)
    cli.add_argument("--streams", type=positive, default=1_000_000)
    cli.add_argument("--interactions", type=positive, default=10_000_000)
    cli.add_argument("--live-share", type=positive_float, default=0.1)
    cli.add_argument("--seed", type=int, default=42)
    cli.add_argument("--als-iterations", type=positive, default=3, help="ALS sweeps (3)")
    cli.add_argument(
        "--reranker-users", type=positive, default=10_000, help="users the reranker learns from"
    )
    cli.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="where the reranker goes (default models/bench_feed_api/<sizes>)",
    )
    cli.add_argument("--out-dir", type=Path, default=Path("reports"), help="markdown and JSON")
    cli.add_argument(
        "--reuse",
        action="store_true",
        help="keep the scratch database and model directory, reuse them when they match",
    )
    cli.add_argument(
        "--prepare-only", action="store_true", help="build the world, check the server, stop"
    )
    cli.add_argument("--duration", type=positive, default=20, help="seconds per pass")
    cli.add_argument("--warmup", type=positive, default=5, help="seconds before each pass")
    cli.add_argument("--concurrency", type=positive, default=16, help="the loaded level")
    cli.add_argument("--cold-share", type=float, default=0.1, help="users without an embedding")
    cli.add_argument("--rate", type=positive_float, default=2500.0, help="updates per second")
    cli.add_argument("--batch", type=positive, default=1000, help="updates per request")
    cli.add_argument("--writers", type=positive, default=4, help="simulator connections")
    cli.add_argument(
        "--devices",
        type=_names,
        default=None,
        help="ctx_device values to draw from, comma-separated (default: app/db/limits.py's)",
    )
    cli.add_argument("--workers", type=positive, default=1, help="server processes (WORKERS)")
    cli.add_argument("--no-churn", action="store_true", help="skip the passes with writes")
    cli.add_argument("--no-pgbench", action="store_true", help="skip the bare-SQL baseline")
    return cli


async def _counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM users) AS users,"
            " (SELECT count(*) FROM streams) AS streams,"
            " (SELECT count(*) FROM streams WHERE is_live) AS live,"
            " (SELECT count(*) FROM interactions) AS interactions"
        )
    finally:
        await conn.close()
    assert row is not None
    return {k: int(v) for k, v in dict(row).items()}


def _check_server(url: str, model_dir: Path) -> dict[str, Any]:
    """Start the server once on the prepared world and read GET / (for --prepare-only)."""
    server.START_TIMEOUT_S = START_TIMEOUT_S
    started = time.monotonic()
    api = server.start(url, {"MODEL_PATH": str(model_dir / CLICK_MODEL_FILE)})
    try:
        health = _health(api)
        say(
            f"server healthy in {time.monotonic() - started:.1f}s,"
            f" RSS {api.rss_bytes() / 1e6:.0f} MB"
        )
        say(f"GET /: model {json.dumps(health.get('model'))[:300]}")
    finally:
        api.stop()
    return health


def main(argv: list[str] | None = None) -> int:
    """Entry point: prepare (or reuse), measure, report; the scratch database goes unless kept."""
    args = parser().parse_args(argv)
    if args.devices is None:
        from app.db.limits import DEVICES

        args.devices = DEVICES
    world = World(
        users=args.users,
        streams=args.streams,
        interactions=args.interactions,
        seed=args.seed,
        live_share=args.live_share,
        als_iterations=args.als_iterations,
        reranker_users=args.reranker_users,
    )
    dataset = FeedDataset(
        users=args.users,
        streams=args.streams,
        seed=args.seed,
        interactions=args.interactions,
        live_share=args.live_share,
    )
    model_dir = args.model_dir or Path(
        "models", "bench_feed_api", f"{args.users}x{args.streams}x{args.interactions}"
    )

    def body() -> int:
        with scratch_database(
            "_feed_api", dataset, keep=args.reuse or args.prepare_only
        ) as scratch:
            url = scratch.url
            prepared = prepare(url, world, model_dir, data_loaded=scratch.reuse, reuse=args.reuse)
            name = database.database_name(url)
            # Fingerprint and name are ours (hex digits; the name comes from DATABASE_URL).
            asyncio.run(
                database.admin(
                    scratch.server_url,
                    f"COMMENT ON DATABASE \"{name}\" IS '{dataset.fingerprint()}'",
                )
            )
            counts = asyncio.run(_counts(url))
            say(f"data: {counts}")
            if args.prepare_only:
                _check_server(url, model_dir)
                return 0
            load_at_start = os.getloadavg()[0]
            results = serve_and_measure(args, url, model_dir, prepared, counts["live"])
            report = markdown(args, counts, prepared, results, load_at_start, url)
        print(report)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "bench_feed_api.md").write_text(report + "\n")
        document = {
            "at": datetime.now(UTC).isoformat(),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "counts": counts,
            "prepared": asdict(prepared),
            "results": asdict(results),
        }
        (args.out_dir / "bench_feed_api.json").write_text(
            json.dumps(document, indent=2, default=str)
        )
        say(f"wrote {args.out_dir / 'bench_feed_api.md'} and bench_feed_api.json")
        return 0

    return run_main(body, errors=(httpx.HTTPError,))


if __name__ == "__main__":
    sys.exit(main())

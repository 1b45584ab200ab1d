"""`python -m bench.simulate`: live/offline churn replayed against a running API.

    uv run python -m bench.simulate --url http://127.0.0.1:8000 [--speed 60 | --rate 2500]
        [--duration 30] [--batch 1000] [--connections 4] [--seed 7]
        [--last-state last.parquet] [--verify]

The live status of streams is the one part of the data that changes all the time:
creators go live, their audience drifts, they go offline. The simulator reads the
streams once from DATABASE_URL (id, typical duration, average audience, live flag)
and keeps its own model of each one:

- a live session lasts a lognormal time whose median is the stream's
  `typical_duration_minutes` (spread `SESSION_SIGMA`, at least `MIN_SESSION_S`);
- the offline gap that follows is exponential, with a mean chosen per stream so that
  the expected live share is the target (by default the share the data starts with);
- while live, a heartbeat every few simulated minutes reports a viewer count that
  walks around `avg_viewer_count` (mean-reverting on a log scale, never negative).

Simulated time runs `--speed` times faster than the wall clock, or as fast as a fixed
`--rate` of updates per second needs. Updates go out in batches of `--batch` to
`POST /v1/streams/live-status` over `--connections` concurrent connections; each
carries `at` = its simulated time mapped onto the wall clock, strictly increasing per
stream. Batches in flight at once may arrive out of order: the endpoint keeps the
newest `at` per stream, so whatever order they land in, the database must end up
holding the last update sent for every stream. The simulator remembers that last
update (`--last-state FILE`, parquet or CSV) and `--verify` compares it with the
database: "no update lost".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pandas as pd

from bench.cli import positive_float, stop_on_sigterm
from bench.log import say

LIVE_STATUS_PATH = "/v1/streams/live-status"
#: The endpoint refuses larger batches.
MAX_BATCH = 5000

#: Session length: lognormal with median `typical_duration_minutes` and this spread
#: on the log scale (the seed draws the typical durations themselves with 0.45).
SESSION_SIGMA = 0.35
MIN_SESSION_S = 5 * 60.0
#: Offline gaps shorter than a minute would be a reconnect, not a new session.
MIN_GAP_S = 60.0
#: Viewer-count heartbeats while live: exponential, mean 5 simulated minutes.
HEARTBEAT_MEAN_S = 5 * 60.0
MIN_HEARTBEAT_S = 30.0
#: Per heartbeat, on log1p(viewers): pull this share of the way back to the average,
#: then add a normal step of this size. Stationary spread ~ 0.25 / sqrt(1 - 0.8^2) ~ 0.4.
VIEWER_PULL = 0.2
VIEWER_STEP = 0.25
#: Spread of the audience a session starts with, around the average (as the seed draws it).
START_VIEWER_SIGMA = 0.35
#: When the data has no live stream to take the share from.
DEFAULT_LIVE_SHARE = 0.1

#: In `--speed` mode, how often due events are collected and sent.
SPEED_TICK_S = 0.25
#: Retries of a batch that met a network error or a 5xx (replays are harmless: an
#: update applies only when its `at` is newer than the stream's last applied one).
RETRIES = 3
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (a float timestamp would round)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def rfc3339(micros: np.ndarray) -> list[str]:
    """RFC 3339 timestamps with microseconds and an explicit UTC offset."""
    text = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us")
    return [f"{value}+00:00" for value in text.tolist()]


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class StreamTable:
    """The streams as read once from the database: what the model starts from."""

    stream_id: np.ndarray
    typical_minutes: np.ndarray
    avg_viewers: np.ndarray
    is_live: np.ndarray
    viewers: np.ndarray

    def __len__(self) -> int:
        return len(self.stream_id)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> StreamTable:
        """From a frame with the streams table's column names (tests pass the seed's)."""
        return cls(
            stream_id=frame["stream_id"].to_numpy(dtype=object),
            typical_minutes=frame["typical_duration_minutes"].to_numpy(dtype=np.float64),
            avg_viewers=frame["avg_viewer_count"].to_numpy(dtype=np.float64),
            is_live=frame["is_live"].to_numpy(dtype=bool),
            viewers=frame["current_viewer_count"].fillna(0).to_numpy(dtype=np.int64),
        )


async def _read_streams(url: str) -> pd.DataFrame:
    conn = await asyncpg.connect(url)
    try:
        records = await conn.fetch(
            "SELECT stream_id, typical_duration_minutes, avg_viewer_count, is_live,"
            " current_viewer_count FROM streams ORDER BY stream_id"
        )
    finally:
        await conn.close()
    columns = [
        "stream_id",
        "typical_duration_minutes",
        "avg_viewer_count",
        "is_live",
        "current_viewer_count",
    ]
    return pd.DataFrame([tuple(r) for r in records], columns=columns)


def read_streams(url: str) -> StreamTable:
    """Every stream's id, typical duration, average and current audience, live flag."""
    return StreamTable.from_frame(asyncio.run(_read_streams(url)))


def session_seconds(
    rng: np.random.Generator, typical_minutes: np.ndarray, *, length_biased: bool = False
) -> np.ndarray:
    """Draw session lengths: lognormal, median `typical_minutes`, at least MIN_SESSION_S.

    With `length_biased`, draw the length of the session that is running at a random
    moment instead: long sessions cover more moments, so they are more likely to be
    the one in progress. For a lognormal that is the same law with the log-mean moved
    up by sigma squared; a stream live at the start then sits at a uniform point of
    such a session, which keeps the live share steady from the first second.
    """
    shift = SESSION_SIGMA**2 if length_biased else 0.0
    log_median = np.log(typical_minutes * 60.0) + shift
    drawn = np.exp(log_median + SESSION_SIGMA * rng.standard_normal(len(typical_minutes)))
    return np.maximum(drawn, MIN_SESSION_S)


def mean_gap_seconds(typical_minutes: np.ndarray, live_share: float) -> np.ndarray:
    """Mean offline gap per stream so that session / (session + gap) = `live_share`."""
    mean_session = typical_minutes * 60.0 * math.exp(SESSION_SIGMA**2 / 2)
    if live_share >= 1.0:
        return np.full(len(typical_minutes), MIN_GAP_S)
    return np.maximum(mean_session * (1.0 - live_share) / live_share, MIN_GAP_S)


@dataclass(frozen=True)
class Events:
    """Status updates in simulated-time order (one stream may appear more than once)."""

    index: np.ndarray  #: positions in the StreamTable
    sim_s: np.ndarray  #: simulated seconds since the start
    is_live: np.ndarray
    #: the count to send; -1 = null (going offline: the endpoint stores 0)
    viewers: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def part(self, start: int, stop: int) -> Events:
        """A slice, for splitting into batches."""
        return Events(
            self.index[start:stop],
            self.sim_s[start:stop],
            self.is_live[start:stop],
            self.viewers[start:stop],
        )

    @staticmethod
    def empty() -> Events:
        """No events."""
        return Events(np.empty(0, np.int64), np.empty(0), np.empty(0, bool), np.empty(0, np.int64))


class Fleet:
    """Every stream's live/offline state and its next event, in simulated seconds.

    State is kept in numpy arrays and events are fired for all due streams at once,
    so a million streams cost milliseconds per batch, not a Python loop each.
    """

    def __init__(
        self, streams: StreamTable, *, rng: np.random.Generator, live_share: float | None = None
    ) -> None:
        n = len(streams)
        share = float(streams.is_live.mean()) if live_share is None and n else live_share
        self.live_share = share if share and share > 0 else DEFAULT_LIVE_SHARE
        self.rng = rng
        self.typical_minutes = np.maximum(streams.typical_minutes, 1.0)
        self.log_avg = np.log1p(np.maximum(streams.avg_viewers, 0.0))
        self.mean_gap_s = mean_gap_seconds(self.typical_minutes, self.live_share)
        self.live = streams.is_live.copy()
        self.viewers = np.maximum(streams.viewers, 0).astype(np.int64)
        self.now = 0.0
        # Live streams are somewhere inside a session; offline ones wait out a gap,
        # whose exponential law makes the remaining wait exponential as well.
        self.session_end = np.full(n, np.inf)
        live = np.flatnonzero(self.live)
        running = session_seconds(rng, self.typical_minutes[live], length_biased=True)
        self.session_end[live] = rng.random(len(live)) * running
        self.next_at = rng.exponential(self.mean_gap_s)
        self.next_at[live] = np.minimum(self._heartbeats(len(live)), self.session_end[live])

    def _heartbeats(self, n: int) -> np.ndarray:
        return np.maximum(self.rng.exponential(HEARTBEAT_MEAN_S, n), MIN_HEARTBEAT_S)

    def _walk(self, index: np.ndarray) -> np.ndarray:
        """The next viewer count of live streams: a mean-reverting walk on log1p."""
        here = np.log1p(self.viewers[index])
        there = here + VIEWER_PULL * (self.log_avg[index] - here)
        there += VIEWER_STEP * self.rng.standard_normal(len(index))
        walked: np.ndarray = np.maximum(np.rint(np.expm1(there)), 0).astype(np.int64)
        return walked

    def _fire(self, index: np.ndarray) -> Events:
        """The due event of each stream in `index` (distinct), applied to the state."""
        t = self.next_at[index]
        live = self.live[index]
        ending = live & (t >= self.session_end[index])
        beating = live & ~ending
        starting = ~live
        viewers = np.empty(len(index), np.int64)

        e, te = index[ending], t[ending]
        self.live[e] = False
        self.viewers[e] = 0
        self.session_end[e] = np.inf
        self.next_at[e] = te + np.maximum(self.rng.exponential(self.mean_gap_s[e]), MIN_GAP_S)
        viewers[ending] = -1

        b, tb = index[beating], t[beating]
        self.viewers[b] = self._walk(b)
        self.next_at[b] = np.minimum(tb + self._heartbeats(len(b)), self.session_end[b])
        viewers[beating] = self.viewers[b]

        s, ts = index[starting], t[starting]
        self.live[s] = True
        self.session_end[s] = ts + session_seconds(self.rng, self.typical_minutes[s])
        noise = START_VIEWER_SIGMA * self.rng.standard_normal(len(s))
        self.viewers[s] = np.maximum(np.rint(np.expm1(self.log_avg[s] + noise)), 0)
        self.next_at[s] = np.minimum(ts + self._heartbeats(len(s)), self.session_end[s])
        viewers[starting] = self.viewers[s]

        # After the event a stream is live unless its session just ended.
        return Events(index, t, ~ending, viewers)

    def events_until(self, t_end: float) -> Events:
        """Fire every event due up to `t_end` (a stream may fire more than once)."""
        parts = []
        while True:
            due = np.flatnonzero(self.next_at <= t_end)
            if len(due) == 0:
                break
            parts.append(self._fire(due))
        self.now = max(self.now, t_end)
        if not parts:
            return Events.empty()
        events = Events(
            *(np.concatenate(arrays) for arrays in zip(*map(_fields, parts), strict=True))
        )
        order = np.argsort(events.sim_s, kind="stable")
        return Events(*(array[order] for array in _fields(events)))

    def next_events(self, n: int) -> Events:
        """The `n` earliest due events, one per stream (exactly a batch in `--rate` mode).

        A stream whose following event falls before the last of these keeps it for
        the next call: streams are independent, and each one's own events still come
        in order.
        """
        n = min(n, len(self.next_at))
        if n == 0:
            return Events.empty()
        due = np.argpartition(self.next_at, n - 1)[:n]
        events = self._fire(due)
        order = np.argsort(events.sim_s, kind="stable")
        self.now = max(self.now, float(events.sim_s[order[-1]]))
        return Events(*(array[order] for array in _fields(events)))


def _fields(events: Events) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return events.index, events.sim_s, events.is_live, events.viewers


class Stamper:
    """Maps simulated times onto wall-clock `at`s and remembers the last one per stream.

    Each call covers a window: the simulated interval since the previous call is
    spread linearly over the wall-clock interval since then, so `at` tracks the
    moment the update is sent (never ahead of it: the endpoint rejects updates from
    the future). Within a window two updates of one stream could land on the same
    microsecond; the later one is then pushed one microsecond on, so `at` strictly
    increases per stream, which the endpoint needs to tell them apart.
    """

    def __init__(self, n: int, *, start_us: int) -> None:
        self.sim_s = 0.0
        self.wall_us = start_us
        self.last_at = np.zeros(n, np.int64)  #: 0 = nothing sent yet
        self.last_live = np.zeros(n, bool)
        self.last_viewers = np.full(n, -1, np.int64)

    def stamp(self, events: Events, *, sim_s: float, wall_us: int) -> np.ndarray:
        """The `at` (microseconds) of each event, for the window ending at (sim_s, wall_us)."""
        wall_us = max(wall_us, self.wall_us + 1)
        span = sim_s - self.sim_s
        if span > 0:
            share = (events.sim_s - self.sim_s) / span
            at = self.wall_us + np.ceil(share * (wall_us - self.wall_us)).astype(np.int64)
        else:
            at = np.full(len(events), wall_us, np.int64)
        at = np.clip(at, self.wall_us + 1, wall_us)
        last = self.last_at
        for i, stream in enumerate(events.index.tolist()):
            if at[i] <= last[stream]:
                at[i] = last[stream] + 1
            last[stream] = at[i]
        self.last_live[events.index] = events.is_live
        self.last_viewers[events.index] = events.viewers
        # The next window starts after any `at` pushed past this one's end.
        self.sim_s = max(sim_s, self.sim_s)
        self.wall_us = max(wall_us, int(at.max())) if len(at) else wall_us
        return at

    def last_state(self, stream_id: np.ndarray) -> pd.DataFrame:
        """The last update sent for every stream that was sent one."""
        sent = np.flatnonzero(self.last_at > 0)
        viewers = pd.array(self.last_viewers[sent], dtype="Int64")
        viewers[self.last_viewers[sent] < 0] = pd.NA
        return pd.DataFrame(
            {
                "stream_id": stream_id[sent],
                "is_live": self.last_live[sent],
                "current_viewer_count": viewers,
                "at": pd.to_datetime(self.last_at[sent], unit="us", utc=True),
            }
        )


def batch_body(stream_id: np.ndarray, events: Events, at: np.ndarray) -> bytes:
    """The JSON body of one `POST /v1/streams/live-status`."""
    updates = [
        {
            "stream_id": sid,
            "is_live": live,
            "current_viewer_count": None if count < 0 else count,
            "at": moment,
        }
        for sid, live, count, moment in zip(
            stream_id[events.index].tolist(),
            events.is_live.tolist(),
            events.viewers.tolist(),
            rfc3339(at),
            strict=True,
        )
    ]
    return json.dumps({"updates": updates}).encode()


# --------------------------------------------------------------------------- the sender


@dataclass
class Tally:
    """Counters of one run; `snapshot()` lets a caller measure a window inside it."""

    sent: int = 0
    batches: int = 0
    applied: int = 0
    stale: int = 0
    superseded: int = 0
    unknown: int = 0
    rejected: int = 0
    http_errors: int = 0
    failed_batches: int = 0
    failed_updates: int = 0
    #: (monotonic time the answer came, seconds the successful attempt took)
    latencies: list[tuple[float, float]] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    def snapshot(self) -> Snapshot:
        """The counters now, with the monotonic time."""
        return Snapshot(
            at=time.monotonic(),
            sent=self.sent,
            applied=self.applied,
            stale=self.stale,
            unknown=self.unknown,
            rejected=self.rejected,
            http_errors=self.http_errors,
            batches=len(self.latencies),
        )

    def latency_ms(self, q: float, since: float = 0.0, until: float = math.inf) -> float:
        """A percentile of the batch latency (ms) over answers in [since, until)."""
        values = [s for t, s in self.latencies if since <= t < until]
        return float(np.percentile(values, q)) * 1000 if values else math.nan


@dataclass(frozen=True)
class Snapshot:
    """The counters at one moment."""

    at: float
    sent: int
    applied: int
    stale: int
    unknown: int
    rejected: int
    http_errors: int
    batches: int


@dataclass(frozen=True)
class Options:
    """How to drive the API."""

    url: str
    api_key: str
    duration_s: float = 30.0
    speed: float = 60.0
    rate: float | None = None
    batch: int = 1000
    connections: int = 4
    seed: int = 7
    live_share: float | None = None
    progress_s: float = 5.0


@dataclass(frozen=True)
class SimulationResult:
    """What one run sent and what the endpoint answered."""

    duration_s: float
    sent: int
    batches: int
    applied: int
    stale: int
    superseded: int
    unknown: int
    rejected: int
    http_errors: int
    failed_batches: int
    failed_updates: int
    latency_p50_ms: float
    latency_p99_ms: float
    live_share: float
    #: the last update sent per stream: stream_id, is_live, current_viewer_count
    #: (nullable: null = offline, stored as 0), at (UTC)
    last: pd.DataFrame
    examples: list[str]

    @property
    def sent_per_s(self) -> float:
        """Updates sent per second of the run."""
        return self.sent / self.duration_s if self.duration_s else 0.0

    @property
    def applied_per_s(self) -> float:
        """Updates applied per second of the run."""
        return self.applied / self.duration_s if self.duration_s else 0.0

    def summary(self) -> str:
        """One paragraph for stderr."""
        return (
            f"simulate: {self.sent:,} updates in {self.batches:,} batches over "
            f"{self.duration_s:.1f}s ({self.sent_per_s:,.0f}/s sent, "
            f"{self.applied_per_s:,.0f}/s applied): applied {self.applied:,}, "
            f"stale {self.stale:,}, superseded {self.superseded:,}, unknown {self.unknown:,}, "
            f"rejected {self.rejected:,}; HTTP errors {self.http_errors} "
            f"(failed batches {self.failed_batches}, {self.failed_updates:,} updates); "
            f"batch latency p50 {self.latency_p50_ms:.1f} ms, p99 {self.latency_p99_ms:.1f} ms; "
            f"model live share {self.live_share:.1%}"
        )


class Simulation:
    """One run: a producer of batches, `connections` senders, a progress reporter."""

    def __init__(self, streams: StreamTable, options: Options) -> None:
        if options.batch < 1 or options.batch > MAX_BATCH:
            raise ValueError(f"batch must be in 1..{MAX_BATCH}")
        self.streams = streams
        self.options = options
        self.fleet = Fleet(
            streams, rng=np.random.default_rng(options.seed), live_share=options.live_share
        )
        self.tally = Tally()
        self._mono0 = time.monotonic_ns()
        self._wall0_us = time.time_ns() // 1000
        self.stamper = Stamper(len(streams), start_us=self._wall0_us)
        #: seconds spent in `run()`, over every call (a caller may run it in phases)
        self.elapsed_s = 0.0

    def wall_us(self) -> int:
        """The wall clock in microseconds, advanced by the monotonic clock (no jumps)."""
        return self._wall0_us + (time.monotonic_ns() - self._mono0) // 1000

    def _bodies(self, events: Events, sim_s: float) -> list[tuple[int, bytes]]:
        """Stamp the events and cut them into request bodies of at most `batch` updates."""
        at = self.stamper.stamp(events, sim_s=sim_s, wall_us=self.wall_us())
        size = self.options.batch
        out = []
        for start in range(0, len(events), size):
            part = events.part(start, start + size)
            out.append(
                (len(part), batch_body(self.streams.stream_id, part, at[start : start + size]))
            )
        return out

    async def _produce(
        self, queue: asyncio.Queue[tuple[int, bytes] | None], stop: asyncio.Event
    ) -> None:
        """Generate batches on schedule until `duration_s` passes or `stop` is set."""
        o = self.options
        started = time.monotonic()
        deadline = started + o.duration_s
        due = started
        while not stop.is_set() and time.monotonic() < deadline:
            if o.rate is None:
                await asyncio.sleep(SPEED_TICK_S)
                sim_s = (time.monotonic() - started) * o.speed
                events = self.fleet.events_until(sim_s)
            else:
                # Do not burst to catch up more than a second's worth after a stall.
                due = max(due, time.monotonic() - 1.0)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                events = self.fleet.next_events(o.batch)
                due += len(events) / o.rate if len(events) else 0.1
            for body in self._bodies(events, self.fleet.now):
                await queue.put(body)
        for _ in range(o.connections):
            await queue.put(None)

    async def _send(
        self, client: httpx.AsyncClient, queue: asyncio.Queue[tuple[int, bytes] | None]
    ) -> None:
        """Post batches from the queue until the producer's end marker."""
        headers = {"X-API-Key": self.options.api_key, "Content-Type": "application/json"}
        t = self.tally
        while (item := await queue.get()) is not None:
            n, body = item
            t.sent += n
            for attempt in range(RETRIES + 1):
                began = time.monotonic()
                retry = True
                try:
                    response = await client.post(LIVE_STATUS_PATH, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code == 200:
                        t.latencies.append((time.monotonic(), time.monotonic() - began))
                        self._count(response.json(), n)
                        break
                    problem = f"HTTP {response.status_code}: {response.text[:200]}"
                    # A refusal (401, 422, ...) will not change on a retry.
                    retry = response.status_code >= 500
                t.http_errors += 1
                if len(t.examples) < 5:
                    t.examples.append(problem)
                if not retry or attempt == RETRIES:
                    t.failed_batches += 1
                    t.failed_updates += n
                    break
                await asyncio.sleep(0.2 * 2**attempt)

    def _count(self, answer: dict[str, Any], n: int) -> None:
        t = self.tally
        t.batches += 1
        t.applied += int(answer["applied"])
        t.stale += int(answer["stale"])
        t.unknown += int(answer["unknown"])
        t.rejected += int(answer["rejected"])
        t.superseded += n - sum(int(answer[k]) for k in ("applied", "stale", "unknown", "rejected"))
        if answer["rejected"] and len(t.examples) < 5:
            bad = [r for r in answer["results"] if r["status"] == "rejected"][:1]
            t.examples.append(f"rejected: {bad}")

    async def _report(self, stop: asyncio.Event) -> None:
        """A progress line every `progress_s` seconds."""
        before = self.tally.snapshot()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.options.progress_s)
            now = self.tally.snapshot()
            span = max(now.at - before.at, 1e-9)
            say(
                f"simulate: {(now.sent - before.sent) / span:,.0f} updates/s sent, "
                f"{(now.applied - before.applied) / span:,.0f}/s applied; "
                f"total applied {now.applied:,}, stale {now.stale:,}, unknown {now.unknown:,}, "
                f"HTTP errors {now.http_errors}; batch p50 "
                f"{self.tally.latency_ms(50, before.at):.0f} ms, "
                f"p99 {self.tally.latency_ms(99, before.at):.0f} ms; "
                f"live {self.fleet.live.mean():.1%}"
            )
            before = now

    async def run(self, stop: asyncio.Event | None = None) -> SimulationResult:
        """Drive the API for `duration_s` (or until `stop`), then wait for every answer."""
        o = self.options
        stop = stop or asyncio.Event()
        done = asyncio.Event()
        queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(maxsize=2 * o.connections)
        limits = httpx.Limits(
            max_connections=o.connections, max_keepalive_connections=o.connections
        )
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=o.url, limits=limits, timeout=60.0) as client:
            reporter = asyncio.create_task(self._report(done))
            senders = [asyncio.create_task(self._send(client, queue)) for _ in range(o.connections)]
            try:
                await self._produce(queue, stop)
                await asyncio.gather(*senders)
            finally:
                done.set()
                for task in senders:
                    task.cancel()
                await asyncio.gather(reporter, *senders, return_exceptions=True)
        t = self.tally
        self.elapsed_s += time.monotonic() - started
        return SimulationResult(
            duration_s=self.elapsed_s,
            sent=t.sent,
            batches=t.batches,
            applied=t.applied,
            stale=t.stale,
            superseded=t.superseded,
            unknown=t.unknown,
            rejected=t.rejected,
            http_errors=t.http_errors,
            failed_batches=t.failed_batches,
            failed_updates=t.failed_updates,
            latency_p50_ms=t.latency_ms(50),
            latency_p99_ms=t.latency_ms(99),
            live_share=float(self.fleet.live.mean()) if len(self.streams) else 0.0,
            last=self.stamper.last_state(self.streams.stream_id),
            examples=list(t.examples),
        )


def run(database_url: str, options: Options) -> SimulationResult:
    """Read the streams once, then drive the API (see the module docstring)."""
    streams = read_streams(database_url)
    say(f"simulate: {len(streams):,} streams, {streams.is_live.mean():.1%} live at the start")
    return asyncio.run(Simulation(streams, options).run())


def write_last_state(frame: pd.DataFrame, path: Path) -> None:
    """The last update per stream, as parquet or CSV (by the file's extension)."""
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        raise ValueError(f"{path}: expected a .parquet or .csv file")


def read_last_state(path: Path) -> pd.DataFrame:
    """What `write_last_state` wrote."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    frame = pd.read_csv(path, dtype={"current_viewer_count": "Int64"})
    frame["at"] = pd.to_datetime(frame["at"], utc=True, format="ISO8601")
    return frame


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class Verification:
    """The database against the last update sent per stream."""

    checked: int
    mismatches: int
    #: a few mismatching streams: expected and found
    examples: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        """No update lost."""
        return self.mismatches == 0

    def summary(self) -> str:
        """One line (and the examples) for a human."""
        if self.ok:
            return f"verify: all {self.checked:,} streams hold the last update sent"
        lines = [f"verify: {self.mismatches:,} of {self.checked:,} streams differ, e.g.:"]
        lines += [f"  {example}" for example in self.examples]
        return "\n".join(lines)


async def _current(url: str, ids: list[str]) -> pd.DataFrame:
    conn = await asyncpg.connect(url)
    try:
        records = await conn.fetch(
            "SELECT s.stream_id, s.is_live, s.current_viewer_count, s.status_at"
            " FROM unnest($1::text[]) AS wanted(stream_id) JOIN streams s USING (stream_id)",
            ids,
        )
    finally:
        await conn.close()
    columns = ["stream_id", "db_is_live", "db_viewers", "db_at"]
    frame = pd.DataFrame([tuple(r) for r in records], columns=columns)
    # Microseconds as integers: timestamps compare exactly, NULL as -1.
    frame["db_at"] = [-1 if v is None else to_micros(v) for v in frame["db_at"]]
    frame["db_viewers"] = frame["db_viewers"].astype("Int64")
    return frame


def verify(database_url: str, last: pd.DataFrame, *, examples: int = 10) -> Verification:
    """Compare each stream's (is_live, current_viewer_count, status_at) with the last update.

    The expected viewer count is the one sent, or 0 for an offline update that sent
    null (the endpoint's rule; the simulator sends null only when going offline).
    A stream missing from the database counts as a mismatch.
    """
    if last.empty:
        return Verification(checked=0, mismatches=0, examples=[])
    found = asyncio.run(_current(database_url, last["stream_id"].tolist()))
    both = last.merge(found, on="stream_id", how="left")
    expected_viewers = both["current_viewer_count"].astype("Int64")
    expected_viewers = expected_viewers.fillna(0).where(~both["is_live"], expected_viewers)
    expected_at = (both["at"].astype("datetime64[us, UTC]") - pd.Timestamp(EPOCH)) // pd.Timedelta(
        microseconds=1
    )
    present = both["db_is_live"].notna()
    same = (
        present
        & (both["db_is_live"] == both["is_live"])
        & (both["db_viewers"] == expected_viewers).fillna(False)
        & (both["db_at"] == expected_at)
    )
    bad = both[~same.astype(bool)]
    shown = [_example(row) for row in bad.head(examples).to_dict("records")]
    return Verification(checked=len(both), mismatches=len(bad), examples=shown)


def _example(row: dict[Any, Any]) -> dict[str, Any]:
    """One mismatch as (is_live, viewers, at) sent and found (None: no such row)."""
    found = None
    if not pd.isna(row["db_is_live"]):
        at = None if row["db_at"] < 0 else str(pd.Timestamp(row["db_at"], unit="us", tz="UTC"))
        found = (bool(row["db_is_live"]), _maybe(row["db_viewers"]), at)
    sent = (bool(row["is_live"]), _maybe(row["current_viewer_count"]), str(row["at"]))
    return {"stream_id": row["stream_id"], "sent": sent, "database": found}


def _maybe(value: Any) -> int | None:
    return None if pd.isna(value) else int(value)


# --------------------------------------------------------------------------- command line


def _batch_size(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"must be in 1..{MAX_BATCH}")
    return value


def parser() -> argparse.ArgumentParser:
    """The command line."""
    doc = __doc__ or ""
    cli = argparse.ArgumentParser(prog="python -m bench.simulate", description=doc.split("\n")[0])
    cli.add_argument("--url", default="http://127.0.0.1:8000", help="the API's base URL")
    cli.add_argument(
        "--api-key", default=os.environ.get("API_KEY"), help="default: the API_KEY variable"
    )
    cli.add_argument("--duration", type=positive_float, default=30.0, help="seconds")
    pace = cli.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=positive_float, default=60.0, help="simulated seconds per second"
    )
    pace.add_argument("--rate", type=positive_float, help="updates per second instead")
    cli.add_argument("--batch", type=_batch_size, default=1000, help="updates per request")
    cli.add_argument("--connections", type=int, default=4)
    cli.add_argument("--seed", type=int, default=7)
    cli.add_argument(
        "--live-share",
        type=float,
        help="target share of live streams (default: the share the data starts with)",
    )
    cli.add_argument("--last-state", type=Path, help="write the last update per stream here")
    cli.add_argument(
        "--verify", action="store_true", help="then compare DATABASE_URL with the last updates"
    )
    return cli


def main(argv: list[str] | None = None) -> int:
    """Entry point: simulate, summarise, optionally save and verify."""
    from app.settings import load_settings

    args = parser().parse_args(argv)
    if not args.api_key:
        say("error: no API key: pass --api-key or set API_KEY")
        return 2
    if args.last_state and args.last_state.suffix not in (".parquet", ".csv"):
        say("error: --last-state must end in .parquet or .csv")
        return 2
    stop_on_sigterm()
    database_url = load_settings().database_url
    options = Options(
        url=args.url,
        api_key=args.api_key,
        duration_s=args.duration,
        speed=args.speed,
        rate=args.rate,
        batch=args.batch,
        connections=max(1, args.connections),
        seed=args.seed,
        live_share=args.live_share,
    )
    try:
        result = run(database_url, options)
    except (OSError, httpx.HTTPError, asyncpg.PostgresError) as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    say(result.summary())
    for example in result.examples:
        say(f"  e.g. {example}")
    if args.last_state:
        write_last_state(result.last, args.last_state)
        say(f"last update per stream: {args.last_state} ({len(result.last):,} streams)")
    if args.verify:
        verification = verify(database_url, result.last)
        say(verification.summary())
        return 0 if verification.ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

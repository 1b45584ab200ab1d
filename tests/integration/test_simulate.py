"""The churn simulator: its session model alone, then against a real server and database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import server
from bench.simulate import (
    Events,
    Fleet,
    Options,
    Simulation,
    Stamper,
    StreamTable,
    batch_body,
    read_last_state,
    read_streams,
    session_seconds,
    verify,
    write_last_state,
)
from seed.generate import generate
from seed.loader import load
from tests.support.db import run_sql

API_KEY = "test-simulate-key"


@pytest.fixture(scope="module")
def table() -> StreamTable:
    """Generated streams, about 10% live, as the simulator reads them."""
    return StreamTable.from_frame(generate(10, 20_000, 0, seed=5, live_share=0.1).streams)


def run_fleet(fleet: Fleet, minutes: int) -> tuple[list[Events], list[float]]:
    """Advance one simulated minute at a time; the events and the live share after each."""
    events, shares = [], []
    for minute in range(1, minutes + 1):
        events.append(fleet.events_until(minute * 60.0))
        shares.append(float(fleet.live.mean()))
    return events, shares


def test_session_lengths_scatter_around_the_typical_duration() -> None:
    rng = np.random.default_rng(1)
    typical = np.full(50_000, 120.0)
    drawn = session_seconds(rng, typical) / 60.0
    assert np.median(drawn) == pytest.approx(120.0, rel=0.02)
    spread = np.log(drawn).std()
    assert 0.25 < spread < 0.45  # scattered, not a constant
    assert drawn.min() >= 5.0


def test_fleet_sessions_follow_each_streams_typical_duration(table: StreamTable) -> None:
    fleet = Fleet(table, rng=np.random.default_rng(2))
    events, _ = run_fleet(fleet, 3 * 24 * 60)
    # Sessions that started and ended within the run (a start is an offline -> live event).
    live_before = table.is_live.copy()
    began: dict[int, float] = {}
    ratios = []
    for part in events:
        for i, t, live in zip(
            part.index.tolist(), part.sim_s.tolist(), part.is_live.tolist(), strict=True
        ):
            if live and not live_before[i]:
                began[i] = t
            elif not live and i in began:
                ratios.append((t - began.pop(i)) / 60.0 / table.typical_minutes[i])
            live_before[i] = live
    assert len(ratios) > 5_000
    assert np.median(ratios) == pytest.approx(1.0, abs=0.05)
    assert 0.5 < np.percentile(ratios, 10) < 0.8 < 1.3 < np.percentile(ratios, 90) < 1.8


def test_the_live_share_stays_near_the_target(table: StreamTable) -> None:
    start = float(table.is_live.mean())
    fleet = Fleet(table, rng=np.random.default_rng(3))
    assert fleet.live_share == pytest.approx(start)
    _, shares = run_fleet(fleet, 2 * 24 * 60)
    assert min(shares) > start - 0.015
    assert max(shares) < start + 0.015
    other = Fleet(table, rng=np.random.default_rng(4), live_share=0.3)
    _, shares = run_fleet(other, 2 * 24 * 60)
    assert np.mean(shares[-600:]) == pytest.approx(0.3, abs=0.02)


def test_viewer_counts_never_go_negative_and_wander_around_the_average(
    table: StreamTable,
) -> None:
    fleet = Fleet(table, rng=np.random.default_rng(5))
    events, _ = run_fleet(fleet, 24 * 60)
    counts = np.concatenate([e.viewers[e.is_live] for e in events])
    index = np.concatenate([e.index[e.is_live] for e in events])
    assert counts.min() >= 0
    assert (np.concatenate([e.viewers[~e.is_live] for e in events]) == -1).all()  # null
    # On a log scale, the counts sit around each stream's average.
    gap = np.log1p(counts) - np.log1p(table.avg_viewers[index])
    assert abs(np.median(gap)) < 0.1
    assert gap.std() < 0.7


@pytest.mark.parametrize("mode", ["speed", "rate"])
def test_at_strictly_increases_per_stream(table: StreamTable, mode: str) -> None:
    fleet = Fleet(table, rng=np.random.default_rng(6))
    stamper = Stamper(len(table), start_us=1_700_000_000_000_000)
    wall = stamper.wall_us
    sent: list[tuple[np.ndarray, np.ndarray]] = []
    for step in range(1, 400):
        # Tiny wall windows over long simulated ones: many updates share a microsecond.
        wall += 3
        events = fleet.events_until(step * 600.0) if mode == "speed" else fleet.next_events(500)
        at = stamper.stamp(events, sim_s=fleet.now, wall_us=wall)
        # Pushed on by a few microseconds at most, never into the server's future.
        assert (at <= stamper.wall_us).all()
        assert stamper.wall_us - wall < 50
        wall = stamper.wall_us
        sent.append((events.index, at))
    index = np.concatenate([i for i, _ in sent])
    at = np.concatenate([a for _, a in sent])
    frame = pd.DataFrame({"stream": index, "at": at})
    steps = frame.groupby("stream")["at"].diff().dropna()
    assert len(steps) > 1000
    assert (steps > 0).all()
    last = stamper.last_state(table.stream_id)
    newest = frame.groupby("stream")["at"].max()
    assert len(last) == len(newest)
    expected = pd.to_datetime(newest.to_numpy(), unit="us", utc=True)
    assert (last["at"].to_numpy() == expected.to_numpy()).all()


def test_batch_body_speaks_the_endpoints_format(table: StreamTable) -> None:
    events = Events(
        index=np.array([0, 1]),
        sim_s=np.array([1.0, 2.0]),
        is_live=np.array([True, False]),
        viewers=np.array([12, -1]),
    )
    body = batch_body(
        table.stream_id, events, np.array([1_795_341_600_123_456, 1_795_341_601_000_000])
    )
    assert body.decode() == (
        '{"updates": [{"stream_id": "stream_000000", "is_live": true, '
        '"current_viewer_count": 12, "at": "2026-11-22T10:00:00.123456+00:00"}, '
        '{"stream_id": "stream_000001", "is_live": false, "current_viewer_count": null, '
        '"at": "2026-11-22T10:00:01.000000+00:00"}]}'
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_last_state_round_trips(tmp_path: Path, table: StreamTable, suffix: str) -> None:
    fleet = Fleet(table, rng=np.random.default_rng(7))
    stamper = Stamper(len(table), start_us=1_795_341_600_000_000)
    events = fleet.events_until(3600.0)
    stamper.stamp(events, sim_s=3600.0, wall_us=1_795_341_660_000_000)
    last = stamper.last_state(table.stream_id)
    assert last["current_viewer_count"].isna().any()
    path = tmp_path / f"last{suffix}"
    write_last_state(last, path)
    pd.testing.assert_frame_equal(read_last_state(path), last, check_dtype=False)


# --------------------------------------------------------------------------- against a server


@pytest.fixture
def api(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[server.Server]:
    """300 streams (about 10% live) and the API serving them, with an API key."""
    load(db_url, generate(50, 300, 0, seed=11, live_share=0.1))
    monkeypatch.setenv("API_KEY", API_KEY)
    api = server.start(db_url)
    try:
        yield api
    finally:
        api.stop()


@pytest.mark.slow
def test_a_short_run_loses_no_update(db_url: str, api: server.Server, tmp_path: Path) -> None:
    streams = read_streams(db_url)
    # Several connections and small batches at a high speed (a simulated day in four
    # seconds): one stream is often in two batches in flight at once, so they race,
    # and the newest must still win.
    options = Options(
        url=api.base_url,
        api_key=API_KEY,
        duration_s=4.0,
        speed=20_000.0,
        batch=200,
        connections=3,
        seed=1,
        progress_s=2.0,
    )
    result = asyncio.run(Simulation(streams, options).run())
    # A producer retries a 503 (a batch that met a statement timeout on a loaded
    # machine), as the simulator does: what must hold is that no batch is given up.
    assert result.failed_batches == 0, result.examples
    assert result.http_errors <= 3, result.examples
    assert result.sent > 1000
    assert result.applied > 0
    assert result.unknown == result.rejected == 0
    assert result.applied + result.stale + result.superseded == result.sent
    assert len(result.last) > 0.5 * len(streams)

    checked = verify(db_url, result.last)
    assert checked.ok, checked.summary()
    assert checked.checked == len(result.last)

    # Written and read back, the last state still verifies.
    path = tmp_path / "last.parquet"
    write_last_state(result.last, path)
    assert verify(db_url, read_last_state(path)).ok

    # One row changed behind the simulator's back is found.
    victim = str(result.last["stream_id"].iloc[7])
    run_sql(
        db_url,
        f"UPDATE streams SET current_viewer_count = current_viewer_count + 1,"
        f" is_live = true, live_since = coalesce(live_since, now())"
        f" WHERE stream_id = '{victim}'",
    )
    broken = verify(db_url, result.last)
    assert broken.mismatches == 1
    assert broken.examples[0]["stream_id"] == victim
    assert victim in broken.summary()


@pytest.mark.slow
def test_rate_mode_sends_at_the_rate(db_url: str, api: server.Server) -> None:
    streams = read_streams(db_url)
    options = Options(
        url=api.base_url,
        api_key=API_KEY,
        duration_s=3.0,
        rate=200.0,
        batch=40,
        connections=2,
        seed=2,
    )
    result = asyncio.run(Simulation(streams, options).run())
    assert result.http_errors == 0, result.examples
    assert 400 <= result.sent <= 700
    assert verify(db_url, result.last).ok


def test_a_wrong_key_is_an_http_error_not_a_crash(db_url: str, api: server.Server) -> None:
    streams = read_streams(db_url)
    options = Options(
        url=api.base_url, api_key="wrong", duration_s=0.6, rate=100.0, batch=10, connections=1
    )
    result = asyncio.run(Simulation(streams, options).run())
    assert result.applied == 0
    assert result.failed_batches == result.http_errors > 0  # a 401 is not retried
    assert "401" in result.examples[0]


def test_mixed_benchmark_reads_the_plan_and_the_table_counters(
    db_url: str, api: server.Server
) -> None:
    """bench.mixed's database probes, on the small data set (the run itself is too long)."""
    from bench.mixed import explain, table_stats

    plan = explain(db_url, "user_000000")
    assert "ix_streams_live_location" in plan.text
    assert plan.buffers > 0
    assert plan.execution_ms > 0
    stats = table_stats(db_url)
    assert stats.dead_tuples >= 0
    assert stats.hot_updates <= stats.updates

"""Read replicas against a real hot standby: routing, lag, failover, freshness.

The module starts a throwaway primary with replication on, and hot standbys of
it made by `pg_basebackup -R` (PostgreSQL's own streaming replication). One
follows the primary at once; one replays with `recovery_min_apply_delay`, so it
is always seconds behind once anything is written. The API runs as a real
`python -m app` process with `DATABASE_REPLICA_URLS`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from alembic import command

from app.db import replicas
from app.db.pool import create_pool
from app.db.replicas import Reads
from app.errors import DatabaseUnavailable
from app.settings import Settings
from bench import server as api_server
from seed.loader import load
from tests.support import frames
from tests.support.db import alembic_config, fetch
from tools.cluster import LocalCluster, free_port

pytestmark = pytest.mark.slow

RECOMMEND = "/v1/scenarios/hometown"
WHERE = {"latitude": 48.86, "longitude": 2.35, "max_results": 40}
KEY = "replica-test-key-0123456789"
KEYED = {"X-API-Key": KEY}


@dataclass
class Clusters:
    """The primary and its standbys, with their URLs."""

    primary: LocalCluster
    standby: LocalCluster
    delayed: LocalCluster

    @property
    def url(self) -> str:
        return self.primary.url


def _root(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o755)
    return root


@pytest.fixture(scope="module")
def clusters() -> Iterator[Clusters]:
    """A migrated, loaded primary (50 users, 40 live streams), a standby, a delayed one."""
    roots = [_root("hometown-primary-"), _root("hometown-standby-"), _root("hometown-delayed-")]
    primary = LocalCluster(roots[0], port=free_port(), fsync=False, replication=True)
    made: list[LocalCluster] = [primary]
    try:
        url = primary.start()
        command.upgrade(alembic_config(url), "head")
        load(url, frames.dataset(50, 40))
        made.append(primary.standby(roots[1] / "c", free_port()))
        made.append(primary.standby(roots[2] / "c", free_port(), recovery_min_apply_delay="'3s'"))
        yield Clusters(primary, made[1], made[2])
    finally:
        for cluster in reversed(made):
            cluster.stop()
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def serving(clusters: Clusters, replica: LocalCluster) -> Iterator[httpx.Client]:
    """`python -m app` on the primary with `replica` as its one replica, once that serves."""
    server = api_server.start(
        clusters.url, extra_env={"API_KEY": KEY, "DATABASE_REPLICA_URLS": replica.url}
    )
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            _wait_for_state(client, "replica1", "up")
            yield client
    finally:
        server.stop()


@pytest.fixture()
def api(clusters: Clusters) -> Iterator[httpx.Client]:
    """The API reading from the prompt standby, every stream live again first."""
    _all_live(clusters.url)
    with serving(clusters, clusters.standby) as client:
        yield client


def _all_live(url: str) -> None:
    fetch(url, "UPDATE streams SET is_live = true, status_at = NULL RETURNING 1")


def _health(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()["database"]
    return body


def _replica(client: httpx.Client, name: str) -> dict[str, Any]:
    (found,) = [r for r in _health(client)["replicas"] if r["name"] == name]
    return found


def _wait_for_state(
    client: httpx.Client, name: str, state: str, timeout_s: float = 10
) -> dict[str, Any]:
    """The replica's entry on the health page once it shows `state`."""
    deadline = time.monotonic() + timeout_s
    while (seen := _replica(client, name))["state"] != state:
        assert time.monotonic() < deadline, f"{name} never became {state}: {seen}"
        time.sleep(0.05)
    return seen


def _recommended(client: httpx.Client) -> list[str]:
    response = client.post(RECOMMEND, json=WHERE)
    assert response.status_code == 200, response.text
    return [s["stream_id"] for s in response.json()["streams"]]


def _offline_then_gone(client: httpx.Client) -> tuple[str, float]:
    """Take the top stream offline through the write API; seconds until no answer has it."""
    victim = _recommended(client)[0]
    written = client.post(f"/v1/streams/{victim}/offline", headers=KEYED)
    assert written.status_code == 200, written.text
    started = time.monotonic()
    while victim in _recommended(client):
        assert time.monotonic() - started < 5, f"{victim} still recommended after 5 s"
    return victim, time.monotonic() - started


def test_reads_go_to_the_standby_and_writes_to_the_primary(
    api: httpx.Client, clusters: Clusters
) -> None:
    before = _health(api)
    for _ in range(20):
        _recommended(api)
    assert api.get("/v1/scenarios/hometown/stats").status_code == 200
    after = _health(api)
    # "up" as the router judges it now; a stall of this machine may show it
    # lagging for a moment, so wait for the next check rather than race it.
    replica = _wait_for_state(api, "replica1", "up")
    assert replica["lag_s"] is not None and 0 <= replica["lag_s"] <= 0.5
    on_replica = replica["reads"] - before["replicas"][0]["reads"]
    on_primary = after["primary_reads"] - before["primary_reads"]
    # All 21 reads counted once; a stall of this machine past REPLICA_MAX_LAG may
    # rightly send one or two to the primary, but the standby serves them.
    assert on_replica + on_primary == 21
    assert on_replica >= 19, (on_replica, on_primary)
    assert replica["url"].startswith("postgresql://hometown:***@")  # no password shown
    # The standby really served them: the app's sessions are open there.
    sessions = fetch(
        clusters.standby.url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'hometown'",
    )
    assert sessions[0][0] >= 1
    # A write goes to the primary (the standby is read-only and would refuse it).
    victim = _recommended(api)[0]
    assert api.post(f"/v1/streams/{victim}/offline", headers=KEYED).status_code == 200
    assert fetch(clusters.url, "SELECT is_live FROM streams WHERE stream_id = $1", victim) == [
        (False,)
    ]
    metrics = api.get("/metrics").text
    assert 'hometown_db_replica_up{replica="replica1"} 1.0' in metrics
    assert 'hometown_db_reads_total{target="replica1"}' in metrics


def test_a_stream_gone_offline_leaves_answers_within_a_second_replica_lag_included(
    api: httpx.Client,
) -> None:
    before = _replica(api, "replica1")["reads"]
    victim, seconds = _offline_then_gone(api)
    assert _replica(api, "replica1")["reads"] > before  # the standby answered meanwhile
    assert seconds < 1.0, f"{victim} was recommended for {seconds:.3f}s after going offline"
    print(f"offline stream gone from the replica's answers after {seconds * 1000:.0f} ms")


def test_a_replica_behind_more_than_the_bound_is_skipped_and_freshness_holds(
    clusters: Clusters,
) -> None:
    _all_live(clusters.url)
    time.sleep(3.5)  # the delayed standby replays that write too: it starts "up"
    with serving(clusters, clusters.delayed) as client:
        victim, seconds = _offline_then_gone(client)
        # Three seconds behind now: skipped, so the primary answered.
        lagging = _replica(client, "replica1")
        primary_reads = _health(client)["primary_reads"]
    assert seconds < 1.0, f"{victim} was recommended for {seconds:.3f}s after going offline"
    assert lagging["state"] == "lagging"
    assert lagging["lag_s"] > 0.5
    assert primary_reads >= 1
    print(f"delayed standby skipped ({lagging['lag_s']:.2f}s behind); gone after {seconds:.3f}s")


def test_the_primary_serves_when_the_standby_stops_and_the_standby_returns(
    api: httpx.Client, clusters: Clusters
) -> None:
    _recommended(api)
    clusters.standby.stop()
    try:
        statuses = [api.post(RECOMMEND, json=WHERE).status_code for _ in range(30)]
        down = _replica(api, "replica1")
        primary_reads = _health(api)["primary_reads"]
    finally:
        clusters.standby.start()
    assert statuses == [200] * 30
    assert down["state"] == "down"
    assert down["error"]
    assert primary_reads >= 29
    _wait_for_state(api, "replica1", "up")
    served = _replica(api, "replica1")["reads"]
    for _ in range(5):
        _recommended(api)
    assert _replica(api, "replica1")["reads"] > served


# --- the router in process, against the same clusters --------------------------------


async def _reads(clusters: Clusters, replica_url: str) -> Reads:
    """A router over real (lazy) pools, with no monitor: the test sets each replica's state."""
    settings = Settings(DATABASE_URL=clusters.url, DATABASE_REPLICA_URLS=replica_url)
    reads = replicas.build(settings, await create_pool(settings))
    for replica in reads.replicas:
        await replica.pool
    return reads


async def _close(reads: Reads) -> None:
    await reads.primary.close()
    for replica in reads.replicas:
        await replica.pool.close()


async def _served_by(reads: Reads) -> bool:
    """Whether a read ran on a standby (`pg_is_in_recovery()` there)."""
    async with reads.connection(2.0) as conn:
        return bool(await conn.fetchval("SELECT pg_is_in_recovery()"))


def test_a_replica_down_at_acquire_is_marked_down_and_the_primary_serves(
    clusters: Clusters,
) -> None:
    async def run() -> tuple[bool, str, str | None, int, bool]:
        dead = f"postgresql://hometown@127.0.0.1:{free_port()}/hometown"
        reads = await _reads(clusters, dead)
        (replica,) = reads.replicas
        replica.state, replica.covered_through = "up", time.monotonic()  # believed fresh
        try:
            on_standby = await _served_by(reads)
            again = reads.choose()
            return on_standby, replica.state, replica.error, reads.primary_reads, again is None
        finally:
            await _close(reads)

    on_standby, state, error, primary_reads, skipped = asyncio.run(run())
    assert not on_standby and primary_reads == 1
    assert state == "down" and error
    assert skipped  # the next read does not try it again


def test_a_replica_failing_mid_query_fails_that_read_and_is_skipped_after(
    clusters: Clusters,
) -> None:
    async def run() -> tuple[str, bool]:
        reads = await _reads(clusters, clusters.standby.url)
        (replica,) = reads.replicas
        replica.state, replica.covered_through = "up", time.monotonic()
        try:
            with pytest.raises(DatabaseUnavailable):
                async with reads.connection(2.0) as conn:
                    pid = await conn.fetchval("SELECT pg_backend_pid()")
                    killer = await asyncpg.connect(clusters.standby.url)
                    await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
                    await killer.close()
                    await conn.fetchval("SELECT 1")
            return replica.state, await _served_by(reads)
        finally:
            await _close(reads)

    state, on_standby = asyncio.run(run())
    assert state == "down"
    assert not on_standby

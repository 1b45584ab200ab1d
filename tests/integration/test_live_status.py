"""Live availability against a real PostGIS: keys, event-time order, batches, effect on lists."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from app.live import status
from app.live.status import StatusUpdate
from app.main import create_app
from app.settings import Settings
from seed.generate import generate
from seed.loader import Dataset, load
from tests.support import oracle
from tests.support.db import fetch, run_sql
from tests.support.frames import PROFILE

KEY = "test-key-0123456789-abcdef"
KEYED = {"X-API-Key": KEY}
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)  # in the past of any test run
BATCH = "/v1/streams/live-status"


def _at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


@pytest.fixture
def loaded(db_url: str) -> str:
    data = generate(200, 400, 0, seed=7, live_share=0.5)
    load(db_url, Dataset(users=data.users, streams=data.streams))
    return db_url


@pytest.fixture
def client(loaded: str) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(Settings(DATABASE_URL=loaded, API_KEY=KEY))) as test_client:
        yield test_client


def _state(url: str, stream_id: str) -> dict[str, Any]:
    (row,) = fetch(
        url,
        "SELECT is_live, current_viewer_count, live_since, status_at FROM streams"
        " WHERE stream_id = $1",
        stream_id,
    )
    return dict(row)


def _stream_ids(url: str, n: int, where: str = "true") -> list[str]:
    rows = fetch(url, f"SELECT stream_id FROM streams WHERE {where} ORDER BY 1 LIMIT {n}")
    return [r["stream_id"] for r in rows]


# --- the key ---------------------------------------------------------------------------


def test_writes_need_the_key_and_reads_do_not(client: TestClient[Any], loaded: str) -> None:
    sid = _stream_ids(loaded, 1)[0]
    body = {"updates": [{"stream_id": sid, "is_live": True, "at": _at(1)}]}
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY + "x"}, {"X-API-Key": ""}):
        for method, path, json in (
            ("POST", BATCH, body),
            ("POST", f"/v1/streams/{sid}/live", None),
            ("POST", f"/v1/streams/{sid}/offline", None),
            ("PUT", f"/v1/streams/{sid}", {"city": "x"}),
        ):
            response = client.request(method, path, json=json, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert "X-API-Key" in response.json()["detail"]
    assert _state(loaded, sid)["status_at"] is None  # nothing was written
    assert client.post("/v1/scenarios/hometown", json={"latitude": 0, "longitude": 0}).is_success
    assert client.get("/v1/scenarios/hometown/stats").is_success
    assert client.post(BATCH, json=body, headers=KEYED).status_code == 200


def test_without_a_configured_key_every_write_is_refused(loaded: str) -> None:
    with TestClient(create_app(Settings(DATABASE_URL=loaded))) as keyless:
        response = keyless.post("/v1/streams/x/offline", headers=KEYED)
    assert response.status_code == 503
    assert "API_KEY" in response.json()["detail"]


def test_the_key_never_reaches_the_logs(
    loaded: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = Settings(DATABASE_URL=loaded, API_KEY=KEY)
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    with TestClient(create_app(settings)) as test_client:
        test_client.post("/v1/streams/nope/live", headers=KEYED)  # 404, logged
        test_client.post("/v1/streams/nope/live", headers={"X-API-Key": KEY[:-1]})
        test_client.post(BATCH, content=b"{bad json", headers=KEYED)
    out, err = capfd.readouterr()
    assert KEY not in caplog.text + out + err
    assert KEY[:-1] not in caplog.text + out + err


# --- event-time order, batches -----------------------------------------------------------


def test_updates_apply_in_event_time_order_whatever_the_arrival(
    client: TestClient[Any], loaded: str
) -> None:
    sid = _stream_ids(loaded, 1, where="NOT is_live")[0]

    def send(is_live: bool, seconds: float, viewers: int | None = None) -> str:
        update = {"stream_id": sid, "is_live": is_live, "at": _at(seconds)}
        if viewers is not None:
            update["current_viewer_count"] = viewers
        response = client.post(BATCH, json={"updates": [update]}, headers=KEYED)
        assert response.status_code == 200, response.text
        return str(response.json()["results"][0]["status"])

    assert send(True, 10, viewers=50) == "applied"
    assert _state(loaded, sid) == {
        "is_live": True,
        "current_viewer_count": 50,
        "live_since": T0 + timedelta(seconds=10),
        "status_at": T0 + timedelta(seconds=10),
    }
    assert send(False, 5) == "stale"  # older, arriving late: ignored
    assert send(True, 10, viewers=999) == "stale"  # the same instant again: ignored
    assert _state(loaded, sid)["current_viewer_count"] == 50
    assert send(True, 20) == "applied"  # still live: viewers and live_since kept
    assert _state(loaded, sid)["current_viewer_count"] == 50
    assert _state(loaded, sid)["live_since"] == T0 + timedelta(seconds=10)
    assert send(True, 30, viewers=70) == "applied"
    assert send(False, 40, viewers=12) == "applied"  # offline means no viewers
    assert _state(loaded, sid) == {
        "is_live": False,
        "current_viewer_count": 0,
        "live_since": None,
        "status_at": T0 + timedelta(seconds=40),
    }
    assert send(True, 35, viewers=1) == "stale"
    assert _state(loaded, sid)["is_live"] is False


def test_a_batch_reports_each_update_and_applies_the_rest(
    client: TestClient[Any], loaded: str
) -> None:
    a, b, c = _stream_ids(loaded, 3)
    client.post(f"/v1/streams/{c}/offline", json={"at": _at(100)}, headers=KEYED)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    updates = [
        {"stream_id": a, "is_live": True, "at": _at(1), "current_viewer_count": 3},
        {"stream_id": "no-such-stream", "is_live": True, "at": _at(1)},
        {"stream_id": a, "is_live": False, "at": _at(2)},  # newer: wins over the first
        {"stream_id": b, "is_live": True, "at": future},
        {"stream_id": c, "is_live": True, "at": _at(50)},  # older than the offline at 100
        {"stream_id": b, "is_live": True, "at": _at(3), "current_viewer_count": 8},
    ]
    response = client.post(BATCH, json={"updates": updates}, headers=KEYED)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(r["stream_id"], r["status"]) for r in body["results"]] == [
        (a, "superseded"),
        ("no-such-stream", "unknown"),
        (a, "applied"),
        (b, "rejected"),
        (c, "stale"),
        (b, "applied"),
    ]
    assert "future" not in body["results"][3]["detail"] or "ahead" in body["results"][3]["detail"]
    assert (body["applied"], body["stale"], body["unknown"]) == (2, 1, 1)
    assert (body["superseded"], body["rejected"]) == (1, 1)
    assert _state(loaded, a)["is_live"] is False
    assert _state(loaded, b)["current_viewer_count"] == 8
    assert _state(loaded, c)["is_live"] is False
    # The same batch again changes nothing: every update is now stale (or as before).
    again = client.post(BATCH, json={"updates": updates}, headers=KEYED).json()
    assert again["applied"] == 0 and again["stale"] == 3


def test_bad_batches_are_refused_whole_with_the_field_named(
    client: TestClient[Any], loaded: str
) -> None:
    sid = _stream_ids(loaded, 1)[0]
    good = {"stream_id": sid, "is_live": True, "at": _at(1)}
    for body, field in (
        ({"updates": []}, "updates"),
        ({"updates": [{**good, "at": "2026-11-22T12:00:00"}]}, "at"),  # no offset
        ({"updates": [{**good, "at": "yesterday"}]}, "at"),
        ({"updates": [{**good, "current_viewer_count": -1}]}, "current_viewer_count"),
        ({"updates": [{**good, "is_live": "yes"}]}, "is_live"),
        ({"updates": [{**good, "extra": 1}]}, "extra"),
        ({"updates": [good] * 5001}, "updates"),
    ):
        response = client.post(BATCH, json=body, headers=KEYED)
        assert response.status_code == 400, (field, response.text)
        assert field in response.text
    assert _state(loaded, sid)["status_at"] is None


#: Any offset RFC 3339 can write (whole minutes, strictly inside ±24 h).
OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
EXTREME_TIMES = st.one_of(
    st.datetimes(datetime(1, 1, 1), datetime(1, 1, 3), timezones=OFFSETS),
    st.datetimes(datetime(9999, 12, 29), datetime.max, timezones=OFFSETS),
    st.datetimes(timezones=OFFSETS),
)


@settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(at=EXTREME_TIMES)
@example(at=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))  # year 0 in UTC
@example(at=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=-23, minutes=-59))))
@example(at=datetime.max.replace(tzinfo=timezone(timedelta(hours=-1))))  # year 10000 in UTC
@example(at=datetime.max.replace(tzinfo=timezone(timedelta(hours=23, minutes=59))))
def test_extreme_event_times_never_fail_and_never_cost_the_batch(
    client: TestClient[Any], loaded: str, at: datetime
) -> None:
    """Any `at` the schema allows is the update's own outcome: applied, stale or rejected."""
    odd, normal = _stream_ids(loaded, 2)
    text = at.isoformat()
    fresh = datetime.now(UTC) - timedelta(microseconds=1)  # newer than any earlier example
    updates = [
        {"stream_id": odd, "is_live": True, "at": text},
        {"stream_id": normal, "is_live": True, "at": fresh.isoformat(), "current_viewer_count": 5},
    ]
    response = client.post(BATCH, json={"updates": updates}, headers=KEYED)
    assert response.status_code == 200, (text, response.text)
    odd_result, normal_result = response.json()["results"]
    assert normal_result["status"] == "applied", (text, normal_result)
    assert _state(loaded, normal)["status_at"] == fresh
    assert odd_result["status"] in {"applied", "stale", "rejected"}, (text, odd_result)
    if odd_result["status"] == "rejected":
        assert "`at`" in odd_result["detail"], odd_result
    for action in ("live", "offline"):
        one = client.post(f"/v1/streams/{odd}/{action}", json={"at": text}, headers=KEYED)
        assert one.status_code in {200, 400}, (action, text, one.text)
        if one.status_code == 400:
            assert "`at`" in one.json()["detail"], one.text


def test_instants_outside_utc_years_1_to_9999_are_rejected(
    client: TestClient[Any], loaded: str
) -> None:
    odd, normal = _stream_ids(loaded, 2)
    for text in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        updates = [
            {"stream_id": odd, "is_live": True, "at": text},
            {"stream_id": normal, "is_live": True, "at": _at(1)},
        ]
        body = client.post(BATCH, json={"updates": updates}, headers=KEYED).json()
        assert [r["status"] for r in body["results"]] == ["rejected", "applied"], body
        assert "outside the years 1 to 9999" in body["results"][0]["detail"]
        for action in ("live", "offline"):
            one = client.post(f"/v1/streams/{odd}/{action}", json={"at": text}, headers=KEYED)
            assert one.status_code == 400 and "`at`" in one.json()["detail"], one.text
        run_sql(loaded, "UPDATE streams SET status_at = NULL")
    assert _state(loaded, odd)["status_at"] is None
    # The earliest instant that is representable is an ordinary (old) event.
    first = {"at": "0001-01-01T00:00:00-01:00"}
    assert client.post(f"/v1/streams/{odd}/live", json=first, headers=KEYED).json()["status"] == (
        "applied"
    )


def test_single_stream_endpoints(client: TestClient[Any], loaded: str) -> None:
    sid = _stream_ids(loaded, 1)[0]
    live = client.post(f"/v1/streams/{sid}/live", headers=KEYED)  # no body: now
    assert live.status_code == 200 and live.json() == {"stream_id": sid, "status": "applied"}
    assert _state(loaded, sid)["is_live"] is True
    assert client.post(f"/v1/streams/{sid}/offline", json={"at": _at(0)}, headers=KEYED).json() == {
        "stream_id": sid,
        "status": "stale",
    }
    assert client.post(f"/v1/streams/{sid}/offline", headers=KEYED).json()["status"] == "applied"
    assert client.post("/v1/streams/nope/live", headers=KEYED).status_code == 404
    future = {"at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}
    assert client.post(f"/v1/streams/{sid}/live", json=future, headers=KEYED).status_code == 400
    bad = client.post(f"/v1/streams/{sid}/live", json={"viewers": 3}, headers=KEYED)
    assert bad.status_code == 400 and "viewers" in bad.text


def _deadlocks(url: str) -> int:
    """Deadlocks PostgreSQL has detected in this database (writers flush it as they exit)."""
    (row,) = fetch(url, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    return int(row["deadlocks"])


def test_racing_batches_settle_by_event_time_and_never_deadlock(loaded: str) -> None:
    """Two writers send overlapping batches in opposite orders; the newest `at` wins.

    Neither waits for a deadlock to be detected (a second each, which under load
    pushed a batch past its statement timeout): both lock in `stream_id` order.
    """
    ids = _stream_ids(loaded, 300)
    rng = np.random.default_rng(3)
    deadlocks = _deadlocks(loaded)

    async def race() -> dict[str, datetime]:
        newest: dict[str, datetime] = {}
        conns = [await asyncpg.connect(loaded) for _ in range(2)]
        try:
            for _round in range(10):
                batches = []
                for writer in range(2):
                    chosen = rng.choice(ids, 150, replace=False)
                    batch = [
                        StatusUpdate(
                            str(sid),
                            bool(rng.integers(2)),
                            T0 + timedelta(seconds=float(rng.integers(1, 10_000))),
                            int(rng.integers(0, 500)),
                        )
                        for sid in (chosen if writer == 0 else chosen[::-1])
                    ]
                    for u in batch:
                        newest[u.stream_id] = max(newest.get(u.stream_id, u.at), u.at)
                    batches.append(batch)
                await asyncio.gather(
                    *(status.apply(c, b) for c, b in zip(conns, batches, strict=True))
                )
        finally:
            for conn in conns:
                await conn.close()
        return newest

    newest = asyncio.run(race())
    rows = fetch(loaded, "SELECT stream_id, status_at FROM streams WHERE status_at IS NOT NULL")
    assert {r["stream_id"]: r["status_at"] for r in rows} == newest
    time.sleep(0.5)  # the writers' backends report their statistics as they exit
    assert _deadlocks(loaded) == deadlocks


# --- profiles ------------------------------------------------------------------------------


def test_a_new_channel_appears_without_a_reseed(client: TestClient[Any], loaded: str) -> None:
    created = client.put("/v1/streams/brand_new", json=PROFILE, headers=KEYED)
    assert created.status_code == 201, created.text
    assert created.json() == {"stream_id": "brand_new", "created": True}
    where = {"latitude": 64.15, "longitude": -21.94, "radius_km": 5}

    def shown() -> list[str]:
        body = client.post("/v1/scenarios/hometown", json=where).json()
        return [s["stream_id"] for s in body["streams"]]

    assert "brand_new" not in shown()  # a new channel starts offline
    client.post("/v1/streams/brand_new/live", json={"current_viewer_count": 40}, headers=KEYED)
    assert shown()[0] == "brand_new"
    edited = client.put(
        "/v1/streams/brand_new", json={**PROFILE, "title": "New title"}, headers=KEYED
    )
    assert edited.status_code == 200 and edited.json()["created"] is False
    state = _state(loaded, "brand_new")
    assert state["is_live"] is True and state["current_viewer_count"] == 40  # untouched
    body = client.post("/v1/scenarios/hometown", json=where).json()
    assert body["streams"][0]["title"] == "New title"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"latitude": 91}, "latitude"),
        ({"longitude": -180.5}, "longitude"),
        ({"stream_quality_score": 10.5}, "stream_quality_score"),
        ({"avg_viewer_count": -1}, "avg_viewer_count"),
        ({"creator_followers": 2**60}, "creator_followers"),
        ({"typical_duration_minutes": 0}, "typical_duration_minutes"),
        ({"city": ""}, "city"),
        ({"is_live": True}, "is_live"),  # live state is not part of a profile
        ({"city": "Par\ris"}, "city"),  # control characters but tab: refused
        ({"city": "Oslo\x1b[31m"}, "city"),
        ({"title": "bell\x07"}, "title"),
        ({"title": "two\nlines"}, "title"),
        ({"creator_id": "me\x85"}, "creator_id"),
        ({"tags": ["ok", "a\x1fb"]}, "tags"),
        ({"description": "esc\x1b in free text"}, "description"),
    ],
)
def test_profiles_are_validated_like_the_importer(
    client: TestClient[Any], change: dict[str, Any], field: str
) -> None:
    response = client.put("/v1/streams/bad_one", json={**PROFILE, **change}, headers=KEYED)
    assert response.status_code == 400, response.text
    assert field in response.text


def test_tabs_and_description_line_breaks_are_text(client: TestClient[Any]) -> None:
    profile = {**PROFILE, "city": "Oslo\tEast", "description": "one\r\ntwo\nthree\tfour"}
    response = client.put("/v1/streams/tabbed", json=profile, headers=KEYED)
    assert response.status_code == 201, response.text
    odd = client.post("/v1/streams/esc%1Bape/live", headers=KEYED)  # ESC, percent-encoded
    assert odd.status_code == 400 and "stream_id" in odd.text, odd.text


# --- the effect on recommendations ------------------------------------------------------------


def test_offline_streams_are_never_recommended_and_live_ones_appear_at_once(
    client: TestClient[Any], loaded: str
) -> None:
    users = [r["user_id"] for r in fetch(loaded, "SELECT user_id FROM users ORDER BY 1 LIMIT 30")]
    for user_id in users[:10]:
        first = client.post("/v1/scenarios/hometown", json={"user_id": user_id}).json()
        top = first["streams"][0]["stream_id"]
        assert (
            client.post(f"/v1/streams/{top}/offline", headers=KEYED).json()["status"] == "applied"
        )
        after = client.post("/v1/scenarios/hometown", json={"user_id": user_id}).json()
        assert top not in [s["stream_id"] for s in after["streams"]]
        client.post(f"/v1/streams/{top}/live", headers=KEYED)
        back = client.post("/v1/scenarios/hometown", json={"user_id": user_id}).json()
        assert back["streams"][0]["stream_id"] == top

    # Then heavy churn through the batch endpoint, and the lists against a brute force
    # over the table as it is now: only live streams, exactly ranked.
    rng = np.random.default_rng(5)
    ids = _stream_ids(loaded, 400)
    for round_ in range(5):
        updates = [
            {
                "stream_id": sid,
                "is_live": bool(rng.random() < 0.4),
                "at": (datetime.now(UTC) - timedelta(seconds=5 - round_)).isoformat(),
                "current_viewer_count": int(rng.integers(0, 900)),
            }
            for sid in rng.choice(ids, 250, replace=False)
        ]
        assert client.post(BATCH, json={"updates": updates}, headers=KEYED).status_code == 200
    user_table = pd.DataFrame(
        [dict(r) for r in fetch(loaded, f"SELECT {', '.join(oracle.USER_FIELDS)} FROM users")]
    )
    stream_table = pd.DataFrame(
        [dict(r) for r in fetch(loaded, f"SELECT {', '.join(oracle.STREAM_FIELDS)} FROM streams")]
    )
    live = set(stream_table.loc[stream_table["is_live"], "stream_id"])
    for user_id in users:
        request = {"user_id": user_id, "max_results": 50}
        body = client.post("/v1/scenarios/hometown", json=request).json()
        assert {s["stream_id"] for s in body["streams"]} <= live
        expectation = oracle.expect(user_table, stream_table, request)
        assert oracle.check(expectation, body, stream_table) == []


def test_a_batch_waiting_past_the_lock_timeout_is_run_again(loaded: str) -> None:
    """Rows held by another writer a little longer than the lock timeout: still applied."""
    sid = _stream_ids(loaded, 1)[0]

    async def contend() -> list[status.Result]:
        holder = await asyncpg.connect(loaded)
        writer = await asyncpg.connect(loaded, server_settings={"lock_timeout": "30"})
        try:
            holding = holder.transaction()
            await holding.start()
            await holder.execute("SELECT 1 FROM streams WHERE stream_id = $1 FOR UPDATE", sid)
            update = StatusUpdate(sid, True, T0 + timedelta(hours=1), 5)
            applying = asyncio.ensure_future(status.apply(writer, [update]))
            await asyncio.sleep(0.08)  # longer than the 30 ms lock timeout
            assert not applying.done()
            await holding.rollback()
            return await applying
        finally:
            await holder.close()
            await writer.close()

    (result,) = asyncio.run(contend())
    assert result.outcome == "applied"
    assert _state(loaded, sid)["current_viewer_count"] == 5

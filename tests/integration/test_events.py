"""The event log against a real PostGIS: keys, per-event results, replays, months, retention."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar.testing import TestClient

from app.events import months
from app.events.log import Event, EventLog, Outcome
from app.main import create_app
from app.settings import Settings
from seed.generate import generate
from seed.loader import Dataset, load
from tests.support.db import fetch

KEY = "test-key-0123456789-abcdef"
KEYED = {"X-API-Key": KEY}
EVENTS = "/v1/events"
T0 = datetime(2026, 11, 30, 23, 59, 30, tzinfo=UTC)  # the next minute is another month


@pytest.fixture
def loaded(db_url: str) -> str:
    data = generate(50, 60, 0, seed=3, live_share=0.5)
    load(db_url, Dataset(users=data.users, streams=data.streams))
    return db_url


@pytest.fixture
def client(loaded: str) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(Settings(DATABASE_URL=loaded, API_KEY=KEY))) as test_client:
        yield test_client


def _ids(url: str) -> tuple[list[str], list[str]]:
    users = [r[0] for r in fetch(url, "SELECT user_id FROM users ORDER BY 1 LIMIT 3")]
    streams = [r[0] for r in fetch(url, "SELECT stream_id FROM streams ORDER BY 1 LIMIT 3")]
    return users, streams


def _event(n: int, user: str, stream: str, **extra: Any) -> dict[str, Any]:
    body = {
        "event_id": f"e{n}",
        "type": "impression",
        "user_id": user,
        "stream_id": stream,
        "at": (T0 + timedelta(seconds=20 * n)).isoformat(),
        "request_id": "req-1",
        "position": n + 1,
    }
    return {**body, **extra}


def _stored(url: str) -> list[dict[str, Any]]:
    rows = fetch(
        url,
        "SELECT event_id, type, user_id, stream_id, at, request_id, position, minutes,"
        " tableoid::regclass::text AS part FROM events ORDER BY event_id",
    )
    return [dict(r) for r in rows]


def test_writes_need_the_key(client: TestClient[Any], loaded: str) -> None:
    users, streams = _ids(loaded)
    body = {"events": [_event(0, users[0], streams[0])]}
    for headers in ({}, {"X-API-Key": "wrong"}):
        response = client.post(EVENTS, json=body, headers=headers)
        assert response.status_code == 401, response.text
    assert fetch(loaded, "SELECT count(*) AS n FROM events WHERE event_id = 'e0'")[0]["n"] == 0


def test_each_event_gets_its_result_and_a_bad_one_loses_no_other(
    client: TestClient[Any], loaded: str
) -> None:
    users, streams = _ids(loaded)
    events = [
        _event(0, users[0], streams[0]),
        _event(1, users[1], streams[1], type="watch", minutes=12.5),
        {"event_id": "bad-type", "type": "purchase", "user_id": users[0], "stream_id": streams[0],
         "at": T0.isoformat()},
        _event(3, "no-such-user", streams[0]),
        _event(4, users[0], "no-such-stream"),
        _event(5, users[0], streams[0], type="click", minutes=3.0),  # minutes only for a watch
        _event(6, users[0], streams[0], at="2026-11-30T23:59:59"),  # no offset
        17,
        _event(8, users[2], streams[2], type="follow", position=3.0),  # 3.0 counts as 3
        _event(9, users[0], streams[0], at=(datetime.now(UTC) + timedelta(hours=1)).isoformat()),
    ]  # fmt: skip
    response = client.post(EVENTS, json={"events": events}, headers=KEYED)
    assert response.status_code == 200, response.text
    answer = response.json()
    statuses = [(r["event_id"], r["status"]) for r in answer["results"]]
    assert statuses == [
        ("e0", "recorded"),
        ("e1", "recorded"),
        ("bad-type", "rejected"),
        ("e3", "unknown_user"),
        ("e4", "unknown_stream"),
        ("e5", "rejected"),
        ("e6", "rejected"),
        (None, "rejected"),
        ("e8", "recorded"),
        ("e9", "rejected"),
    ]
    details = {r["event_id"]: r["detail"] for r in answer["results"] if r["detail"]}
    assert "$.type" in details["bad-type"] and "minutes" in details["e5"]
    assert "timezone" in details["e6"] and "ahead" in details["e9"]
    assert (answer["recorded"], answer["rejected"]) == (3, 5)
    assert (answer["unknown_user"], answer["unknown_stream"], answer["duplicate"]) == (1, 1, 0)
    stored = _stored(loaded)
    assert [s["event_id"] for s in stored] == ["e0", "e1", "e8"]
    assert stored[1]["type"] == "watch" and stored[1]["minutes"] == 12.5
    assert stored[2]["position"] == 3 and stored[2]["minutes"] is None
    # e0 and e1 fall in November, e8 in December: a partition each month, made on arrival.
    assert [s["part"] for s in stored] == ["events_2026_11", "events_2026_11", "events_2026_12"]


def test_a_replay_changes_nothing(client: TestClient[Any], loaded: str) -> None:
    users, streams = _ids(loaded)
    events = [_event(n, users[n % 3], streams[n % 3]) for n in range(6)]
    first = client.post(EVENTS, json={"events": events}, headers=KEYED).json()
    assert first["recorded"] == 6
    before = _stored(loaded)
    # The same events again, one of them twice, and one new one with an old id but
    # another time (another event).
    again = [*events, events[2], {**events[0], "at": (T0 + timedelta(hours=1)).isoformat()}]
    second = client.post(EVENTS, json={"events": again}, headers=KEYED).json()
    assert [r["status"] for r in second["results"]] == ["duplicate"] * 7 + ["recorded"]
    assert second["results"][6]["detail"] == "sent twice in this batch"
    after = _stored(loaded)
    assert [row for row in after if row["at"] != T0 + timedelta(hours=1)] == before
    assert len(after) == len(before) + 1


def test_months_are_created_as_events_come_and_dropped_before_a_cut(loaded: str) -> None:
    """The log makes each month once, and notices a month dropped under it."""
    users, streams = _ids(loaded)

    async def work() -> None:
        conn = await asyncpg.connect(loaded)
        try:
            first, second = EventLog(), EventLog()  # two processes
            march = datetime(2025, 3, 15, tzinfo=UTC)
            one = Event("a", "click", users[0], streams[0], march)
            assert [r.outcome for r in await first.record(conn, [one])] == [Outcome.RECORDED]
            assert [r.outcome for r in await second.record(conn, [one])] == [Outcome.DUPLICATE]
            assert await months.partitions(conn, "events") == ["events_2025_03"]
            # Another process drops March (retention) while both still believe in it.
            assert await months.drop_before(conn, "events", 2025, 4) == ["events_2025_03"]
            two = Event("b", "click", users[0], streams[0], march + timedelta(days=1))
            assert [r.outcome for r in await first.record(conn, [two])] == [Outcome.RECORDED]
            assert await months.partitions(conn, "events") == ["events_2025_03"]
            assert await conn.fetchval("SELECT count(*) FROM events") == 1
        finally:
            await conn.close()

    asyncio.run(work())


def test_a_batch_over_the_limit_or_without_events_is_refused(client: TestClient[Any]) -> None:
    for body in ({"events": []}, {"events": [{}] * 5001}, {"events": {}}, {"other": []}):
        response = client.post(EVENTS, json=body, headers=KEYED)
        assert response.status_code == 400, (body if len(str(body)) < 100 else "big", response.text)

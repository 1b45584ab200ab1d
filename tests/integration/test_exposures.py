"""Every answer recorded as exposures: in order, in the background, bounded under an outage."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import TestClient

from app.events.exposures import Exposure, ExposureLog
from app.events.log import Event, EventLog
from app.experiments import Experiment
from app.main import create_app
from app.settings import Settings
from ml import cli as ml_cli
from ml.dataset import load_training_data
from ml.feed.data import from_database
from tests.support.db import fetch
from tests.support.models import saved_model


def _exposures(url: str) -> list[dict[str, Any]]:
    rows = fetch(
        url,
        "SELECT x.request_id, shown.position, x.scenario, x.user_id, shown.stream_id, x.model,"
        " x.experiment, x.variant FROM exposures x"
        " CROSS JOIN LATERAL unnest(x.stream_ids) WITH ORDINALITY AS shown(stream_id, position)"
        " ORDER BY 1, 2",
    )
    return [dict(r) for r in rows]


def test_every_answer_is_recorded_in_order_and_flushed_at_shutdown(small_world: str) -> None:
    """With a flush interval longer than the test, only the shutdown's flush writes them."""
    users = [r[0] for r in fetch(small_world, "SELECT user_id FROM users ORDER BY 1 LIMIT 2")]
    settings = Settings(DATABASE_URL=small_world, EXPOSURE_FLUSH_SECONDS=3600)
    answers: dict[str, tuple[str, str | None, list[str]]] = {}
    with TestClient(create_app(settings)) as client:
        for body, path, scenario in (
            ({"user_id": users[0]}, "/v1/scenarios/hometown", "hometown"),
            ({"latitude": 48.85, "longitude": 2.35}, "/v1/scenarios/hometown", "hometown"),
            ({"user_id": users[1]}, "/v1/scenarios/home_feed", "home_feed"),
        ):
            response = client.post(path, json=body)
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["request_id"] == response.headers["x-request-id"]
            ids = [s["stream_id"] for s in answer["streams"]]
            assert ids, answer
            answers[answer["request_id"]] = (scenario, body.get("user_id"), ids)
        assert client.post("/v1/scenarios/hometown", json={"user_id": "nobody"}).status_code == 404
        health = client.get("/").json()["exposures"]
        assert health["pending_rows"] == sum(len(ids) for _, _, ids in answers.values())
        assert _exposures(small_world) == []  # nothing written yet: no round trip in a request
    rows = _exposures(small_world)
    expected = [
        {
            "request_id": request_id,
            "position": position,
            "scenario": scenario,
            "user_id": user_id,
            "stream_id": stream_id,
            "model": "formula" if scenario == "hometown" else "fallback",
            "experiment": None,
            "variant": None,
        }
        for request_id, (scenario, user_id, ids) in sorted(answers.items())
        for position, stream_id in enumerate(ids, start=1)
    ]
    assert rows == expected


def test_an_outage_loses_at_most_what_overflows_the_buffer_and_counts_it(
    small_world: str,
) -> None:
    """Writes to a database that refuses: the buffer keeps up to its bound, drops the rest
    (counted), and everything kept is written once the database answers again."""
    streams = [r[0] for r in fetch(small_world, "SELECT stream_id FROM streams ORDER BY 1")]
    at = datetime(2026, 12, 1, 12, tzinfo=UTC)

    def answer(n: int) -> Exposure:
        return Exposure(f"req-{n:03d}", at, "hometown", "u", streams[:3], model="formula")

    async def work() -> None:
        exposures = ExposureLog(max_rows=10)
        dead = await asyncpg.create_pool(
            "postgresql://nobody:nothing@127.0.0.1:9/none", min_size=0, timeout=1
        )
        good = await asyncpg.create_pool(small_world, min_size=0)
        try:
            for n in range(3):
                exposures.add(answer(n))  # 9 rows: fits
            assert not await exposures.flush_once(dead)
            assert (exposures.rows, exposures.failures, exposures.dropped) == (9, 1, 0)
            assert exposures.last_error is not None
            exposures.add(answer(3))  # 12 rows would overflow: dropped whole, counted
            assert (exposures.rows, exposures.dropped) == (9, 3)
            assert await exposures.flush_once(good)
            assert (exposures.rows, exposures.written) == (0, 9)
            assert await exposures.flush_once(good)  # nothing left: a no-op
            # A batch that reached the database and is sent again changes nothing.
            for n in range(2):
                exposures.add(answer(n))
            assert await exposures.flush_once(good)
        finally:
            await dead.close()
            await good.close()

    asyncio.run(work())
    rows = _exposures(small_world)
    assert [(r["request_id"], r["position"]) for r in rows] == [
        (f"req-{n:03d}", p) for n in range(3) for p in (1, 2, 3)
    ]
    assert all(r["stream_id"] == streams[r["position"] - 1] for r in rows)


def test_an_experiment_assigns_each_user_their_variant_and_logs_it(
    small_world: str, tmp_path: Path
) -> None:
    """HOMETOWN basic against ML, half and half: each user gets and keeps their variant,
    the ML variant's lists are ordered with the click model, and the exposures say which."""
    declared = {
        "name": "hometown-ml-test",
        "scenarios": ["hometown"],
        "variants": [
            {"name": "basic", "share": 0.5, "hometown": "basic"},
            {"name": "ml", "share": 0.5, "hometown": "ml"},
        ],
    }
    experiment = Experiment.model_validate(declared)
    users = [r[0] for r in fetch(small_world, "SELECT user_id FROM users ORDER BY 1")]
    expected = {user: experiment.assign(user).name for user in users}
    assert set(expected.values()) == {"basic", "ml"}, expected  # both arms in this world
    _, model_path = saved_model(tmp_path)
    settings = Settings(
        DATABASE_URL=small_world,
        MODEL_PATH=str(model_path),
        EXPERIMENTS=json.dumps([declared]),
        EXPOSURE_FLUSH_SECONDS=3600,
    )
    with TestClient(create_app(settings)) as client:
        for user in users * 2:  # the second round: the same variant again
            answer = client.post("/v1/scenarios/hometown", json={"user_id": user}).json()
            assert answer["experiment"] == {"name": experiment.name, "variant": expected[user]}
        signed_out = client.post(
            "/v1/scenarios/hometown", json={"latitude": 48.85, "longitude": 2.35}
        )
        assert signed_out.json()["experiment"] is None
        feed = client.post("/v1/scenarios/home_feed", json={"user_id": users[0]}).json()
        assert "experiment" not in feed  # the experiment does not cover the feed
    rows = fetch(
        small_world,
        "SELECT DISTINCT user_id, model, experiment, variant FROM exposures"
        " WHERE scenario = 'hometown' AND user_id IS NOT NULL",
    )
    assert {r["user_id"]: r["variant"] for r in rows} == expected
    assert all(r["experiment"] == experiment.name for r in rows)
    models = {r["variant"]: r["model"] for r in rows}
    assert models["basic"] == "formula" and models["ml"] != "formula"


def test_the_report_matches_clicks_and_watches_to_what_was_shown(
    small_world: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exposures and events written as the service writes them; the report counts a click
    once per impression, ignores one on a stream the list did not show, sums watches."""
    declared = {
        "name": "report-test",
        "scenarios": ["home_feed"],
        "variants": [
            {"name": "control", "share": 0.5, "feed_order": "reranker"},
            {"name": "treatment", "share": 0.5, "feed_order": "fallback"},
        ],
    }
    users = [r[0] for r in fetch(small_world, "SELECT user_id FROM users ORDER BY 1 LIMIT 4")]
    streams = [r[0] for r in fetch(small_world, "SELECT stream_id FROM streams ORDER BY 1")]
    at = datetime(2026, 12, 1, 12, tzinfo=UTC)
    variant = {u: ("control" if i < 2 else "treatment") for i, u in enumerate(users)}

    def event(n: int, kind: str, user: str, stream: str, request: str, **extra: Any) -> Event:
        return Event(f"ev{n}", kind, user, stream, at, request_id=request, **extra)

    events = [
        event(1, "click", users[0], streams[0], "r0"),
        event(2, "click", users[0], streams[0], "r0"),  # the same impression clicked twice
        event(3, "watch", users[0], streams[0], "r0", minutes=7.5),
        event(4, "click", users[2], streams[1], "r2"),
        event(5, "watch", users[2], streams[1], "r2", minutes=2.0),
        event(6, "click", users[3], streams[3], "r3"),  # r3 showed streams 0-2 only
    ]

    async def work() -> None:
        exposures = ExposureLog(max_rows=1000)
        for i, user in enumerate(users):
            exposures.add(
                Exposure(f"r{i}", at, "home_feed", user, streams[:3], "x", "report-test",
                         variant[user])
            )  # fmt: skip
        pool = await asyncpg.create_pool(small_world, min_size=0)
        try:
            assert await exposures.flush_once(pool)
            async with pool.acquire() as conn:
                results = await EventLog().record(conn, events)
            assert [r.outcome.value for r in results].count("recorded") == 6
        finally:
            await pool.close()

    asyncio.run(work())
    monkeypatch.setenv("DATABASE_URL", small_world)
    monkeypatch.setenv("EXPERIMENTS", json.dumps([declared]))
    ml_cli.main(["experiment", "report", "report-test", "--out-dir", str(tmp_path)])
    report = json.loads((tmp_path / "experiment_report-test.json").read_text())
    arms = {arm["variant"]: arm for arm in report["arms"]}
    assert {v: (a["users"], a["impressions"], a["clicks"]) for v, a in arms.items()} == {
        "control": (2, 6, 1),
        "treatment": (2, 6, 1),
    }
    assert arms["control"]["watch_minutes"] == 7.5 and arms["treatment"]["watch_minutes"] == 2.0
    assert arms["control"]["ctr"]["value"] == pytest.approx(1 / 6)
    assert (tmp_path / "experiment_report-test.png").stat().st_size > 1000
    assert "control" in (tmp_path / "experiment_report-test.md").read_text()
    with pytest.raises(SystemExit):
        ml_cli.main(["experiment", "report", "undeclared", "--out-dir", str(tmp_path)])
    # The same log as training rows (`python -m ml train --source log`): every exposure an
    # impression, clicked where a click names its answer and stream.
    data = load_training_data(small_world, source="log")
    columns = (data.user_ids.tolist(), data.stream_ids.tolist(), data.clicked.tolist())
    shown = sorted(zip(*columns, strict=True))
    assert shown == sorted(
        (user, stream, (user, stream) in {(users[0], streams[0]), (users[2], streams[1])})
        for user in users
        for stream in streams[:3]
    )
    assert len(load_training_data(small_world, source="log", max_rows=5)) == 5
    # And as the feed's interactions (`python -m ml feed train --source log`): each shown
    # stream at the answer's time, with the minutes watched from it; no device recorded.
    log = from_database(small_world, source="log").log
    rows = sorted(
        (log.user_ids[u], log.stream_ids[i], m)
        for u, i, m in zip(log.user, log.item, log.minutes, strict=True)
    )
    watched = {(users[0], streams[0]): 7.5, (users[2], streams[1]): 2.0}
    assert rows == sorted(
        (user, stream, watched.get((user, stream), 0.0)) for user in users for stream in streams[:3]
    )
    assert set(log.at_us.tolist()) == {int(at.timestamp() * 1_000_000)}
    assert set(log.device.tolist()) == {-1}

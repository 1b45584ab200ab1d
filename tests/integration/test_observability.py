"""Request ids, JSON logs, `/metrics`, `/live` and `/ready`, against a real PostGIS."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from app.observability.logs import configure_logging
from app.observability.readiness import schema_head
from app.settings import Settings
from tests.integration.conftest import MakeClient
from tests.support.db import run_sql
from tools.cluster import free_port

ROUTE = "/v1/scenarios/hometown"
KEY = "observability-test-key-0123456789"
WRITES = "/v1/streams/live-status"


def _settings(url: str, tmp_path: Path, **extra: Any) -> Settings:
    return Settings(
        DATABASE_URL=url, API_KEY=KEY, MODEL_PATH=str(tmp_path / "no-model.joblib"), **extra
    )


@pytest.fixture
def loaded(small_world: str) -> str:
    return small_world


@pytest.fixture
def client(loaded: str, make_client: MakeClient) -> TestClient[Any]:
    return make_client(loaded, API_KEY=KEY)


@pytest.fixture
def dead(tmp_path: Path) -> Iterator[TestClient[Any]]:
    """An app whose database URL points at a port nobody listens on."""
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    with TestClient(create_app(_settings(url, tmp_path, DB_CONNECT_TIMEOUT=0.5))) as test_client:
        yield test_client


def _metrics(client: TestClient[Any]) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """`/metrics` parsed: sample name -> {sorted labels: value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


# --- request ids -------------------------------------------------------------------------


def test_every_response_carries_a_request_id(client: TestClient[Any]) -> None:
    ok = client.post(ROUTE, json={"user_id": "user_000001", "max_results": 3})
    refused = client.post(ROUTE, json={"user_id": "user_000001", "max_results": 0})
    unknown_user = client.post(ROUTE, json={"user_id": "nobody"})
    no_route = client.get("/no/such/path")
    unauthorised = client.post(WRITES, json={"updates": []})
    ids = set()
    for response, status in (
        (ok, 200),
        (refused, 400),
        (unknown_user, 404),
        (no_route, 404),
        (unauthorised, 401),
    ):
        assert response.status_code == status
        request_id = response.headers["x-request-id"]
        assert len(request_id) == 32 and int(request_id, 16) >= 0  # uuid4 hex
        ids.add(request_id)
    assert len(ids) == 5
    assert ok.json()["request_id"] == ok.headers["x-request-id"]


def test_the_request_id_is_on_503s_too(dead: TestClient[Any]) -> None:
    response = dead.post(ROUTE, json={"user_id": "user_000001"}, headers={"X-Request-ID": "r-1"})
    assert response.status_code == 503
    assert response.headers["x-request-id"] == "r-1"
    assert response.headers["retry-after"]


def test_a_well_formed_incoming_id_is_echoed_and_a_malformed_one_replaced(
    client: TestClient[Any],
) -> None:
    given = "Edge-proxy_1.abc"
    echoed = client.post(ROUTE, json={"user_id": "user_000002"}, headers={"X-Request-ID": given})
    assert echoed.headers["x-request-id"] == given
    assert echoed.json()["request_id"] == given
    for bad in ("has space", "x" * 65, "semi;colon", "<script>", ""):
        response = client.get("/live", headers={"X-Request-ID": bad})
        replaced = response.headers["x-request-id"]
        assert replaced != bad and len(replaced) == 32


# --- logs ----------------------------------------------------------------------------------


def test_log_lines_are_json_with_the_request_id(loaded: str, tmp_path: Path) -> None:
    app = create_app(_settings(loaded, tmp_path))
    buffer = io.StringIO()
    configure_logging("json", stream=buffer)  # replaces the stderr handler create_app set
    with TestClient(app) as test_client:
        ok = test_client.post(ROUTE, json={"user_id": "user_000003"})
        write = test_client.post(
            WRITES,
            json={
                "updates": [{"stream_id": "nope", "is_live": True, "at": "2026-11-01T00:00:00Z"}]
            },
            headers={"X-API-Key": KEY},
        )
    assert ok.status_code == 200 and write.status_code == 200
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert lines and all(
        {"time", "level", "logger", "message", "request_id"} <= set(x) for x in lines
    )
    access = {x["request_id"]: x for x in lines if x["logger"] == "app.access"}
    line = access[ok.headers["x-request-id"]]
    assert line["method"] == "POST" and line["path"] == ROUTE and line["status"] == 200
    assert line["duration_ms"] > 0 and line["client"]
    assert access[write.headers["x-request-id"]]["path"] == WRITES
    assert KEY not in buffer.getvalue()  # the API key is never logged


def test_the_app_logs_json_to_stderr_after_start_up(
    loaded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing at start-up (Litestar's own logging config, say) replaces the JSON handler."""
    with TestClient(create_app(_settings(loaded, tmp_path))) as test_client:
        response = test_client.get("/live")
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    access = [x for x in lines if x["logger"] == "app.access"]
    assert [x["request_id"] for x in access] == [response.headers["x-request-id"]]


def test_lines_logged_inside_a_request_carry_its_id(dead: TestClient[Any]) -> None:
    buffer = io.StringIO()
    configure_logging("json", stream=buffer)
    response = dead.post(ROUTE, json={"user_id": "user_000001"}, headers={"X-Request-ID": "r-2"})
    assert response.status_code == 503
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    failed = [x for x in lines if x["logger"] == "app" and x["level"] == "ERROR"]
    assert failed and all(x["request_id"] == "r-2" for x in failed)
    assert {x["request_id"] for x in lines if x["logger"] == "app.access"} == {"r-2"}


def test_text_logs_and_no_access_line(loaded: str, tmp_path: Path) -> None:
    app = create_app(_settings(loaded, tmp_path, LOG_FORMAT="text", ACCESS_LOG=False))
    buffer = io.StringIO()
    configure_logging("text", stream=buffer)
    with TestClient(app) as test_client:
        test_client.get("/live")
    logging.getLogger("app").info("outside a request")
    text = buffer.getvalue()
    assert "app.access" not in text
    assert "INFO app [-] outside a request" in text


# --- metrics -------------------------------------------------------------------------------


def test_metrics_expose_every_family(client: TestClient[Any]) -> None:
    searches = 5
    for i in range(searches):
        assert client.post(ROUTE, json={"user_id": f"user_{i:06d}", "max_results": 3}).is_success
    assert client.post(ROUTE, json={"user_id": "nobody"}).status_code == 404
    batch = [
        {"stream_id": "stream_000000", "is_live": True, "at": "2026-11-02T00:00:00Z"},
        {"stream_id": "stream_000000", "is_live": False, "at": "2026-11-02T00:01:00Z"},
        {"stream_id": "stream_000001", "is_live": True, "at": "2026-11-02T00:00:00Z"},
        {"stream_id": "nope", "is_live": True, "at": "2026-11-02T00:00:00Z"},
    ]
    response = client.post(WRITES, json={"updates": batch}, headers={"X-API-Key": KEY})
    assert response.status_code == 200
    stale = [{"stream_id": "stream_000001", "is_live": True, "at": "2026-11-01T23:00:00Z"}]
    assert client.post(WRITES, json={"updates": stale}, headers={"X-API-Key": KEY}).is_success

    m = _metrics(client)
    hometown = (("endpoint", "hometown"),)
    assert m["hometown_search_candidates_read_count"][hometown] == searches
    assert m["hometown_search_candidates_read_sum"][hometown] >= searches  # 4 streams to read
    assert m["hometown_search_rings_count"][hometown] == searches
    assert m["hometown_search_rings_sum"][hometown] >= searches
    assert m["hometown_search_candidates_read_count"][(("endpoint", "hometown-ml"),)] == 0

    latency = m["hometown_http_request_duration_seconds_count"]
    post = (("method", "POST"), ("route", ROUTE))
    assert latency[(post[0], post[1], ("status", "2xx"))] == searches
    assert latency[(post[0], post[1], ("status", "4xx"))] == 1
    assert (
        m["hometown_http_request_duration_seconds_sum"][(post[0], post[1], ("status", "2xx"))] > 0
    )

    updates = {dict(k)["outcome"]: v for k, v in m["hometown_live_status_updates_total"].items()}
    assert updates == {"applied": 2, "superseded": 1, "unknown": 1, "stale": 1, "rejected": 0}

    assert m["hometown_model_loaded"][()] == 0  # MODEL_PATH names no file
    size, idle = m["hometown_db_pool_size"][()], m["hometown_db_pool_idle"][()]
    assert size >= 1 and idle == size and m["hometown_db_pool_in_use"][()] == 0
    assert m["hometown_db_pool_max"][()] == client.app.state.settings.db_pool_size


def test_metrics_are_open_and_not_in_the_schema(client: TestClient[Any]) -> None:
    assert client.get("/metrics").status_code == 200  # no API key needed
    assert "/metrics" not in client.get("/docs/openapi.json").json()["paths"]


def test_unmatched_paths_share_one_label(client: TestClient[Any]) -> None:
    for i in range(3):
        client.get(f"/nothing/{i}")
    latency = _metrics(client)["hometown_http_request_duration_seconds_count"]
    unmatched = [v for k, v in latency.items() if dict(k)["route"] == "<unmatched>"]
    assert unmatched == [3]


# --- liveness and readiness ----------------------------------------------------------------


def test_live_and_ready_with_a_migrated_database(client: TestClient[Any]) -> None:
    assert client.get("/live").json() == {"status": "alive"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_ready_is_503_while_live_is_200_when_the_database_is_down(dead: TestClient[Any]) -> None:
    assert dead.get("/live").status_code == 200
    ready = dead.get("/ready")
    assert ready.status_code == 503
    assert ready.headers["retry-after"] == "5"
    assert ready.json()["status"] == "unavailable" and ready.json()["error"]


def test_ready_is_503_when_the_schema_is_behind(client: TestClient[Any], loaded: str) -> None:
    head = schema_head()
    assert head is not None
    run_sql(loaded, "UPDATE alembic_version SET version_num = '0001'")
    try:
        ready = client.get("/ready")
    finally:
        run_sql(loaded, f"UPDATE alembic_version SET version_num = '{head}'")
    assert ready.status_code == 503
    assert "0001" in ready.json()["error"] and head in ready.json()["error"]
    assert client.get("/ready").status_code == 200

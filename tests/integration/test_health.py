"""`GET /` reports the database; `/docs` serves the OpenAPI documentation."""

from __future__ import annotations

from litestar.testing import TestClient

from app.main import create_app
from app.settings import Settings
from seed.loader import load
from tests.support import frames
from tools.cluster import free_port


def test_health_reports_postgis_and_row_counts(db_url: str) -> None:
    load(db_url, frames.dataset(12, 4))
    with TestClient(create_app(Settings(DATABASE_URL=db_url))) as client:
        response = client.get("/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["reachable"] is True
    assert body["database"]["postgis_version"].startswith("3.")
    assert body["database"]["rows"] == {"users": 12, "streams": 4, "interactions": 12}


#: What `GET /` must list: the scenarios, their stats, the writes, health and docs.
EXPECTED_ENDPOINTS = {
    "GET /",
    "GET /live",
    "GET /ready",
    "GET /metrics",
    "POST /v1/scenarios/hometown",
    "POST /v1/scenarios/hometown-ml",
    "GET /v1/scenarios/hometown/stats",
    "POST /v1/streams/live-status",
    "POST /v1/streams/{stream_id}/live",
    "POST /v1/streams/{stream_id}/offline",
    "PUT /v1/streams/{stream_id}",
    "GET /docs",
    "GET /docs/openapi.json",
}


def test_health_lists_the_endpoints_from_the_route_table(db_url: str) -> None:
    app = create_app(Settings(DATABASE_URL=db_url))
    with TestClient(app) as client:
        listed = client.get("/").json()["endpoints"]
    assert set(listed) >= EXPECTED_ENDPOINTS
    assert len(listed) == len(set(listed))
    # Every listed endpoint is a real route (not a 404/405), and nothing internal shows.
    paths = {route.path_format for route in app.routes}
    assert {entry.split(" ", 1)[1] for entry in listed} <= paths
    assert not [e for e in listed if e.startswith(("OPTIONS ", "HEAD ")) or ".html" in e]
    assert not [e for e in listed if e.startswith("GET /docs/{")]


def test_health_is_503_with_a_reason_when_the_database_is_down() -> None:
    dead = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    with TestClient(create_app(Settings(DATABASE_URL=dead))) as client:
        response = client.get("/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"]["reachable"] is False
    assert body["database"]["error"]
    assert response.headers["retry-after"] == "5"
    assert set(body["endpoints"]) >= EXPECTED_ENDPOINTS


def test_docs_serve_the_openapi_schema(db_url: str) -> None:
    with TestClient(create_app(Settings(DATABASE_URL=db_url))) as client:
        page = client.get("/docs")
        schema = client.get("/docs/openapi.json")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert schema.json()["info"]["title"] == "Hometown"
    assert "/" in schema.json()["paths"]

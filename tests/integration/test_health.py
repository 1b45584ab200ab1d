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


def test_docs_serve_the_openapi_schema(db_url: str) -> None:
    with TestClient(create_app(Settings(DATABASE_URL=db_url))) as client:
        page = client.get("/docs")
        schema = client.get("/docs/openapi.json")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert schema.json()["info"]["title"] == "Hometown"
    assert "/" in schema.json()["paths"]

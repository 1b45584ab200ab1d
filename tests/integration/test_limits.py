"""Limits at the edge: per-client rate limit, request size, production settings."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient
from pydantic import ValidationError

from app.main import create_app
from app.settings import Settings

WHERE = {"latitude": 48.86, "longitude": 2.35}


def test_the_rate_limit_answers_429_with_retry_after(db_url: str) -> None:
    settings = Settings(DATABASE_URL=db_url, RATE_LIMIT_PER_SECOND=0.5, RATE_LIMIT_BURST=2)
    with TestClient(create_app(settings)) as client:
        codes = [client.post("/v1/scenarios/hometown", json=WHERE).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        refused = client.post("/v1/scenarios/hometown-ml", json=WHERE)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "2"
        assert "too many requests" in refused.json()["detail"]
        assert client.get("/").status_code == 200  # health is never limited


def test_no_rate_limit_by_default(db_url: str) -> None:
    with TestClient(create_app(Settings(DATABASE_URL=db_url))) as client:
        codes = {client.post("/v1/scenarios/hometown", json=WHERE).status_code for _ in range(50)}
    assert codes == {200}


def test_an_oversized_body_is_refused_with_413(db_url: str) -> None:
    settings = Settings(DATABASE_URL=db_url, MAX_BODY_BYTES=4096)
    with TestClient(create_app(settings)) as client:
        padded = {**WHERE, "preferred_categories": ["x" * 60] * 100}
        response = client.post("/v1/scenarios/hometown", json=padded)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/json")


def test_production_refuses_to_start_without_a_key() -> None:
    with pytest.raises(ValidationError, match="API_KEY"):
        Settings(ENVIRONMENT="production")
    assert Settings(ENVIRONMENT="production", API_KEY="k" * 16).environment == "production"
    with pytest.raises(ValidationError):
        Settings(ENVIRONMENT="staging")

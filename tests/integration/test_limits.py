"""Limits at the edge: per-client rate limit, request size, production settings."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient
from pydantic import ValidationError

from app.main import create_app
from app.settings import Settings
from tests.support.redis import RedisServer

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


def _limited(db_url: str, redis_url: str | None) -> Settings:
    return Settings(
        DATABASE_URL=db_url,
        RATE_LIMIT_PER_SECOND=0.5,
        RATE_LIMIT_BURST=2,
        REDIS_URL=redis_url or "",
    )


def test_with_redis_one_clients_limit_holds_across_processes(db_url: str, redis_url: str) -> None:
    """Two apps (as two server processes would be) share the client's bucket in Redis."""
    with (
        TestClient(create_app(_limited(db_url, redis_url))) as first,
        TestClient(create_app(_limited(db_url, redis_url))) as second,
    ):
        codes = [first.post("/v1/scenarios/hometown", json=WHERE).status_code for _ in range(2)]
        refused = second.post("/v1/scenarios/hometown", json=WHERE)
        assert codes == [200, 200]
        assert refused.status_code == 429, "the second process let the client through"
        assert refused.headers["retry-after"] == "2"
        assert "too many requests" in refused.json()["detail"]
        assert "hometown_rate_limit_fallbacks_total 0.0" in second.get("/metrics").text


def test_without_redis_each_process_keeps_its_own_buckets(db_url: str) -> None:
    """The documented contrast: the same requests, but each app counts only its own."""
    with (
        TestClient(create_app(_limited(db_url, None))) as first,
        TestClient(create_app(_limited(db_url, None))) as second,
    ):
        codes = [first.post("/v1/scenarios/hometown", json=WHERE).status_code for _ in range(2)]
        assert codes == [200, 200]
        assert second.post("/v1/scenarios/hometown", json=WHERE).status_code == 200


def test_redis_down_limits_in_the_process_and_fails_no_request(
    db_url: str, redis_url: str, redis_server: RedisServer
) -> None:
    with TestClient(create_app(_limited(db_url, redis_url))) as client:
        assert client.post("/v1/scenarios/hometown", json=WHERE).status_code == 200
        redis_server.stop()
        codes = [client.post("/v1/scenarios/hometown", json=WHERE).status_code for _ in range(3)]
        # The process's own bucket is full again (it never saw the first request), so
        # two pass and the third is refused: limited, not failed, and not unlimited.
        assert codes == [200, 200, 429]
        assert "hometown_rate_limit_fallbacks_total 3.0" in client.get("/metrics").text


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

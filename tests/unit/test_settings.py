"""Settings accept the URLs people paste and refuse what cannot work."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import DEFAULT_DATABASE_URL, Settings
from tools.cluster import redact


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://u:p@h:5/d",
        "postgres://u:p@h:5/d",
        "postgresql+psycopg://u:p@h:5/d",
        "postgresql+asyncpg://u:p@h:5/d",
    ],
)
def test_any_postgres_driver_url_is_normalised(given: str) -> None:
    settings = Settings(DATABASE_URL=given)
    assert settings.database_url == "postgresql://u:p@h:5/d"
    assert settings.sqlalchemy_url == "postgresql+asyncpg://u:p@h:5/d"


def test_a_non_postgres_url_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="must be a postgresql:// URL"):
        Settings(DATABASE_URL="sqlite:///x.db")


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "HOST", "PORT", "MODEL_PATH"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert str(settings.model_path) == "models/hometown_model.joblib"


def test_the_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9001")
    monkeypatch.setenv("MODEL_PATH", "elsewhere/m.joblib")
    settings = Settings(_env_file=None)
    assert settings.port == 9001
    assert str(settings.model_path) == "elsewhere/m.joblib"


def test_passwords_are_redacted_in_messages() -> None:
    assert redact("postgresql://user:secret@host:5432/db") == "postgresql://user:***@host:5432/db"
    assert redact("postgresql://host/db") == "postgresql://host/db"

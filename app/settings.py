"""Configuration from the environment (and an optional `.env` file).

The variable names are an interface other tools rely on (`DATABASE_URL`, `HOST`,
`PORT`, `MODEL_PATH`), so they carry no prefix. Settings are never built at import
time: `create_app(settings)` takes them explicitly and falls back to the cached
`get_settings()`, so tests can pass their own without touching the environment.

Every command that reads the environment builds its settings with `load_settings()`:
a bad value ends the process with exit status 2 and one line per bad variable on
stderr (the variable, the rule, the fix), never a traceback and never a secret.
"""

from __future__ import annotations

import json
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from app.experiments import Experiment, check_disjoint
from app.hometown.weights import Weights
from app.settings_errors import describe_errors, unparsable
from app.transport.proxies import parse_networks
from app.workers import default_workers

#: The private development database: the local cluster that `make db` starts, and the
#: port docker-compose publishes its `db` service on. One URL serves both paths.
DEFAULT_DATABASE_URL = "postgresql://hometown:hometown@127.0.0.1:54329/hometown"


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}")
#: Where the next URL of a comma-separated list starts: a comma before a scheme.
_URL_START = re.compile(r",(?=\s*[A-Za-z][A-Za-z0-9+.-]{0,30}://)")


def redact(url: str) -> str:
    """The URL without its password, for messages and the health page."""
    scheme, _, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def normalise_database_url(url: str) -> str:
    """Return `url` as a plain `postgresql://` URL, whatever driver part it names.

    Users paste URLs from many tools (`postgres://`, `postgresql+psycopg://`, ...);
    we accept them all and pick the driver ourselves. Refused, with the reason (which
    never quotes the URL: it may hold a password): another scheme, a port that is not
    a number from 1 to 65535, and a URL without a database name.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        raise ValueError("must be a postgresql:// URL, got no scheme")
    if scheme.split("+")[0].lower() not in {"postgresql", "postgres"}:
        raise ValueError(f"must be a postgresql:// URL, got scheme {scheme!r}")
    parts = urlsplit(f"postgresql://{rest}")
    # libpq and asyncpg accept several hosts, `h1:5432,h2:5433`: check every port.
    for host in parts.netloc.rpartition("@")[2].split(","):
        try:
            port = urlsplit(f"//{host}").port
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError("must be a postgresql:// URL whose port is a number 1..65535")
    if not parts.path.strip("/"):
        raise ValueError("must be a postgresql:// URL ending in a database name (/DATABASE)")
    return f"postgresql://{rest}"


REDIS_SCHEMES = ("redis", "rediss", "unix")


def check_redis_url(url: str) -> None:
    """Refuse a REDIS_URL whose scheme redis-py cannot use, without quoting it."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in REDIS_SCHEMES:
        shown = f"scheme {scheme!r}" if sep and _SCHEME.fullmatch(scheme) else "no scheme"
        raise ValueError(f"must be a redis://, rediss:// or unix:// URL, got {shown}")
    if not rest.strip("/"):
        raise ValueError("must name a host (redis://HOST:PORT/DB) or a socket (unix:///PATH)")


class Settings(BaseSettings):
    """Everything the service and its tools read from the environment."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_nested_delimiter="__")

    database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias="DATABASE_URL")
    #: Hot standbys of `database_url` (comma-separated URLs) that take the
    #: recommendation reads; writes always go to the primary (app/db/replicas.py).
    database_replica_urls: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validation_alias="DATABASE_REPLICA_URLS"
    )
    #: Seconds a replica may be behind the primary and still serve a read; past it,
    #: or down, it is skipped. Half a second keeps "offline is gone within 1 s".
    replica_max_lag_s: float = Field(default=0.5, gt=0, le=3600, validation_alias="REPLICA_MAX_LAG")
    host: str = Field(default="127.0.0.1", validation_alias="HOST")
    port: int = Field(default=8000, ge=1, le=65535, validation_alias="PORT")
    model_path: Path = Field(
        default=Path("models/hometown_model.joblib"), validation_alias="MODEL_PATH"
    )
    db_pool_size: int = Field(default=10, ge=1, validation_alias="DB_POOL_SIZE")
    db_connect_timeout_s: float = Field(default=2.0, gt=0, validation_alias="DB_CONNECT_TIMEOUT")
    #: How long a request waits for a free pooled connection before a 503 (queueing
    #: when all `DB_POOL_SIZE` are busy, plus connecting when none is open yet).
    db_pool_acquire_timeout_s: float = Field(
        default=2.0, gt=0, validation_alias="DB_POOL_ACQUIRE_TIMEOUT"
    )
    #: Milliseconds any one statement may run (PostgreSQL's `statement_timeout`);
    #: past it the query is cancelled and the request answers 503. Never off.
    db_statement_timeout_ms: int = Field(
        default=2000, gt=0, validation_alias="DB_STATEMENT_TIMEOUT"
    )
    #: Server processes sharing the port (app/workers.py); 1 serves in this process alone.
    workers: int = Field(default_factory=default_workers, ge=1, le=256, validation_alias="WORKERS")
    #: Seconds uvicorn waits for in-flight requests after SIGTERM before cancelling them.
    shutdown_timeout_s: int = Field(default=15, ge=1, validation_alias="GRACEFUL_SHUTDOWN_TIMEOUT")
    #: How P(click) enters `/hometown-ml`'s score: "model" takes the term training
    #: fitted and stored in the artifact (the seed's `ml_weight · P(click)` when it
    #: holds none); "formula" always uses the seed's (app/hometown/ml_term.py).
    ml_term: Literal["model", "formula"] = Field(default="model", validation_alias="ML_TERM")
    #: Score weights, e.g. `WEIGHTS__PROXIMITY_WEIGHT=2.0` (see app/hometown/weights.py).
    weights: Weights = Field(default_factory=Weights, validation_alias="WEIGHTS")
    #: A/B experiments, a JSON list (app/experiments.py); none by default.
    experiments: Annotated[tuple[Experiment, ...], NoDecode] = Field(
        default=(), validation_alias="EXPERIMENTS"
    )
    #: Signed-out viewers: how much they favour nearby streams when they do not say.
    default_local_preference: float = Field(
        default=0.5, ge=0, le=1, validation_alias="DEFAULT_LOCAL_PREFERENCE"
    )
    #: Our own per-request access line (uvicorn's is always off: ours has the request id).
    access_log: bool = Field(default=True, validation_alias="ACCESS_LOG")
    #: `json`: one JSON object per line on stderr; `text`: one readable line.
    log_format: Literal["json", "text"] = Field(default="json", validation_alias="LOG_FORMAT")
    stats_cache_s: float = Field(default=5.0, ge=0, validation_alias="STATS_CACHE_SECONDS")
    #: Seconds between full resyncs of each process's in-memory live set (app/feed/follow.py),
    #: on top of the notifications it follows; each resync also picks up a new active model.
    live_resync_s: float = Field(default=60.0, gt=0, validation_alias="LIVE_RESYNC_SECONDS")
    #: The key every write endpoint wants in `X-API-Key`; unset, writes are refused.
    #: A SecretStr, so it never shows in a repr, a log line or an error.
    api_key: SecretStr | None = Field(default=None, min_length=16, validation_alias="API_KEY")
    #: `production` refuses to start without an API key (writes would be impossible,
    #: or worse, someone would switch the check off to make them work).
    environment: Literal["development", "production"] = Field(
        default="development", validation_alias="ENVIRONMENT"
    )
    #: Per-client rate limit on the recommendation endpoints; 0 switches it off.
    rate_limit_per_second: float = Field(
        default=0.0, ge=0, validation_alias="RATE_LIMIT_PER_SECOND"
    )
    rate_limit_burst: int = Field(default=20, ge=1, validation_alias="RATE_LIMIT_BURST")
    #: Largest request body accepted (413 above it): a full 5,000-update batch is ~0.7 MB.
    max_body_bytes: int = Field(default=2_000_000, ge=1024, validation_alias="MAX_BODY_BYTES")
    #: Peers whose `X-Forwarded-For` is believed (IPs or CIDRs, comma-separated); none
    #: by default, so a client cannot pick its own address (app/transport/proxies.py).
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), validation_alias="TRUSTED_PROXIES"
    )
    #: Seconds a connection may take to send a request's head (line and headers);
    #: then it is closed. Counts from the connection's start or its previous request's end.
    request_head_timeout_s: float = Field(
        default=10.0, gt=0, le=3600, validation_alias="REQUEST_HEAD_TIMEOUT"
    )
    #: Seconds a request's body may take to arrive once its head is in; then 408.
    request_body_timeout_s: float = Field(
        default=30.0, gt=0, le=3600, validation_alias="REQUEST_BODY_TIMEOUT"
    )
    #: Open connections served at once; one accepted past it is answered 503.
    max_connections: int = Field(
        default=1000, ge=1, le=1_000_000, validation_alias="MAX_CONNECTIONS"
    )

    #: The feature store's cache (app/feed/store.py): `redis://`, `rediss://` or
    #: `unix://`; unset, each process caches in its own memory. A SecretStr: the URL
    #: may hold a password, and it never shows in a repr, a log line or an error.
    redis_url: SecretStr | None = Field(default=None, validation_alias="REDIS_URL")
    #: Most entries the in-process feature cache holds (least recently used go first).
    feature_cache_entries: int = Field(
        default=100_000, ge=1, le=100_000_000, validation_alias="FEATURE_CACHE_ENTRIES"
    )
    #: Most megabytes (10^6 bytes) it holds, keys, values and bookkeeping counted: the
    #: bound a process's memory follows (a viewer's entry is ~740 bytes, a stream's ~900).
    feature_cache_mb: float = Field(
        default=20.0, gt=0, le=1_000_000, validation_alias="FEATURE_CACHE_MB"
    )

    #: Most exposures (streams shown in answers) waiting to be written
    #: (app/events/exposures.py): past it, answers are not recorded (counted), so an
    #: outage costs memory up to here only.
    exposure_buffer_rows: int = Field(
        default=100_000, ge=1, le=100_000_000, validation_alias="EXPOSURE_BUFFER_ROWS"
    )
    #: Seconds between the exposure writer's flushes (sooner when a batch is full).
    exposure_flush_s: float = Field(
        default=1.0, gt=0, le=3600, validation_alias="EXPOSURE_FLUSH_SECONDS"
    )

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("experiments", mode="before")
    @classmethod
    def _decode_experiments(cls, value: object) -> object:
        # The environment's JSON, or the same text passed to Settings() in code.
        if isinstance(value, str):
            return json.loads(value) if value.strip() else ()
        return value

    @field_validator("experiments")
    @classmethod
    def _disjoint_experiments(cls, value: tuple[Experiment, ...]) -> tuple[Experiment, ...]:
        return check_disjoint(value)

    @field_validator("database_replica_urls", mode="before")
    @classmethod
    def _split_replicas(cls, value: object) -> object:
        if isinstance(value, str):
            # Split only before a scheme: one URL may itself list hosts, `h1:5432,h2:5432`.
            value = [part.strip() for part in _URL_START.split(value) if part.strip()]
        if isinstance(value, list | tuple):
            return tuple(normalise_database_url(str(v)) for v in value)
        return value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _check_redis_url(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return None  # REDIS_URL= (empty) means unset
            check_redis_url(value)
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            return tuple(str(n) for n in parse_networks(str(v) for v in value))
        return value

    @model_validator(mode="after")
    def _production_needs_a_key(self) -> Settings:
        if self.environment == "production" and self.api_key is None:
            raise ValueError(
                "ENVIRONMENT=production needs API_KEY (16 characters or more): set API_KEY,"
                " or ENVIRONMENT=development"
            )
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the asyncpg driver, for SQLAlchemy's async engine."""
        return self.database_url.replace("postgresql://", "postgresql+asyncpg://", 1)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the settings once per process (exits 2 on a bad value: `load_settings`)."""
    return load_settings()


def load_settings() -> Settings:
    """The settings from the environment and `.env`, or exit 2 saying what is wrong.

    Every entry point calls this: a bad value prints one line per bad variable on
    stderr, naming the environment variable, the rule and the fix, and exits with
    status 2 (a usage error, not a crash). No traceback, and no secret's value.
    """
    try:
        return Settings()
    except ValidationError as exc:
        lines = describe_errors(exc, Settings)
    except SettingsError as exc:  # a nested setting that is not valid JSON
        lines = [unparsable(str(exc), Settings)]
    for line in lines:
        print(line, file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(2)

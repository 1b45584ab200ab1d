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

import re
import sys
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import annotated_types
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from app.hometown.weights import Weights

#: The private development database: the local cluster that `make db` starts, and the
#: port docker-compose publishes its `db` service on. One URL serves both paths.
DEFAULT_DATABASE_URL = "postgresql://hometown:hometown@127.0.0.1:54329/hometown"


#: How a valid DATABASE_URL looks, for the messages.
URL_SHAPE = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}")


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


class Settings(BaseSettings):
    """Everything the service and its tools read from the environment."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_nested_delimiter="__")

    database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias="DATABASE_URL")
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
    #: Seconds uvicorn waits for in-flight requests after SIGTERM before cancelling them.
    shutdown_timeout_s: int = Field(default=15, ge=1, validation_alias="GRACEFUL_SHUTDOWN_TIMEOUT")
    #: Score weights, e.g. `WEIGHTS__PROXIMITY_WEIGHT=2.0` (see app/hometown/weights.py).
    weights: Weights = Field(default_factory=Weights, validation_alias="WEIGHTS")
    #: Signed-out viewers: how much they favour nearby streams when they do not say.
    default_local_preference: float = Field(
        default=0.5, ge=0, le=1, validation_alias="DEFAULT_LOCAL_PREFERENCE"
    )
    #: Our own per-request access line (uvicorn's is always off: ours has the request id).
    access_log: bool = Field(default=True, validation_alias="ACCESS_LOG")
    #: `json`: one JSON object per line on stderr; `text`: one readable line.
    log_format: Literal["json", "text"] = Field(default="json", validation_alias="LOG_FORMAT")
    stats_cache_s: float = Field(default=5.0, ge=0, validation_alias="STATS_CACHE_SECONDS")
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

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, value: str) -> str:
        return normalise_database_url(value)

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
        lines = describe_errors(exc)
    except SettingsError as exc:  # a nested setting that is not valid JSON
        lines = [_unparsable(str(exc))]
    for line in lines:
        print(line, file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(2)


# --- error messages -----------------------------------------------------------------

#: Variables whose values never appear in a message (a URL may carry a password).
SECRET_VARIABLES = frozenset({"API_KEY", "DATABASE_URL"})
#: How to fix a variable, where "such a value" would not say enough.
_FIXES = {
    "DATABASE_URL": f"a URL like {URL_SHAPE} (postgres:// and postgresql+DRIVER:// work too)",
    "API_KEY": "such a key (`python -c 'import secrets; print(secrets.token_hex(32))'` prints one)",
}
#: What unsetting a variable without a default means.
_UNSET = {"API_KEY": "or unset it (every write is then refused)"}


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per bad variable: `error: VARIABLE='value' is invalid: rule. Fix: ...`."""
    lines: list[str] = []
    seen: set[str] = set()
    for error in exc.errors(include_url=False):
        variable, info = _variable(error["loc"])
        if variable in seen:  # a union reports each of its branches
            continue
        seen.add(variable)
        lines.append(_describe(variable, info, error) if variable else _model_error(error))
    return lines


def _variable(loc: tuple[int | str, ...]) -> tuple[str, FieldInfo | None]:
    """The environment variable (as the user types it) and its field, from an error's loc.

    A nested setting's loc is `("WEIGHTS", "proximity_weight")`: the variable is
    `WEIGHTS__PROXIMITY_WEIGHT` (`env_nested_delimiter`).
    """
    if not loc:
        return "", None
    top = str(loc[0]).upper()
    aliases = {str(f.validation_alias).upper(): f for f in Settings.model_fields.values()}
    info = aliases.get(top)
    nested = _model_class(info)
    if nested is not None and len(loc) > 1 and str(loc[1]) in nested.model_fields:
        return f"{top}__{str(loc[1]).upper()}", nested.model_fields[str(loc[1])]
    return top, info


def _model_class(info: FieldInfo | None) -> Any:
    """The pydantic model a field holds (`Weights`), or None."""
    annotation = info.annotation if info is not None else None
    return (
        annotation if isinstance(annotation, type) and hasattr(annotation, "model_fields") else None
    )


def _describe(variable: str, info: FieldInfo | None, error: Any) -> str:
    shown = variable if variable in SECRET_VARIABLES else f"{variable}={_show(error.get('input'))}"
    if error["type"] == "value_error":  # our own validators say what is wrong
        rule = str(error["ctx"]["error"])
    elif info is not None:
        rule = f"must be {_requirement(variable, info)}"
    else:
        rule = f"is refused ({error['msg']})"
    if info is None:
        return f"error: {shown} is invalid: it {rule}."
    fix = f"set {variable} to {_FIXES.get(variable, 'such a value')}, {_unset(variable, info)}"
    return f"error: {shown} is invalid: it {rule}. Fix: {fix}."


def _model_error(error: Any) -> str:
    """A rule across settings (ENVIRONMENT=production needs API_KEY): its own words."""
    message = str(error["ctx"]["error"]) if "ctx" in error else str(error["msg"])
    return f"error: {message}."


def _unparsable(message: str) -> str:
    """pydantic-settings' `error parsing value for field "weights" ...` as our line."""
    match = re.search(r'field "(\w+)"', message)
    info = Settings.model_fields.get(match.group(1)) if match else None
    if info is None or info.validation_alias is None:
        return f"error: {message}. Fix: correct that variable's value, or unset it."
    variable = str(info.validation_alias).upper()
    return (
        f"error: {variable} is invalid: it must be a JSON object. Fix: set {variable} to"
        f' JSON such as {{"name": 1.0}}, or use {variable}__<NAME>=<value> variables instead.'
    )


def _show(value: Any) -> str:
    """A value as typed (quoted when a string), cut at 60 characters."""
    if not isinstance(value, str):
        return repr(value)[:60]
    return repr(value if len(value) <= 60 else f"{value[:57]}...")


def _unset(variable: str, info: FieldInfo) -> str:
    if variable in _UNSET:
        return _UNSET[variable]
    default = info.get_default(call_default_factory=True)
    if default is None or _model_class(info) is not None:
        return "or unset it"
    return f"or unset it to use the default ({_plain(default)})"


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_KINDS: dict[Any, str] = {
    int: "a whole number",
    float: "a number",
    Path: "a file path",
    SecretStr: "a secret",
}


def _requirement(variable: str, info: FieldInfo) -> str:
    """What the variable must hold, from its type and its constraints."""
    annotation = info.annotation
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    if _model_class(info) is not None:
        return f"set through {variable}__<NAME>=<number> variables"
    # `SecretStr | None` and the like: the type that is not None.
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = options[0] if len(options) == 1 else annotation
    if base is bool:
        return "true or false"
    kind = _KINDS.get(base, "a text")
    low = high = None
    for rule in info.metadata:
        if isinstance(rule, annotated_types.Ge):
            low = f"{_plain(rule.ge)}"
        elif isinstance(rule, annotated_types.Gt):
            low = f"greater than {_plain(rule.gt)}"
        elif isinstance(rule, annotated_types.Le):
            high = _plain(rule.le)
        elif isinstance(rule, annotated_types.MinLen):
            return f"{kind} of at least {rule.min_length} characters"
    if low is not None and high is not None and not low.startswith("greater"):
        return f"{kind} from {low} to {high}"
    if low is not None:
        return f"{kind} {low}" if low.startswith("greater") else f"{kind} of at least {low}"
    if high is not None:
        return f"{kind} of at most {high}"
    return kind

"""A bad setting ends every command with exit status 2 and one clear line on stderr.

The line names the environment variable as the user types it, the rule and the fix;
no traceback, and never a secret's value. The commands run for real, as
subprocesses, in an empty directory (no `.env`) with only the bad variable set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Settings, load_settings
from app.settings_errors import describe_errors

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hunter2-hunter2"  # a password in a URL, or a too-short key: never printed

#: (variable, bad value): the cases every command must report the same way.
BAD = [
    ("API_KEY", "short-key"),
    ("DB_POOL_SIZE", "-1"),
    ("DATABASE_URL", "mysql://x"),
    ("DATABASE_URL", f"postgresql://u:{SECRET}@h:notaport/db"),
    ("PORT", "abc"),
    ("WEIGHTS__PROXIMITY_WEIGHT", "-1"),
    ("REDIS_URL", f"http://u:{SECRET}@cache:6379/0"),
    ("DATABASE_REPLICA_URLS", f"postgresql://u:{SECRET}@h:5432/db,mysql://u:{SECRET}@h/db"),
    ("FEATURE_CACHE_ENTRIES", "0"),
]


def _clean_environment() -> dict[str, str]:
    """The test's environment without any setting (nor a `.env` to read: cwd is empty)."""
    names = {str(f.validation_alias).upper() for f in Settings.model_fields.values()}
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in names and not k.upper().startswith("WEIGHTS__")
    }
    env["PYTHONPATH"] = str(ROOT)
    return env


def _run(args: list[str], cwd: Path, **bad: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**_clean_environment(), **bad},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_one_clear_line(done: subprocess.CompletedProcess[str], variable: str) -> str:
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert variable in lines[0]
    assert "Traceback" not in done.stderr
    assert "Fix:" in lines[0]
    return lines[0]


@pytest.mark.slow  # a subprocess each (about a second): `make test` runs them, test-fast not
@pytest.mark.parametrize(("variable", "value"), BAD, ids=[f"{v}={x}" for v, x in BAD])
@pytest.mark.parametrize(
    "command", [["-m", "app"], ["-m", "seed", "generate"]], ids=["app", "seed"]
)
def test_a_bad_setting_is_one_line_and_exit_2(
    command: list[str], variable: str, value: str, tmp_path: Path
) -> None:
    line = _assert_one_clear_line(_run(command, tmp_path, **{variable: value}), variable)
    if variable in ("API_KEY", "DATABASE_URL", "DATABASE_REPLICA_URLS", "REDIS_URL"):
        assert value not in line
        assert SECRET not in line


@pytest.mark.slow  # a subprocess
def test_ml_train_reports_a_bad_setting_the_same_way(tmp_path: Path) -> None:
    done = _run(["-m", "ml", "train"], tmp_path, API_KEY="short-key")
    assert "short-key" not in _assert_one_clear_line(done, "API_KEY")


@pytest.mark.slow  # alembic imports the models (SQLAlchemy, GeoAlchemy2) first
def test_alembic_reports_a_bad_setting_the_same_way(tmp_path: Path) -> None:
    ini = tmp_path / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = {ROOT / 'migrations'}\n")
    done = _run(["-m", "alembic", "-c", str(ini), "upgrade", "head"], tmp_path, DB_POOL_SIZE="-1")
    _assert_one_clear_line(done, "DB_POOL_SIZE")


def test_several_bad_settings_give_one_line_each(tmp_path: Path) -> None:
    done = _run(["-m", "app"], tmp_path, PORT="abc", DB_POOL_SIZE="0", LOG_FORMAT="xml")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 3
    assert [line.split("=")[0].removeprefix("error: ") for line in lines] == [
        "PORT",
        "DB_POOL_SIZE",
        "LOG_FORMAT",
    ]


def _lines(**values: object) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **values)  # type: ignore[arg-type]
    return describe_errors(caught.value, Settings)


def test_the_line_names_the_rule_and_the_fix() -> None:
    assert _lines(DB_POOL_SIZE="-1") == [
        "error: DB_POOL_SIZE='-1' is invalid: it must be a whole number of at least 1."
        " Fix: set DB_POOL_SIZE to such a value, or unset it to use the default (10)."
    ]
    assert _lines(PORT="abc") == [
        "error: PORT='abc' is invalid: it must be a whole number from 1 to 65535."
        " Fix: set PORT to such a value, or unset it to use the default (8000)."
    ]
    assert _lines(WEIGHTS={"proximity_weight": -1}) == [
        "error: WEIGHTS__PROXIMITY_WEIGHT=-1 is invalid: it must be a number of at least 0."
        " Fix: set WEIGHTS__PROXIMITY_WEIGHT to such a value, or unset it to use the"
        " default (1.5)."
    ]
    (line,) = _lines(API_KEY="short-key")
    assert line.startswith("error: API_KEY is invalid: it must be a secret of at least 16")
    assert "short-key" not in line


def test_the_transport_settings_say_what_they_want() -> None:
    assert _lines(TRUSTED_PROXIES="10.0.0.1,proxy.internal") == [
        "error: TRUSTED_PROXIES='10.0.0.1,proxy.internal' is invalid: it must be a"
        " comma-separated list of IP addresses or CIDR networks, and 'proxy.internal' is"
        " neither. Fix: set TRUSTED_PROXIES to a list like 10.0.0.5,10.1.0.0/16, or unset it"
        " (no proxy is trusted)."
    ]
    (line,) = _lines(REQUEST_HEAD_TIMEOUT="0")
    assert line.startswith("error: REQUEST_HEAD_TIMEOUT='0' is invalid: it must be a number")
    assert line.endswith("or unset it to use the default (10.0).")
    (line,) = _lines(MAX_CONNECTIONS="many")
    assert line.startswith("error: MAX_CONNECTIONS='many' is invalid: it must be a whole number")
    assert Settings(_env_file=None, TRUSTED_PROXIES="10.0.0.1, 10.1.0.0/16").trusted_proxies == (
        "10.0.0.1/32",
        "10.1.0.0/16",
    )
    assert Settings(_env_file=None).trusted_proxies == ()


def test_production_without_a_key_says_what_to_set() -> None:
    assert _lines(ENVIRONMENT="production") == [
        "error: ENVIRONMENT=production needs API_KEY (16 characters or more):"
        " set API_KEY, or ENVIRONMENT=development."
    ]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://x", "got scheme 'mysql'"),
        ("sqlite:///x.db", "got scheme 'sqlite'"),
        ("no-scheme-at-all", "got no scheme"),
        ("postgresql://u@h:notaport/db", "port is a number 1..65535"),
        ("postgresql://u@h:0/db", "port is a number 1..65535"),
        ("postgresql://u@h:70000/db", "port is a number 1..65535"),
        ("postgresql://u@h1:5432,h2:x/db", "port is a number 1..65535"),
        ("postgresql://u@h:5432", "database name"),
        ("postgresql://u@h:5432/", "database name"),
    ],
)
def test_a_malformed_database_url_is_refused_with_the_reason(url: str, reason: str) -> None:
    (line,) = _lines(DATABASE_URL=url)
    assert line.startswith("error: DATABASE_URL is invalid: it must be a postgresql:// URL")
    assert reason in line
    assert url not in line


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@h:5432/d",
        "postgres://h/d",
        "postgresql+asyncpg://u@[::1]:5432/d",
        "postgresql://u@h1:5432,h2:5433/d",
        "postgresql:///d?host=/var/run/postgresql",
    ],
)
def test_valid_database_urls_pass(url: str) -> None:
    assert Settings(_env_file=None, DATABASE_URL=url).database_url.startswith("postgresql://")


def test_load_settings_exits_2_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(Path(__file__).parent)  # no .env here
    monkeypatch.setenv("DB_POOL_SIZE", "-1")
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    assert stopped.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1

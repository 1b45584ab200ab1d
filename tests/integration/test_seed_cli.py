"""`python -m seed` as people run it: exit codes, messages, and --if-empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.db import ROOT, fetch, run_sql


def seed(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "seed", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def counts(url: str) -> tuple[int, int, int]:
    row = fetch(
        url,
        "SELECT (SELECT count(*) FROM users) u, (SELECT count(*) FROM streams) s,"
        " (SELECT count(*) FROM interactions) i",
    )[0]
    return row["u"], row["s"], row["i"]


def test_generate_loads_then_if_empty_leaves_the_data_alone(db_url: str) -> None:
    first = seed(db_url, "generate", "--users", "120", "--streams", "60", "--impressions", "900")
    assert first.returncode == 0, first.stderr
    assert "[load] loaded users 120, streams 60, interactions 900" in first.stderr
    assert counts(db_url) == (120, 60, 900)
    again = seed(db_url, "generate", "--users", "5", "--streams", "5", "--if-empty")
    assert again.returncode == 0, again.stderr
    assert "already has data" in again.stderr
    assert counts(db_url) == (120, 60, 900)


def test_import_refuses_a_bad_file_with_row_numbers_and_exit_1(db_url: str, tmp_path: Path) -> None:
    assert seed(db_url, "generate", "--users", "10", "--streams", "10").returncode == 0
    users = tmp_path / "users.csv"
    users.write_text(
        "user_id,city,latitude,longitude,language,timezone_offset,total_watch_hours,"
        "local_preference_strength,preferred_categories\n"
        "u1,Paris,48.8,2.3,fr,1,3,0.5,gaming|music\n"
        "u2,Paris,123,2.3,fr,1,3,0.5,gaming\n"
    )
    streams = tmp_path / "streams.csv"
    streams.write_text(
        "stream_id,creator_id,city,latitude,longitude,language,category_id,title,description,"
        "avg_viewer_count,creator_followers,stream_quality_score,is_partnered,mature_content,tags\n"
        "s1,c1,Paris,48.9,2.4,fr,gaming,t,d,10,20,5.5,false,false,a|b\n"
    )
    result = seed(db_url, "import", "--users", str(users), "--streams", str(streams))
    assert result.returncode == 1
    assert "nothing was loaded" in result.stderr
    assert "row 2 (line 3), column latitude" in result.stderr
    assert counts(db_url)[:2] == (10, 10)
    skipped = seed(
        db_url, "import", "--users", str(users), "--streams", str(streams), "--skip-invalid"
    )
    assert skipped.returncode == 0, skipped.stderr
    assert counts(db_url) == (1, 1, 0)


def test_a_missing_schema_is_one_clear_line(database_url: str) -> None:
    # A second database on the same server that nobody migrated.
    run_sql(database_url, "DROP DATABASE IF EXISTS hometown_empty")
    run_sql(database_url, "CREATE DATABASE hometown_empty")
    empty = database_url.rsplit("/", 1)[0] + "/hometown_empty"
    result = seed(empty, "generate", "--users", "3", "--streams", "3")
    assert result.returncode == 1
    assert "run `alembic upgrade head` first" in result.stderr
    assert "Traceback" not in result.stderr


USERS_HEADER = (
    "user_id,city,latitude,longitude,language,timezone_offset,total_watch_hours,"
    "local_preference_strength,preferred_categories\n"
)
STREAMS_HEADER = (
    "stream_id,creator_id,city,latitude,longitude,language,category_id,title,description,"
    "avg_viewer_count,creator_followers,stream_quality_score,is_partnered,mature_content,tags\n"
)


def test_import_refuses_header_only_files_unless_allow_empty(db_url: str, tmp_path: Path) -> None:
    assert seed(db_url, "generate", "--users", "10", "--streams", "10").returncode == 0
    before = counts(db_url)
    users = tmp_path / "users.csv"
    users.write_text(USERS_HEADER)
    streams = tmp_path / "streams.csv"
    streams.write_text(
        STREAMS_HEADER + "s1,c1,Paris,48.9,2.4,fr,gaming,t,d,10,20,5.5,false,false,\n"
    )
    interactions = tmp_path / "interactions.csv"
    interactions.write_text(
        "user_id,stream_id,clicked,watch_time_minutes,impression_timestamp,device_type,"
        "page_position,session_id\n"
    )
    result = seed(db_url, "import", "--users", str(users), "--streams", str(streams))
    assert result.returncode == 1
    assert "nothing was loaded" in result.stderr
    assert f"{users}: has no data rows, only a header" in result.stderr
    assert "--allow-empty" in result.stderr
    assert counts(db_url) == before

    # Skipping every row leaves nothing either: refused the same way.
    users.write_text(USERS_HEADER + "u1,Paris,123,2.3,fr,1,3,0.5,gaming\n")
    skipped = seed(
        db_url, "import", "--users", str(users), "--streams", str(streams), "--skip-invalid"
    )
    assert skipped.returncode == 1
    assert f"{users}: has no valid rows left (all 1 are invalid)" in skipped.stderr
    assert counts(db_url) == before

    users.write_text(USERS_HEADER)
    streams.write_text(STREAMS_HEADER)
    emptied = seed(
        db_url,
        "import",
        "--users",
        str(users),
        "--streams",
        str(streams),
        "--interactions",
        str(interactions),
        "--allow-empty",
    )
    assert emptied.returncode == 0, emptied.stderr
    assert counts(db_url) == (0, 0, 0)

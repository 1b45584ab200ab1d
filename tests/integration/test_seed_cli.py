"""`python -m seed` as people run it: exit codes, messages, and --if-empty."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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


#: Runs `python -m seed import` under a limit on its address space: after a first
#: import (of a small bad file) has loaded every library and started pyarrow's
#: threads, the process may grow by `budget` bytes more.
BOUNDED_IMPORT = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from seed.__main__ import main
    from seed.importer import InvalidDataError, read_dataset

    users, streams, small, budget = sys.argv[1:]
    try:
        read_dataset(Path(users), Path(small))
    except InvalidDataError:
        pass
    peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmPeak"))
    limit = peak * 1024 + int(budget)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.exit(main(["import", "--users", users, "--streams", streams]))
    """
)


def empty_rows(path: Path, rows: int) -> Path:
    """A streams file of `rows` rows whose every cell is empty: 13 problems a row."""
    with path.open("w") as handle:
        handle.write(STREAMS_HEADER)
        block = "," * (STREAMS_HEADER.count(",")) + "\n"
        for _ in range(rows // 100_000):
            handle.write(block * 100_000)
        handle.write(block * (rows % 100_000))
    return path


@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads VmPeak from /proc (Linux)"
)
def test_a_million_rows_of_empty_cells_are_refused_in_bounded_memory(
    db_url: str, tmp_path: Path
) -> None:
    # The old importer kept a Problem and a message per bad cell, 13 million of them
    # here: over 4 GB, and 23.5 GB for ten million rows. Now it keeps DETAIL_LIMIT
    # and counts the rest, and the whole refusal needs well under 768 MiB more than
    # a small one (about 150 MiB on the 2-core machine of BENCHMARKS.md).
    assert seed(db_url, "generate", "--users", "10", "--streams", "10").returncode == 0
    before = counts(db_url)
    users = tmp_path / "users.csv"
    users.write_text(USERS_HEADER + "u1,Paris,48.8,2.3,fr,1,3,0.5,gaming|music\n")
    streams = empty_rows(tmp_path / "streams.csv", 1_000_000)
    small = empty_rows(tmp_path / "small.csv", 10)
    env = {**os.environ, "DATABASE_URL": db_url, "MALLOC_ARENA_MAX": "2"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            BOUNDED_IMPORT,
            str(users),
            str(streams),
            str(small),
            str(768 << 20),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 1
    assert "refused, nothing was loaded" in result.stderr
    assert f"invalid input: 13,000,000 problems in {streams}\n" in result.stderr
    assert f"  ... and {13_000_000 - 50:,} more\n" in result.stderr
    assert f"    {streams}, column stream_id: 1,000,000 x missing (empty or null)" in result.stderr
    assert len(result.stderr.splitlines()) < 100
    assert counts(db_url) == before

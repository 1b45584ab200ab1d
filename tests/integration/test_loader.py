"""The loader replaces the dataset atomically: all of the new one, or the old one intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from seed.loader import Dataset, load
from tests.support import frames
from tests.support.db import ROOT, fetch

DIGEST = """
    SELECT (SELECT md5(string_agg(u::text, '|' ORDER BY user_id)) FROM users u) AS users,
           (SELECT md5(string_agg(s::text, '|' ORDER BY stream_id)) FROM streams s) AS streams,
           (SELECT md5(string_agg(i::text, '|' ORDER BY interaction_id)) FROM interactions i)
             AS interactions
"""


def counts(url: str) -> dict[str, int]:
    row = fetch(
        url,
        "SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM streams) AS streams,"
        " (SELECT count(*) FROM interactions) AS interactions",
    )[0]
    return dict(row)


def test_load_writes_every_row_and_keeps_the_schema(db_url: str) -> None:
    summary = load(db_url, frames.dataset(300, 40))
    assert summary.rows == {"users": 300, "streams": 40, "interactions": 300}
    assert counts(db_url) == summary.rows
    indexes = fetch(
        db_url,
        "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = 'public'"
        " AND tablename IN ('users', 'streams', 'interactions') ORDER BY 1, 2",
    )
    assert [tuple(r) for r in indexes] == [
        ("interactions", "ix_interactions_stream_id"),
        ("interactions", "ix_interactions_user_id_impression_at"),
        ("interactions", "pk_interactions"),
        ("streams", "ix_streams_live_category_id"),
        ("streams", "ix_streams_live_language"),
        ("streams", "ix_streams_live_location"),
        *sorted(("streams", f"ix_streams_live_tier_{n}") for n in range(1, 23)),
        ("streams", "ix_streams_location"),
        ("streams", "pk_streams"),
        ("users", "pk_users"),
    ]
    fks = fetch(db_url, "SELECT conname FROM pg_constraint WHERE contype = 'f' ORDER BY 1")
    assert [r["conname"] for r in fks] == [
        "fk_feed_embeddings_model_version_feed_models",  # untouched by the load
        "fk_interactions_stream_id_streams",
        "fk_interactions_user_id_users",
    ]
    comment = fetch(db_url, "SELECT obj_description('streams'::regclass) AS c")[0]["c"]
    assert comment.startswith("Channels")
    analysed = fetch(db_url, "SELECT reltuples FROM pg_class WHERE relname = 'users'")
    assert analysed[0]["reltuples"] == 300
    data = frames.dataset(300, 40)
    lats = fetch(db_url, "SELECT latitude FROM users ORDER BY user_id")
    assert [r["latitude"] for r in lats] == list(data.users["latitude"])  # bit-exact floats
    tags = fetch(db_url, "SELECT DISTINCT tags FROM streams")
    assert [r["tags"] for r in tags] == [["a", "b"]]
    leftover = fetch(db_url, "SELECT to_regnamespace('hometown_staging') AS s")
    assert leftover[0]["s"] is None


def test_loading_the_same_data_twice_gives_the_same_database(db_url: str) -> None:
    load(db_url, frames.dataset(50, 10))
    first = fetch(db_url, DIGEST)[0]
    load(db_url, frames.dataset(50, 10))
    assert fetch(db_url, DIGEST)[0] == first


def test_a_load_replaces_the_previous_dataset(db_url: str) -> None:
    load(db_url, frames.dataset(50, 10, prefix="old_"))
    load(db_url, frames.dataset(7, 3, prefix="new_"))
    assert counts(db_url) == {"users": 7, "streams": 3, "interactions": 7}
    ids = fetch(db_url, "SELECT DISTINCT left(user_id, 4) AS p FROM users")
    assert [r["p"] for r in ids] == ["new_"]


def test_a_failing_load_leaves_the_old_data_untouched(db_url: str) -> None:
    load(db_url, frames.dataset(50, 10))
    before = fetch(db_url, DIGEST)[0]
    bad = frames.dataset(20, 5, prefix="bad_")
    bad.streams.loc[3, "stream_quality_score"] = 11.0  # the CHECK refuses it mid-COPY
    with pytest.raises(Exception, match="ck_streams_quality_range"):
        load(db_url, bad)
    assert fetch(db_url, DIGEST)[0] == before
    dangling = frames.dataset(20, 5, prefix="bad_")
    dangling.interactions.loc[0, "stream_id"] = "no_such_stream"  # the FK refuses it
    with pytest.raises(Exception, match="fk_interactions_stream_id_streams"):
        load(db_url, dangling)
    assert fetch(db_url, DIGEST)[0] == before


SLOW_LOAD = textwrap.dedent(
    """
    import sys, time
    from seed.loader import Dataset, load
    from tests.support import frames

    def endless():
        # Keeps the COPY of interactions open until the process is killed.
        big = frames.dataset(1000, 10, prefix="new_")
        while True:
            yield big.interactions
            time.sleep(0.05)

    data = frames.dataset(1000, 10, prefix="new_")
    load(sys.argv[1], Dataset(data.users, data.streams, endless()))
    """
)


def test_a_killed_load_leaves_the_old_data_untouched(db_url: str, tmp_path: Path) -> None:
    load(db_url, frames.dataset(50, 10, prefix="old_"))
    before = fetch(db_url, DIGEST)[0]
    script = tmp_path / "slow_load.py"
    script.write_text(SLOW_LOAD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), db_url], cwd=ROOT, env=env, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        # Wait until the loader is well inside its work: users staged, interactions copying.
        while "users: 1,000 rows copied" not in (
            proc.stderr.peek().decode() if proc.stderr else ""
        ):
            assert proc.poll() is None, "the slow load ended by itself"
            assert time.monotonic() < deadline, "the slow load never got going"
            time.sleep(0.2)
        time.sleep(1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert fetch(db_url, DIGEST)[0] == before
    # The next load clears what the killed one left behind and succeeds.
    load(db_url, frames.dataset(5, 2, prefix="next_"))
    assert counts(db_url) == {"users": 5, "streams": 2, "interactions": 5}


def test_an_empty_dataset_loads(db_url: str) -> None:
    load(db_url, frames.dataset(10, 2))
    load(db_url, Dataset(frames.users(0), frames.streams(0)))
    assert counts(db_url) == {"users": 0, "streams": 0, "interactions": 0}

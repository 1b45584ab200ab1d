"""Generated data goes through the real loader into PostGIS; one seed always loads the same rows."""

from __future__ import annotations

from seed.generate import generate
from seed.loader import load
from tests.support.db import fetch

SIZES = {"users": 400, "streams": 250, "interactions": 6_000}
# Every column of every row, in a fixed order: equal digests mean equal tables.
DIGEST_SQL = {
    "users": "SELECT md5(string_agg(t::text, ',' ORDER BY t.user_id)) AS d FROM users t",
    "streams": "SELECT md5(string_agg(t::text, ',' ORDER BY t.stream_id)) AS d FROM streams t",
    "interactions": (
        "SELECT md5(string_agg(t::text, ',' ORDER BY t.interaction_id)) AS d FROM interactions t"
    ),
}


def _load(url: str, seed: int) -> None:
    dataset = generate(
        SIZES["users"], SIZES["streams"], SIZES["interactions"], seed=seed, chunk_rows=2_500
    )
    load(url, dataset)


def _digests(url: str) -> dict[str, str]:
    return {table: fetch(url, sql)[0]["d"] for table, sql in DIGEST_SQL.items()}


def test_generated_dataset_loads(db_url: str) -> None:
    _load(db_url, seed=11)
    counts = {table: fetch(db_url, f"SELECT count(*) AS n FROM {table}")[0]["n"] for table in SIZES}
    assert counts == SIZES
    [row] = fetch(
        db_url,
        """
        SELECT
          (SELECT count(*) FROM streams WHERE NOT is_live AND live_since IS NULL
             AND current_viewer_count = 0) AS offline_ok,
          (SELECT count(*) FROM streams WHERE NOT is_live) AS offline,
          (SELECT min(array_length(preferred_categories, 1)) FROM users) AS fewest,
          (SELECT max(array_length(preferred_categories, 1)) FROM users) AS most,
          (SELECT count(*) FROM interactions WHERE clicked <> (watch_time_minutes > 0)) AS bad,
          (SELECT count(*) FROM users WHERE city = 'São Paulo' AND ST_Y(location::geometry) > 0)
            AS north_paulistas
        """,
    )
    assert row["offline_ok"] == row["offline"] > 0
    assert (row["fewest"], row["most"]) == (2, 5)
    assert row["bad"] == 0
    assert row["north_paulistas"] == 0


def test_same_seed_loads_identical_content(db_url: str) -> None:
    _load(db_url, seed=5)
    first = _digests(db_url)
    _load(db_url, seed=5)
    assert _digests(db_url) == first
    _load(db_url, seed=6)
    other = _digests(db_url)
    assert all(other[table] != first[table] for table in SIZES)

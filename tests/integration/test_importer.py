"""The file importer against a real PostGIS: good files load, bad files are refused.

Every file is written by the test itself into `tmp_path`. Refusal tests first load
a good dataset, then attempt the bad import the way the CLI does (read, then load)
and check that the database still holds exactly the first dataset.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seed.importer import (
    DEFAULT_DURATION_MINUTES,
    DETAIL_LIMIT,
    InvalidDataError,
    Problem,
    read_dataset,
)
from seed.loader import load
from tests.support.db import fetch

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

USERS: list[dict[str, Any]] = [
    {
        "user_id": "u1",
        "city": "Paris",
        "latitude": 48.8566,
        "longitude": 2.3522,
        "language": "fr",
        "timezone_offset": 1,
        "total_watch_hours": 120.5,
        "local_preference_strength": 0.8,
        "preferred_categories": ["gaming", "music"],
        "registration_date": "2023-01-15T10:00:00",
    },
    {
        "user_id": "u2",
        "city": "São Paulo",
        "latitude": -23.5505,
        "longitude": -46.6333,
        "language": "pt",
        "timezone_offset": -3,
        "total_watch_hours": 0,
        "local_preference_strength": 0,
        "preferred_categories": [],
        "registration_date": None,
    },
    {
        "user_id": "u3",
        "city": "Delhi",
        "latitude": 28.6139,
        "longitude": 77.209,
        "language": "hi",
        "timezone_offset": 5.5,
        "total_watch_hours": 3.25,
        "local_preference_strength": 1,
        "preferred_categories": ["irl", "just chatting"],
        "registration_date": "2024-06-01T08:30:00+05:30",
    },
]
STREAMS: list[dict[str, Any]] = [
    {
        "stream_id": "s1",
        "creator_id": "c1",
        "city": "Paris",
        "latitude": 48.86,
        "longitude": 2.34,
        "language": "fr",
        "category_id": "gaming",
        "title": "Speedruns, live",
        "description": 'Two lines:\nand "quotes", commas',
        "avg_viewer_count": 150,
        "creator_followers": 12000,
        "stream_quality_score": 7.5,
        "is_partnered": True,
        "mature_content": False,
        "tags": ["fps", "français"],
    },
    {
        "stream_id": "s2",
        "creator_id": "c2",
        "city": "São Paulo",
        "latitude": -23.56,
        "longitude": -46.64,
        "language": "pt",
        "category_id": "music",
        "title": "Samba",
        "description": "",
        "avg_viewer_count": 0,
        "creator_followers": 0,
        "stream_quality_score": 0,
        "is_partnered": False,
        "mature_content": True,
        "tags": [],
    },
    {
        "stream_id": "s3",
        "creator_id": "c1",
        "city": "Delhi",
        "latitude": 28.6,
        "longitude": 77.2,
        "language": "hi",
        "category_id": "irl",
        "title": "Street food",
        "description": "Chaat",
        "avg_viewer_count": 42,
        "creator_followers": 9001,
        "stream_quality_score": 10,
        "is_partnered": False,
        "mature_content": False,
        "tags": ["food", "a,b"],
    },
]
INTERACTIONS: list[dict[str, Any]] = [
    {
        "user_id": "u1",
        "stream_id": "s1",
        "clicked": True,
        "watch_time_minutes": 35.5,
        "impression_timestamp": "2026-02-01T20:15:00Z",
        "device_type": "mobile",
        "page_position": 1,
        "session_id": "sess-1",
    },
    {
        "user_id": "u1",
        "stream_id": "s2",
        "clicked": False,
        "watch_time_minutes": 0,
        "impression_timestamp": "2026-02-01T20:15:00",
        "device_type": "mobile",
        "page_position": 2,
        "session_id": "sess-1",
    },
    {
        "user_id": "u2",
        "stream_id": "s2",
        "clicked": True,
        "watch_time_minutes": 0,
        "impression_timestamp": "2026-02-02T09:00:00-03:00",
        "device_type": "tv",
        "page_position": 5,
        "session_id": "sess-2",
    },
    {
        "user_id": "u3",
        "stream_id": "s3",
        "clicked": False,
        "watch_time_minutes": 0,
        "impression_timestamp": "2026-02-03T12:00:00+05:30",
        "device_type": "desktop",
        "page_position": 3,
        "session_id": "sess-3",
    },
]
Rows = dict[str, list[dict[str, Any]]]
KINDS = ("users", "streams", "interactions")


def good_rows() -> Rows:
    return copy.deepcopy({"users": USERS, "streams": STREAMS, "interactions": INTERACTIONS})


# Every list notation the CSV reader accepts, used in turn down the rows.
LIST_STYLES: list[Callable[[list[str]], str]] = [
    lambda items: json.dumps(items, ensure_ascii=False),
    lambda items: repr(items),
    lambda items: "{" + ",".join('"' + item + '"' for item in items) + "}",
    lambda items: "|".join(items) if "," not in "".join(items) else json.dumps(items),
]
BOOL_WORDS = [("true", "false"), ("1", "0"), ("YES", "no"), ("True", "FALSE")]


def write_csv(path: Path, rows: list[dict[str, Any]], *, extra: bool = True) -> Path:
    """Rows as CSV the way a spreadsheet or another tool might write them."""
    out = []
    for index, row in enumerate(rows):
        text = {}
        for name, value in row.items():
            if isinstance(value, list):
                text[name] = LIST_STYLES[index % len(LIST_STYLES)](value)
            elif isinstance(value, bool):
                text[name] = BOOL_WORDS[index % len(BOOL_WORDS)][0 if value else 1]
            elif value is None:
                text[name] = ""
            else:
                text[name] = str(value)
        if extra:
            text["notes"] = "ignored, extra column"
        out.append(text)
    pd.DataFrame(out).to_csv(path, index=False)
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows as parquet with native types: lists, booleans, timestamps."""
    frame = pd.DataFrame(rows)
    for name in frame.columns:  # a column with a stray word in it is written as text
        if frame[name].map(lambda value: isinstance(value, str)).any():
            frame[name] = frame[name].map(lambda value: None if value is None else str(value))
    for name in ("registration_date", "impression_timestamp"):
        if name in frame:
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def write_set(
    folder: Path, rows: Rows, fmt: str = "csv", kinds: tuple[str, ...] = KINDS
) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind in kinds:
        path = folder / f"{kind}.{fmt}"
        if fmt == "parquet":
            paths[kind] = write_parquet(path, rows[kind])
        else:
            paths[kind] = write_csv(path, rows[kind])
    return paths


def import_files(url: str, paths: dict[str, Path], **options: Any) -> Any:
    """What `python -m seed import` does: read and validate, then load."""
    dataset, report = read_dataset(
        paths["users"], paths["streams"], paths.get("interactions"), now=NOW, **options
    )
    load(url, dataset)
    return report


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "users": [tuple(r) for r in fetch(url, "SELECT * FROM users ORDER BY user_id")],
        "streams": [tuple(r) for r in fetch(url, "SELECT * FROM streams ORDER BY stream_id")],
        "interactions": [
            tuple(r)
            for r in fetch(
                url,
                "SELECT user_id, stream_id, impression_at, clicked, watch_time_minutes,"
                " device_type, page_position, session_id FROM interactions"
                " ORDER BY user_id, stream_id",
            )
        ],
    }


def counts(url: str) -> dict[str, int]:
    return {kind: fetch(url, f"SELECT count(*) FROM {kind}")[0][0] for kind in KINDS}


# --- good files --------------------------------------------------------------------------


def test_csv_set_loads_with_defaults_for_missing_columns(db_url: str, tmp_path: Path) -> None:
    paths = write_set(tmp_path, good_rows())

    report = import_files(db_url, paths)

    assert counts(db_url) == {"users": 3, "streams": 3, "interactions": 4}
    assert report.rows_read == report.rows_kept == {"users": 3, "streams": 3, "interactions": 4}
    assert report.skipped == []
    users = {
        r["user_id"]: r
        for r in fetch(
            db_url,
            "SELECT *, ST_X(location::geometry) AS x, ST_Y(location::geometry) AS y FROM users",
        )
    }
    assert (users["u2"]["x"], users["u2"]["y"]) == (-46.6333, -23.5505)
    assert users["u1"]["preferred_categories"] == ["gaming", "music"]
    assert users["u2"]["preferred_categories"] == []
    assert users["u3"]["preferred_categories"] == ["irl", "just chatting"]
    assert users["u2"]["city"] == "São Paulo"
    assert users["u3"]["timezone_offset"] == 5.5
    assert users["u1"]["registration_date"] == datetime(2023, 1, 15, 10, tzinfo=UTC)
    assert users["u2"]["registration_date"] is None
    assert users["u3"]["registration_date"] == datetime(2024, 6, 1, 3, tzinfo=UTC)

    streams = {
        r["stream_id"]: r
        for r in fetch(db_url, "SELECT *, ST_X(location::geometry) AS x FROM streams")
    }
    s1, s2, s3 = streams["s1"], streams["s2"], streams["s3"]
    assert s1["x"] == 2.34
    assert s1["description"] == 'Two lines:\nand "quotes", commas'
    assert s2["description"] == ""
    assert (s1["tags"], s2["tags"], s3["tags"]) == (["fps", "français"], [], ["food", "a,b"])
    assert (s1["is_partnered"], s1["mature_content"]) == (True, False)
    assert (s2["is_partnered"], s2["mature_content"]) == (False, True)
    # No is_live or typical_duration_minutes column: every stream is live, 120 minutes long.
    for stream in streams.values():
        assert stream["is_live"] is True
        assert stream["live_since"] == NOW
        assert stream["updated_at"] == NOW
        assert stream["typical_duration_minutes"] == DEFAULT_DURATION_MINUTES
        assert stream["current_viewer_count"] == stream["avg_viewer_count"]

    rows = fetch(db_url, "SELECT * FROM interactions ORDER BY impression_at, user_id, stream_id")
    assert [(r["user_id"], r["stream_id"]) for r in rows] == [
        ("u1", "s1"),
        ("u1", "s2"),
        ("u2", "s2"),
        ("u3", "s3"),
    ]
    assert rows[0]["impression_at"] == datetime(2026, 2, 1, 20, 15, tzinfo=UTC)
    assert rows[1]["impression_at"] == datetime(2026, 2, 1, 20, 15, tzinfo=UTC)  # naive: UTC
    assert rows[2]["impression_at"] == datetime(2026, 2, 2, 12, tzinfo=UTC)
    assert rows[3]["impression_at"] == datetime(2026, 2, 3, 6, 30, tzinfo=UTC)
    assert [r["clicked"] for r in rows] == [True, False, True, False]
    assert [r["page_position"] for r in rows] == [1, 2, 5, 3]
    assert rows[0]["watch_time_minutes"] == 35.5


def test_parquet_set_loads_with_live_state(db_url: str, tmp_path: Path) -> None:
    rows = good_rows()
    rows["streams"][0]["is_live"] = True
    rows["streams"][1]["is_live"] = False
    rows["streams"][2]["is_live"] = None  # unknown: imported as live
    for stream, minutes in zip(rows["streams"], (90, 45, None), strict=True):
        stream["typical_duration_minutes"] = minutes
    paths = write_set(tmp_path, rows, "parquet")

    report = import_files(db_url, paths)

    assert report.rows_kept == {"users": 3, "streams": 3, "interactions": 4}
    streams = {
        r["stream_id"]: r
        for r in fetch(db_url, "SELECT *, ST_Y(location::geometry) AS y FROM streams")
    }
    assert streams["s2"]["y"] == -23.56
    assert streams["s1"]["tags"] == ["fps", "français"]
    live = {
        key: (r["is_live"], r["live_since"], r["current_viewer_count"])
        for key, r in streams.items()
    }
    assert live == {"s1": (True, NOW, 150), "s2": (False, None, 0), "s3": (True, NOW, 42)}
    assert [streams[k]["typical_duration_minutes"] for k in ("s1", "s2", "s3")] == [90, 45, 120]
    users = {r["user_id"]: r for r in fetch(db_url, "SELECT * FROM users")}
    assert users["u3"]["preferred_categories"] == ["irl", "just chatting"]
    assert users["u2"]["registration_date"] is None
    assert fetch(db_url, "SELECT count(*) FROM interactions WHERE clicked")[0][0] == 2


def test_gzipped_csv_and_pq_extension_are_read(db_url: str, tmp_path: Path) -> None:
    rows = good_rows()
    plain = write_set(tmp_path / "plain", rows, kinds=("users",))
    gz = tmp_path / "users.CSV.gz"
    pd.read_csv(plain["users"], dtype=str, keep_default_na=False).to_csv(gz, index=False)
    streams = write_parquet(tmp_path / "streams.pq", rows["streams"])

    import_files(db_url, {"users": gz, "streams": streams})

    assert counts(db_url) == {"users": 3, "streams": 3, "interactions": 0}


def test_interaction_columns_may_use_the_database_names(db_url: str, tmp_path: Path) -> None:
    rows = good_rows()
    for row in rows["interactions"]:
        row["impression_at"] = row.pop("impression_timestamp")

    import_files(db_url, write_set(tmp_path, rows))

    assert counts(db_url)["interactions"] == 4


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_extreme_but_valid_values_are_accepted_by_the_database(
    db_url: str, tmp_path: Path, fmt: str
) -> None:
    """Whatever validation lets through, the schema must take: probe the edges."""
    rows = good_rows()
    long_id = "é" * 200  # the longest id allowed, 400 bytes of UTF-8
    user = rows["users"][0]
    user.update(
        user_id=long_id,
        latitude=-90.0,
        longitude=180.0,
        timezone_offset=-12,
        total_watch_hours=1e308,
        local_preference_strength=5e-324,
        preferred_categories=['a "quoted" tag', "back\\slash", "{braces}", "NULL"],
        registration_date="0001-01-01T00:00:00",
    )
    stream = rows["streams"][0]
    stream.update(
        latitude=90.0,
        longitude=-180.0,
        avg_viewer_count=2**31 - 1,
        creator_followers=2**53,
        stream_quality_score=10,
        tags=["x;y" if fmt == "parquet" else "xy", "🎮"],
        description="tab\there, CRLF\r\nthere",
    )
    for interaction in rows["interactions"]:
        if interaction["user_id"] == "u1":
            interaction["user_id"] = long_id
    rows["interactions"][0].update(
        impression_timestamp="9999-12-31T23:59:59", page_position=2**31 - 1
    )

    import_files(db_url, write_set(tmp_path, rows, fmt))

    stored = fetch(db_url, "SELECT * FROM users WHERE user_id = $1", long_id)[0]
    assert stored["preferred_categories"] == user["preferred_categories"]
    assert stored["total_watch_hours"] == 1e308
    assert stored["registration_date"] == datetime(1, 1, 1, tzinfo=UTC)
    s1 = fetch(db_url, "SELECT * FROM streams WHERE stream_id = 's1'")[0]
    assert (s1["avg_viewer_count"], s1["creator_followers"]) == (2**31 - 1, 2**53)
    assert s1["tags"] == stream["tags"]
    assert s1["description"] == stream["description"]
    assert fetch(db_url, "SELECT max(page_position) FROM interactions")[0][0] == 2**31 - 1


# --- refusals ----------------------------------------------------------------------------


def _set(kind: str, index: int, column: str, value: Any) -> Callable[[Rows], None]:
    def change(rows: Rows) -> None:
        rows[kind][index][column] = value

    return change


def _add(kind: str, row: dict[str, Any]) -> Callable[[Rows], None]:
    def change(rows: Rows) -> None:
        rows[kind].append(row)

    return change


def _drop_column(kind: str, column: str) -> Callable[[Rows], None]:
    def change(rows: Rows) -> None:
        for row in rows[kind]:
            del row[column]

    return change


# (change, expected problems as (kind, row, line, column, words in the reason)).
# Line numbers are CSV lines: s1's description spans two lines, so streams rows after
# the first start one line later than `row + 1`.
REFUSALS = {
    "missing id": (
        _set("users", 1, "user_id", ""),
        [
            ("users", 2, 3, "user_id", "missing (empty or null): a value is required"),
            # Without its id, u2 is not in the file: its interactions point nowhere.
            ("interactions", 3, 4, "user_id", "unknown user_id 'u2'"),
        ],
    ),
    "duplicate id": (
        lambda rows: rows["streams"].extend(
            [{**STREAMS[2], "title": "again"}, {**STREAMS[2], "title": "and again"}]
        ),
        [
            (
                "streams",
                4,
                6,
                "stream_id",
                "duplicate stream_id 's3': first seen at row 3 (line 5)",
            ),
            (
                "streams",
                5,
                7,
                "stream_id",
                "duplicate stream_id 's3': first seen at row 3 (line 5)",
            ),
        ],
    ),
    "latitude out of range": (
        _set("users", 2, "latitude", 90.5),
        [("users", 3, 4, "latitude", "out of range: 90.5 (must be between -90 and 90)")],
    ),
    "longitude out of range": (
        _set("streams", 1, "longitude", -180.01),
        [("streams", 2, 4, "longitude", "out of range: -180.01 (must be between -180 and 180)")],
    ),
    "unknown user": (
        _set("interactions", 2, "user_id", "ghost"),
        [("interactions", 3, 4, "user_id", "unknown user_id 'ghost'")],
    ),
    "unknown stream": (
        _set("interactions", 3, "stream_id", "s404"),
        [("interactions", 4, 5, "stream_id", "unknown stream_id 's404'")],
    ),
    "wrong type": (
        _set("users", 0, "latitude", "abc"),
        [("users", 1, 2, "latitude", "expected a number, got 'abc'")],
    ),
    "quality out of range": (
        _set("streams", 2, "stream_quality_score", 10.5),
        [("streams", 3, 5, "stream_quality_score", "out of range: 10.5")],
    ),
    "not a boolean": (
        _set("streams", 0, "is_partnered", "maybe"),
        [("streams", 1, 2, "is_partnered", "expected true/false, 1/0 or yes/no, got 'maybe'")],
    ),
    "bad timestamp": (
        _set("interactions", 0, "impression_timestamp", "yesterday"),
        [("interactions", 1, 2, "impression_timestamp", "ISO 8601")],
    ),
    "watch time without click": (
        _set("interactions", 1, "watch_time_minutes", 4),
        [("interactions", 2, 3, "watch_time_minutes", "must be 0 when clicked is false")],
    ),
    "fractional page position": (
        _set("interactions", 0, "page_position", 1.5),
        [("interactions", 1, 2, "page_position", "expected a whole number, got 1.5")],
    ),
    "several problems in several files": (
        lambda rows: [
            _set("users", 0, "timezone_offset", 15)(rows),
            _set("users", 0, "local_preference_strength", -0.1)(rows),
            _set("streams", 1, "avg_viewer_count", -1)(rows),
            _set("streams", 2, "tags", "[unclosed")(rows),
            _set("interactions", 3, "page_position", 0)(rows),
        ],
        [
            ("users", 1, 2, "timezone_offset", "between -12 and 14"),
            ("users", 1, 2, "local_preference_strength", "between 0 and 1"),
            ("streams", 2, 4, "avg_viewer_count", "out of range: -1 (must be between 0 and"),
            ("streams", 3, 5, "tags", "expected a list"),
            ("interactions", 4, 5, "page_position", "must be between 1 and"),
        ],
    ),
    "control characters other than tab": (
        lambda rows: [
            _set("users", 0, "city", "Par\x1b[31mis")(rows),
            _set("streams", 0, "title", "an \x1b escape")(rows),
            _set("streams", 1, "city", "new\nline")(rows),
            _set("streams", 1, "description", "bell\x07 in free text")(rows),
            _set("streams", 2, "tags", "a|b\x85c")(rows),
            _set("streams", 2, "description", "tab\tand\r\nline breaks are fine")(rows),
            _set("streams", 2, "title", "a\ttab is fine")(rows),
            _set("interactions", 0, "session_id", "s\x7f")(rows),
        ],
        [
            ("users", 1, 2, "city", "without control characters"),
            ("streams", 1, 2, "title", "without control characters (tab aside)"),
            ("streams", 2, 4, "city", "without control characters (tab aside)"),
            ("streams", 2, 4, "description", "(tab, line breaks aside)"),
            ("streams", 3, 6, "tags", "expected a list"),
            ("interactions", 1, 2, "session_id", "without control characters"),
        ],
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS), ids=list(REFUSALS))
def test_bad_csv_is_refused_with_row_numbers_and_nothing_loads(
    db_url: str, tmp_path: Path, case: str
) -> None:
    import_files(db_url, write_set(tmp_path / "first", good_rows()))
    before = snapshot(db_url)
    change, expected = REFUSALS[case]
    rows = good_rows()
    rows["users"].append({**USERS[0], "user_id": "u4"})  # so a load would differ
    change(rows)
    paths = write_set(tmp_path / "bad", rows)

    with pytest.raises(InvalidDataError) as caught:
        import_files(db_url, paths)

    found = [
        (kind, p.row, p.line, p.column)
        for p in caught.value.problems
        for kind in KINDS
        if p.file == str(paths[kind])
    ]
    assert found == [(kind, row, line, column) for kind, row, line, column, _ in expected]
    for problem, (*_, words) in zip(caught.value.problems, expected, strict=True):
        assert words in problem.reason
        assert words in str(caught.value)
    assert snapshot(db_url) == before


def test_missing_required_columns_are_named(db_url: str, tmp_path: Path) -> None:
    import_files(db_url, write_set(tmp_path / "first", good_rows()))
    before = snapshot(db_url)
    rows = good_rows()
    _drop_column("streams", "city")(rows)
    _drop_column("interactions", "session_id")(rows)
    paths = write_set(tmp_path / "bad", rows)

    with pytest.raises(InvalidDataError) as caught:
        import_files(db_url, paths)

    assert [(p.file, p.row, p.column) for p in caught.value.problems] == [
        (str(paths["streams"]), None, "city"),
        (str(paths["interactions"]), None, "session_id"),
    ]
    assert "required column is missing" in caught.value.problems[0].reason
    assert f"{paths['streams']}, column city: required column is missing" in str(caught.value)
    assert snapshot(db_url) == before


def test_bad_parquet_values_are_refused(db_url: str, tmp_path: Path) -> None:
    import_files(db_url, write_set(tmp_path / "first", good_rows(), "parquet"))
    before = snapshot(db_url)
    rows = good_rows()
    rows["users"][1]["latitude"] = "abc"  # the column becomes text: every value is parsed
    rows["streams"][0]["latitude"] = float("nan")
    rows["streams"][1]["creator_followers"] = float("inf")
    rows["streams"][2]["stream_quality_score"] = -1
    paths = write_set(tmp_path / "bad", rows, "parquet")

    with pytest.raises(InvalidDataError) as caught:
        import_files(db_url, paths)

    assert [(p.row, p.line, p.column) for p in caught.value.problems] == [
        (2, None, "latitude"),
        (1, None, "latitude"),
        (2, None, "creator_followers"),
        (3, None, "stream_quality_score"),
    ]
    reasons = [p.reason for p in caught.value.problems]
    assert reasons[0] == "expected a number, got 'abc'"
    assert reasons[1].startswith("missing")
    assert reasons[2] == "expected a finite number, got inf"
    assert str(caught.value).startswith("invalid input: 4 problems in ")
    assert snapshot(db_url) == before


def test_parquet_text_refuses_control_characters_but_tab(db_url: str, tmp_path: Path) -> None:
    """A CR or an ESC in a city would break a CSV written from the table; tab is text."""
    import_files(db_url, write_set(tmp_path / "first", good_rows(), "parquet"))
    before = snapshot(db_url)
    rows = good_rows()
    rows["users"][0]["city"] = "Par\ris"
    rows["users"][1]["city"] = "tab\tis fine"
    rows["streams"][0]["title"] = "\x1b[2Jcleared"
    rows["streams"][1]["tags"] = ["ok", "bad\x00"]
    rows["streams"][2]["description"] = "line\r\nbreaks\tand tabs are fine"
    paths = write_set(tmp_path / "bad", rows, "parquet")

    with pytest.raises(InvalidDataError) as caught:
        import_files(db_url, paths)

    assert [(p.row, p.column) for p in caught.value.problems] == [
        (1, "city"),
        (1, "title"),
        (2, "tags"),
    ]
    assert "control characters" in caught.value.problems[0].reason
    assert snapshot(db_url) == before


def test_malformed_csv_and_unknown_extension_are_refused(tmp_path: Path) -> None:
    paths = write_set(tmp_path, good_rows(), kinds=("users", "streams"))
    with paths["users"].open("a") as handle:
        handle.write("u9,Oslo,59.9\n")
    odd = tmp_path / "streams.xlsx"
    odd.write_bytes(b"")

    with pytest.raises(InvalidDataError) as caught:
        read_dataset(paths["users"], odd)
    assert [str(p) for p in caught.value.problems] == [
        f"{odd}: unsupported file type 'streams.xlsx': use one of .csv, .csv.gz, .parquet, .pq"
    ]

    with pytest.raises(InvalidDataError) as caught:
        read_dataset(paths["users"], paths["streams"])
    assert [(p.row, p.line) for p in caught.value.problems] == [(4, 5)]
    assert caught.value.problems[0].reason == "has 3 fields, the header has 11"


def test_error_message_is_capped(tmp_path: Path) -> None:
    rows = good_rows()
    rows["users"] = [{**USERS[0], "user_id": f"u{i}", "latitude": 100 + i} for i in range(120)]
    paths = write_set(tmp_path, rows, kinds=("users", "streams"))

    with pytest.raises(InvalidDataError) as caught:
        read_dataset(paths["users"], paths["streams"])

    assert len(caught.value.problems) == caught.value.total == 120
    message = str(caught.value)
    assert message.startswith("invalid input: 120 problems in ")
    assert "\n  ... and 70 more\n" in message
    assert message.rstrip().endswith(
        f"{paths['users']}, column latitude: 120 x out of range (must be between -90 and 90)"
    )
    assert message.count("out of range: ") == 50


def test_problems_beyond_the_detail_limit_are_counted_not_kept(db_url: str, tmp_path: Path) -> None:
    import_files(db_url, write_set(tmp_path / "good", good_rows()))
    before = snapshot(db_url)
    rows = good_rows()
    many = DETAIL_LIMIT + 500
    rows["users"] = [
        {**USERS[0], "user_id": f"x{i}", "latitude": 100 + i, "longitude": None}
        for i in range(many)
    ]
    paths = write_set(tmp_path / "bad", rows)

    with pytest.raises(InvalidDataError) as caught:
        read_dataset(paths["users"], paths["streams"], paths["interactions"])

    error = caught.value
    assert len(error.problems) == DETAIL_LIMIT
    assert error.total == 2 * many + 4  # and the 4 interactions name users now gone
    # The first ones in full, by row and column, with their lines and values.
    assert [(p.row, p.line, p.column) for p in error.problems[:3]] == [
        (1, 2, "latitude"),
        (1, 2, "longitude"),
        (2, 3, "latitude"),
    ]
    assert error.problems[-1].row == DETAIL_LIMIT // 2
    assert error.problems[2].reason == "out of range: 101 (must be between -90 and 90)"
    users, interactions = str(paths["users"]), str(paths["interactions"])
    assert [(t.file, t.column, t.reason, t.count) for t in error.tallies] == [
        (users, "latitude", "out of range (must be between -90 and 90)", many),
        (users, "longitude", "missing (empty or null): a value is required", many),
        (interactions, "user_id", f"unknown user_id: no such user in {users}", 4),
    ]
    message = str(error)
    assert message.startswith(f"invalid input: {error.total:,} problems in {users}, ")
    assert f"  ... and {error.total - 50:,} more\n" in message
    assert f"    {users}, column latitude: {many:,} x out of range" in message
    assert snapshot(db_url) == before


def test_skip_invalid_drops_every_bad_row_beyond_the_detail_limit(
    db_url: str, tmp_path: Path
) -> None:
    rows = good_rows()
    bad = [{**USERS[0], "user_id": f"bad{i}", "total_watch_hours": -1} for i in range(3000)]
    rows["users"] = [*bad[:1500], *rows["users"], *bad[1500:]]
    paths = write_set(tmp_path, rows)

    report = import_files(db_url, paths, skip_invalid=True)

    assert counts(db_url) == {"users": 3, "streams": 3, "interactions": 4}
    assert report.rows_kept["users"] == 3
    assert len(report.skipped) == DETAIL_LIMIT
    assert report.problem_count == 3000
    text = str(report)
    assert text.startswith("kept users 3 of 3,003, streams 3 of 3, interactions 4 of 4;")
    assert f"  ... and {3000 - 50:,} more\n" in text
    assert text.rstrip().endswith(
        f"{paths['users']}, column total_watch_hours: 3,000 x out of range (must be >= 0)"
    )


# --- skipping invalid rows ---------------------------------------------------------------


def test_skip_invalid_loads_good_rows_and_cascades_to_interactions(
    db_url: str, tmp_path: Path
) -> None:
    rows = good_rows()
    rows["users"][1]["latitude"] = 95  # u2 goes ...
    rows["streams"][2]["stream_quality_score"] = 11  # ... and so does s3
    rows["streams"].append({**STREAMS[0], "title": "duplicate"})  # a second s1: dropped
    rows["interactions"].append({**INTERACTIONS[0], "user_id": "ghost"})
    rows["interactions"].append({**INTERACTIONS[0], "clicked": False})  # watch time w/o click
    paths = write_set(tmp_path, rows)

    report = import_files(db_url, paths, skip_invalid=True)

    assert fetch(db_url, "SELECT array_agg(user_id ORDER BY user_id) FROM users")[0][0] == [
        "u1",
        "u3",
    ]
    assert fetch(db_url, "SELECT array_agg(stream_id ORDER BY stream_id) FROM streams")[0][0] == [
        "s1",
        "s2",
    ]
    assert fetch(db_url, "SELECT title FROM streams WHERE stream_id = 's1'")[0][0] == (
        "Speedruns, live"
    )
    pairs = fetch(db_url, "SELECT user_id, stream_id FROM interactions ORDER BY 1, 2")
    assert [tuple(p) for p in pairs] == [("u1", "s1"), ("u1", "s2")]
    assert report.rows_read == {"users": 3, "streams": 4, "interactions": 6}
    assert report.rows_kept == {"users": 2, "streams": 2, "interactions": 2}
    assert [(p.file, p.row, p.column) for p in report.skipped] == [
        (str(paths["users"]), 2, "latitude"),
        (str(paths["streams"]), 3, "stream_quality_score"),
        (str(paths["streams"]), 4, "stream_id"),
        (str(paths["interactions"]), 3, "user_id"),
        (str(paths["interactions"]), 4, "stream_id"),
        (str(paths["interactions"]), 5, "user_id"),
        (str(paths["interactions"]), 6, "watch_time_minutes"),
    ]
    cascade = report.skipped[3]
    assert cascade.reason == f"user 'u2' was skipped: row 2 (line 3) of {paths['users']} is invalid"
    assert report.skipped[4].reason == (
        f"stream 's3' was skipped: row 3 (line 5) of {paths['streams']} is invalid"
    )
    assert report.skipped[5].reason.startswith("unknown user_id 'ghost'")
    text = str(report)
    assert text.startswith("kept users 2 of 3, streams 2 of 4, interactions 2 of 6; skipped 7")
    assert all(str(problem) in text for problem in report.skipped)


def test_skip_invalid_still_refuses_a_missing_column(tmp_path: Path) -> None:
    rows = good_rows()
    _drop_column("users", "latitude")(rows)
    paths = write_set(tmp_path, rows)

    with pytest.raises(InvalidDataError) as caught:
        read_dataset(paths["users"], paths["streams"], paths["interactions"], skip_invalid=True)

    assert caught.value.problems == [
        Problem(
            str(paths["users"]),
            None,
            "latitude",
            caught.value.problems[0].reason,
        )
    ]


# --- files the seed project writes -------------------------------------------------------
#
# The seed project's generator builds its frames with numpy and writes them with pandas'
# own `to_parquet` / `to_csv`: floats where the schema has integers (209.0), real-valued
# durations (51.19), numpy bools, datetime64 timestamps, lists held as numpy arrays (which
# `to_csv` prints `['a' 'b']`, no commas, wrapped over lines when long) or as Python lists
# of numpy strings (`[np.str_('a')]` under numpy 2), and interaction columns of its own.

SEED_CITIES = pd.DataFrame(
    {
        "city": ["Paris", "São Paulo", "Delhi", "New York"],
        "latitude": [48.8566, -23.5505, 28.6139, 40.7128],
        "longitude": [2.3522, -46.6333, 77.209, -74.006],
        "language": ["fr", "pt", "hi", "en"],
        "timezone_offset": [1.0, -3.0, 5.5, -5.0],
    }
)
SEED_CATEGORIES = np.array(["gaming", "music", "irl", "just chatting", "sports", "art"])
SEED_TAGS = np.array([f"tag_{i:02d}" for i in range(16)] + ["it's", 'say "hi"', "a,b", "é"])
T0_NS = pd.Timestamp("2024-06-01 12:34:56.123456").as_unit("ns")


def _micros(rng: np.random.Generator, n: int, days: int) -> pd.TimedeltaIndex:
    """Random offsets of whole microseconds (the database keeps microseconds)."""
    return pd.to_timedelta(rng.integers(0, days * 86_400_000_000, n), unit="us")


def seed_frames(seed: int = 7, *, nullable: bool = False) -> dict[str, pd.DataFrame]:
    """Users, streams and interactions as the seed's pandas code builds them.

    With `nullable`, the frames use pandas' nullable dtypes (`Int64`, `boolean`, with an
    unknown `is_live`), tz-aware timestamps in a local zone and plain Python lists.
    """
    rng = np.random.default_rng(seed)
    n_users, n_streams, n_impressions = 30, 20, 150
    home = rng.integers(0, len(SEED_CITIES), n_users)
    users = pd.DataFrame(
        {
            "user_id": [f"user_{i:05d}" for i in range(n_users)],
            "city": SEED_CITIES["city"].to_numpy()[home],
            "latitude": SEED_CITIES["latitude"].to_numpy()[home] + rng.normal(0, 0.2, n_users),
            "longitude": SEED_CITIES["longitude"].to_numpy()[home] + rng.normal(0, 0.2, n_users),
            "language": pd.Categorical(SEED_CITIES["language"].to_numpy()[home]),
            "timezone_offset": SEED_CITIES["timezone_offset"].to_numpy()[home],
            "total_watch_hours": np.round(rng.exponential(120.0, n_users), 2),
            "local_preference_strength": rng.uniform(0, 1, n_users),
            "preferred_categories": [
                list(rng.choice(SEED_CATEGORIES, size=k, replace=False))
                for k in rng.integers(0, 4, n_users)
            ],
            "registration_date": (T0_NS - _micros(rng, n_users, 900)).as_unit("ns"),
        }
    )
    where = rng.integers(0, len(SEED_CITIES), n_streams)
    sizes = rng.integers(0, 5, n_streams)
    sizes[0] = 12  # long enough for numpy to wrap its text over three lines
    streams = pd.DataFrame(
        {
            "stream_id": [f"stream_{i:05d}" for i in range(n_streams)],
            "creator_id": [f"creator_{i:05d}" for i in range(n_streams)],
            "city": SEED_CITIES["city"].to_numpy()[where],
            "latitude": SEED_CITIES["latitude"].to_numpy()[where] + rng.normal(0, 0.2, n_streams),
            "longitude": SEED_CITIES["longitude"].to_numpy()[where] + rng.normal(0, 0.2, n_streams),
            "language": SEED_CITIES["language"].to_numpy()[where],
            "category_id": pd.Categorical(rng.choice(SEED_CATEGORIES, n_streams)),
            "title": [f"Stream {i}, live" for i in range(n_streams)],
            "description": ['Two lines:\nand "quotes"'] + [""] * (n_streams - 1),
            "avg_viewer_count": np.floor(rng.exponential(300.0, n_streams)),
            "creator_followers": np.round(rng.exponential(20_000.0, n_streams)),
            "stream_quality_score": np.round(rng.uniform(0, 10, n_streams), 2),
            "is_partnered": rng.random(n_streams) < 0.4,
            "mature_content": rng.random(n_streams) < 0.2,
            "tags": [rng.choice(SEED_TAGS, size=k, replace=False) for k in sizes],
            "typical_duration_minutes": np.round(rng.uniform(20, 300, n_streams), 2),
        }
    )
    streams.loc[0, "typical_duration_minutes"] = 51.19
    # The seed draws impressions for most users; the last few never saw a stream.
    viewer = rng.integers(0, n_users - 3, n_impressions)
    shown = rng.integers(0, n_streams, n_impressions)
    clicked = rng.random(n_impressions) < 0.3
    language = SEED_CITIES["language"].to_numpy()
    interactions = pd.DataFrame(
        {
            "user_id": users["user_id"].to_numpy()[viewer],
            "stream_id": streams["stream_id"].to_numpy()[shown],
            "clicked": clicked,
            "watch_time_minutes": np.where(
                clicked, np.round(rng.exponential(25.0, n_impressions), 2), 0.0
            ),
            "impression_timestamp": (T0_NS + _micros(rng, n_impressions, 30)).as_unit("ns"),
            "device_type": rng.choice(["mobile", "desktop", "tablet", "tv"], n_impressions),
            "page_position": rng.integers(1, 21, n_impressions).astype(np.float64),
            "session_id": [f"sess_{u}_{k % 4}" for k, u in enumerate(viewer)],
            "user_city": users["city"].to_numpy()[viewer],
            "stream_city": streams["city"].to_numpy()[shown],
            "distance_km": rng.uniform(0, 12_000, n_impressions),
            "is_local_match": home[viewer] == where[shown],
            "same_language": language[home[viewer]] == language[where[shown]],
            "category_match": rng.random(n_impressions) < 0.5,
        }
    )
    if nullable:
        for name in ("avg_viewer_count", "creator_followers"):
            streams[name] = streams[name].astype("Int64")
        for name in ("is_partnered", "mature_content"):
            streams[name] = streams[name].astype("boolean")
        streams["is_live"] = pd.array([True, False, None] * 6 + [False, None], dtype="boolean")
        streams["tags"] = [list(map(str, tags)) for tags in streams["tags"]]
        interactions["page_position"] = interactions["page_position"].astype("Int64")
        interactions["clicked"] = interactions["clicked"].astype("boolean")
        interactions["impression_timestamp"] = (
            interactions["impression_timestamp"].dt.tz_localize("UTC").dt.tz_convert("Asia/Kolkata")
        )
        users["registration_date"] = users["registration_date"].dt.tz_localize("UTC")
    return {"users": users, "streams": streams, "interactions": interactions}


def write_frames(folder: Path, frames: dict[str, pd.DataFrame], fmt: str) -> dict[str, Path]:
    """Each frame written by pandas itself, as the seed does: no index, nothing else."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, frame in frames.items():
        paths[kind] = folder / f"{kind}.{fmt}"
        if fmt == "parquet":
            frame.to_parquet(paths[kind], index=False)
        else:
            frame.to_csv(paths[kind], index=False)
    return paths


def _utc(stamp: Any) -> datetime:
    moment = pd.Timestamp(stamp)
    return (moment.tz_localize("UTC") if moment.tzinfo is None else moment).to_pydatetime()


@pytest.mark.parametrize("nullable", [False, True], ids=["numpy", "nullable"])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_files_written_by_the_seeds_pandas_code_import_intact(
    db_url: str, tmp_path: Path, fmt: str, nullable: bool
) -> None:
    frames = seed_frames(nullable=nullable)
    paths = write_frames(tmp_path, frames, fmt)
    if fmt == "csv":  # the files hold what the seed writes, not something tidier
        text = paths["streams"].read_text()
        assert "51.19" in text and ",False," in text
        if not nullable:
            assert "['tag_" in text and "' '" in text and "'\n '" in text
            assert "np.str_('" in paths["users"].read_text()
            assert ".0," in text  # avg_viewer_count and creator_followers are float64

    report = import_files(db_url, paths)

    sizes = {kind: len(frame) for kind, frame in frames.items()}
    assert report.rows_read == report.rows_kept == sizes
    users, streams, interactions = frames["users"], frames["streams"], frames["interactions"]
    stored_users = fetch(
        db_url,
        "SELECT user_id, city, latitude, longitude, language, timezone_offset,"
        " total_watch_hours, local_preference_strength, preferred_categories,"
        " registration_date FROM users ORDER BY user_id",
    )
    assert [tuple(row) for row in stored_users] == [
        (
            row.user_id,
            row.city,
            row.latitude,
            row.longitude,
            row.language,
            row.timezone_offset,
            row.total_watch_hours,
            row.local_preference_strength,
            [str(item) for item in row.preferred_categories],
            _utc(row.registration_date),
        )
        for row in users.itertuples()
    ]
    stored_streams = fetch(
        db_url,
        "SELECT stream_id, creator_id, city, latitude, longitude, language, category_id,"
        " title, description, avg_viewer_count, creator_followers, stream_quality_score,"
        " is_partnered, mature_content, tags, typical_duration_minutes FROM streams"
        " ORDER BY stream_id",
    )
    assert [tuple(row) for row in stored_streams] == [
        (
            row.stream_id,
            row.creator_id,
            row.city,
            row.latitude,
            row.longitude,
            row.language,
            row.category_id,
            row.title,
            row.description,
            int(row.avg_viewer_count),
            int(row.creator_followers),
            row.stream_quality_score,
            bool(row.is_partnered),
            bool(row.mature_content),
            [str(tag) for tag in row.tags],
            row.typical_duration_minutes,
        )
        for row in streams.itertuples()
    ]
    assert stored_streams[0]["typical_duration_minutes"] == 51.19
    assert stored_streams[0]["tags"] == [str(tag) for tag in streams["tags"][0]]
    assert len(stored_streams[0]["tags"]) == 12
    assert stored_streams[0]["description"] == 'Two lines:\nand "quotes"'
    live = fetch(db_url, "SELECT is_live, live_since FROM streams ORDER BY stream_id")
    known = streams["is_live"] if nullable else pd.Series([pd.NA] * len(streams))
    assert [tuple(row) for row in live] == [
        (True, NOW) if pd.isna(flag) or flag else (False, None) for flag in known.tolist()
    ]
    stored_interactions = fetch(
        db_url,
        "SELECT user_id, stream_id, clicked, watch_time_minutes, impression_at, device_type,"
        " page_position, session_id FROM interactions",
    )
    expected = [
        (
            row.user_id,
            row.stream_id,
            bool(row.clicked),
            row.watch_time_minutes,
            _utc(row.impression_timestamp),
            row.device_type,
            int(row.page_position),
            row.session_id,
        )
        for row in interactions.itertuples()
    ]
    assert sorted(tuple(row) for row in stored_interactions) == sorted(expected)


def _csv_lines(frame: pd.DataFrame) -> list[int]:
    """The line each row of `frame.to_csv` starts on: values holding newlines push it down."""
    spans = [sum(str(value).count("\n") for value in row) for row in frame.itertuples(False)]
    return [2 + index + sum(spans[:index]) for index in range(len(frame))]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_real_errors_in_the_seeds_files_are_refused_with_row_numbers(
    db_url: str, tmp_path: Path, fmt: str
) -> None:
    import_files(db_url, write_frames(tmp_path / "first", seed_frames(), fmt))
    before = snapshot(db_url)
    frames = seed_frames(seed=8)  # other data: a load would change the tables
    users, streams, interactions = frames["users"], frames["streams"], frames["interactions"]
    unseen = int(np.flatnonzero(~users["user_id"].isin(interactions["user_id"]))[0])
    users.loc[unseen, "user_id"] = None
    users.loc[2, "latitude"] = 90.5
    streams.loc[3, "longitude"] = -180.25
    streams.loc[5, "typical_duration_minutes"] = 0.0
    streams["avg_viewer_count"] = streams["avg_viewer_count"].astype(str)
    streams.loc[6, "avg_viewer_count"] = "many"
    interactions.loc[7, "page_position"] = 1.5
    interactions.loc[9, "stream_id"] = None
    interactions.loc[11, "user_id"] = "ghost"
    paths = write_frames(tmp_path / "bad", frames, fmt)
    missing = "missing (empty or null): a value is required"
    expected = [
        *sorted(
            [
                ("users", unseen, "user_id", missing),
                ("users", 2, "latitude", "out of range: 90.5 (must be between -90 and 90)"),
            ]
        ),
        ("streams", 3, "longitude", "out of range: -180.25 (must be between -180 and 180)"),
        ("streams", 5, "typical_duration_minutes", "out of range: 0 (must be > 0)"),
        ("streams", 6, "avg_viewer_count", "expected a number, got 'many'"),
        ("interactions", 7, "page_position", "expected a whole number, got 1.5"),
        ("interactions", 9, "stream_id", missing),
        (
            "interactions",
            11,
            "user_id",
            f"unknown user_id 'ghost': no such user in {paths['users']}",
        ),
    ]

    with pytest.raises(InvalidDataError) as caught:
        import_files(db_url, paths)

    lines = {kind: _csv_lines(frame) for kind, frame in frames.items()}
    assert caught.value.problems == [
        Problem(
            str(paths[kind]),
            index + 1,
            column,
            reason,
            lines[kind][index] if fmt == "csv" else None,
        )
        for kind, index, column, reason in expected
    ]
    if fmt == "csv":  # stream 0's description and tags span lines: later rows start lower
        assert lines["streams"][1] >= 3 + 2
    assert snapshot(db_url) == before

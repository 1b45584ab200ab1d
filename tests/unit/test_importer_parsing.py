"""Importer parsing and file reading, no database: notations, types, line numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seed.importer import InvalidDataError, Problem, read_dataset
from seed.parsing import (
    parse_bool,
    parse_list,
    parse_list_text,
    parse_number,
    parse_text,
    parse_timestamp,
)
from seed.problems import DETAIL_LIMIT, format_problems

USER_HEADER = (
    "user_id,city,latitude,longitude,language,timezone_offset,total_watch_hours,"
    "local_preference_strength,preferred_categories"
)
STREAM_HEADER = (
    "stream_id,creator_id,city,latitude,longitude,language,category_id,title,description,"
    "avg_viewer_count,creator_followers,stream_quality_score,is_partnered,mature_content,tags"
)


def text(*values: str | None) -> pd.Series:
    return pd.Series(list(values), dtype="str")


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ('["a","b c"]', ["a", "b c"]),
        ("['a', 'b c']", ["a", "b c"]),
        ("[1, 2.5]", ["1", "2.5"]),
        ("{a,b}", ["a", "b"]),
        ('{"a,b","c\\"d", e }', ["a,b", 'c"d', "e"]),
        ("{}", []),
        ("[]", []),
        ("a|b", ["a", "b"]),
        (" a ; b ;", ["a", "b"]),
        ("single", ["single"]),
        ("a, b", ["a, b"]),  # commas separate nothing outside brackets and braces
        ("", []),
        ("   ", []),
        ('"a"', ['"a"']),  # not a list notation: one element, quotes and all
        # What DataFrame.to_csv writes for a cell holding a numpy array: no commas.
        ("['a' 'b c']", ["a", "b c"]),
        ("['gaming']", ["gaming"]),
        ("['a' 'b'\n 'c']", ["a", "b", "c"]),  # a long array wraps over lines
        ("[\"it's\" 'x\\ty' 'é']", ["it's", "x\ty", "é"]),  # a tab is text
        ("[ 1.5  2.  -3. ]", ["1.5", "2.0", "-3.0"]),
        ("[1 2 3]", ["1", "2", "3"]),
        # A Python list of numpy scalars under numpy 2.
        ("[np.str_('a'), np.str_('b')]", ["a", "b"]),
        ("['a', 'b',]", ["a", "b"]),
        ("['a]b' \"c, d\"]", ["a]b", "c, d"]),
    ],
)
def test_list_notations(written: str, expected: list[str]) -> None:
    assert parse_list_text(written) == expected


@pytest.mark.parametrize(
    "written",
    [
        "[unclosed",
        '{"unclosed}',
        "['x\\ny']",  # an escaped newline: no control character but tab in an element
        "a|b\x1bc",
        "{a,NULL}",
        "{{a},{b}}",
        "{a,,b}",
        '["a", null]',
        "[true]",
        "['a' 'b', 'c']",  # mixed separators
        "['a' 'b',]",
        "['a''b']",  # neither Python's way nor numpy's: Python would join them
        "['a',, 'b']",
        "[, 'a']",
        "['a'] ['b']",
        "[['a']]",
        "[b'x']",
        "[nan]",
        "[ True False]",
        "['a' 'b' ... 'z']",  # numpy's summary of a huge array: elements are lost
        "[np.str_('a']",
        "[os.system('x')]",
    ],
)
def test_unreadable_lists_are_bad(written: str) -> None:
    assert parse_list_text(written) is None


def test_numpy_array_text_is_not_read_as_one_concatenated_string() -> None:
    """Python reads `['a' 'b']` as `['ab']`; the element count must survive."""
    written = str(np.array([f"category_{i}" for i in range(30)]))
    assert "\n" in written and "," not in written
    assert parse_list_text(written) == [f"category_{i}" for i in range(30)]


def test_list_column_from_text_and_from_parquet_arrays() -> None:
    parsed = parse_list(text('["x"]', "", None, "[oops", '["x"]'))
    assert parsed.values.tolist() == [["x"], [], [], [], ["x"]]
    assert parsed.bad.tolist() == [False, False, False, True, False]

    native = pd.Series([np.array(["a", "b"], dtype=object), None, np.array([1, 2]), ["z"]])
    parsed = parse_list(native)
    assert parsed.values.tolist() == [["a", "b"], [], ["1", "2"], ["z"]]
    assert not parsed.bad.any()
    assert parse_list(pd.Series([np.array(["a", None], dtype=object)])).bad.tolist() == [True]


def test_booleans_from_words_numbers_and_bool_columns() -> None:
    parsed = parse_bool(
        text("true", "FALSE", " Yes ", "no", "1", "0", "1.0", "0.0", "", "maybe", "2", "0.5")
    )
    assert parsed.values.tolist()[:8] == [True, False, True, False, True, False, True, False]
    assert parsed.missing.tolist() == [False] * 8 + [True, False, False, False]
    assert parsed.bad.tolist() == [False] * 9 + [True, True, True]

    numbers = parse_bool(pd.Series([1.0, 0.0, np.nan, 2.0]))
    assert numbers.values.tolist()[:2] == [True, False]
    assert numbers.missing.tolist() == [False, False, True, False]
    assert numbers.bad.tolist() == [False, False, False, True]

    nullable = parse_bool(pd.Series([True, None, False], dtype="boolean"))
    assert nullable.values.tolist() == [True, False, False]
    assert nullable.missing.tolist() == [False, True, False]


def test_numbers_from_text_keep_inf_for_the_range_checks() -> None:
    parsed = parse_number(text(" 1.5 ", "-2e3", "inf", "", "abc", "1,5", None))
    assert parsed.values.tolist()[:3] == [1.5, -2000.0, float("inf")]
    assert parsed.missing.tolist() == [False, False, False, True, False, False, True]
    assert parsed.bad.tolist() == [False, False, False, False, True, True, False]
    # An all-valid column takes the fast path and gives the same numbers.
    assert parse_number(text("1", "2.5")).values.tolist() == [1.0, 2.5]


def test_text_is_trimmed_and_nul_is_bad() -> None:
    parsed = parse_text(text(" Paris ", "", None, "a\x00b"))
    assert parsed.values.tolist() == ["Paris", "", "", "a\x00b"]
    assert parsed.missing.tolist() == [False, True, True, False]
    assert parsed.bad.tolist() == [False, False, False, True]


def test_timestamps_naive_ones_are_utc() -> None:
    parsed = parse_timestamp(
        text("2024-01-02T03:04:05", "2024-01-02 03:04:05+02:00", "2024-01-02", "Z", "")
    )
    assert parsed.values.tolist()[:3] == [
        pd.Timestamp("2024-01-02 03:04:05", tz=UTC),
        pd.Timestamp("2024-01-02 01:04:05", tz=UTC),
        pd.Timestamp("2024-01-02", tz=UTC),
    ]
    assert parsed.bad.tolist() == [False, False, False, True, False]
    assert parsed.missing.tolist() == [False, False, False, False, True]

    naive = parse_timestamp(pd.Series(pd.to_datetime(["2024-01-02 03:00", None])))
    assert naive.values.iloc[0] == pd.Timestamp("2024-01-02 03:00", tz=UTC)
    assert naive.missing.tolist() == [False, True]
    aware = parse_timestamp(pd.Series(pd.to_datetime(["2024-01-02 03:00+01:00"])))
    assert aware.values.iloc[0] == pd.Timestamp("2024-01-02 02:00", tz=UTC)


def test_problem_and_error_wording() -> None:
    assert (
        str(Problem("u.csv", 3, "latitude", "bad", 5))
        == "u.csv, row 3 (line 5), column latitude: bad"
    )
    assert str(Problem("u.parquet", 3, None, "bad")) == "u.parquet, row 3: bad"
    assert str(Problem("u.csv", None, "city", "missing")) == "u.csv, column city: missing"
    problems = [Problem("u.csv", row, "city", "bad") for row in range(1, 8)]
    assert format_problems(problems, limit=5).splitlines()[-1] == "  ... and 2 more"
    message = str(InvalidDataError(problems[:1]))
    assert message == "invalid input: 1 problem in u.csv\n  u.csv, row 1, column city: bad"


def write_streams(folder: Path) -> Path:
    """A streams file with a header and no rows (read with `allow_empty=True`)."""
    path = folder / "streams.csv"
    path.write_text(STREAM_HEADER + "\n")
    return path


def test_csv_line_numbers_survive_bom_crlf_blank_lines_and_multiline_values(
    tmp_path: Path,
) -> None:
    users = tmp_path / "users.csv"
    body = (
        "\ufeff" + USER_HEADER.replace("city", " city ") + ",notes\r\n"
        'u1,Paris,1,2,fr,1,1,0.5,,"a note\r\nover two lines"\r\n'
        "\r\n"
        "u2,Paris,95,2,fr,1,1,0.5,,\r\n"
    )
    users.write_bytes(body.encode())

    with pytest.raises(InvalidDataError) as caught:
        read_dataset(users, write_streams(tmp_path))

    (problem,) = caught.value.problems
    assert (problem.row, problem.line, problem.column) == (2, 5, "latitude")


def test_parquet_integer_ids_and_dictionary_text_are_read_as_text(tmp_path: Path) -> None:
    users = tmp_path / "users.parquet"
    table = pa.table(
        {
            "user_id": pa.array([7, 8], pa.int64()),
            "city": pa.array(["Paris", "Lyon"]).dictionary_encode(),
            "latitude": [48.8, 45.7],
            "longitude": [2.3, 4.8],
            "language": ["fr", "fr"],
            "timezone_offset": pa.array([1, 1], pa.int32()),
            "total_watch_hours": [1.0, 2.0],
            "local_preference_strength": [0.5, 0.5],
            "preferred_categories": pa.array([["a"], []], pa.list_(pa.string())),
            "registration_date": pa.array([datetime(2024, 1, 1).date(), None], pa.date32()),
        }
    )
    pq.write_table(table, users)

    dataset, report = read_dataset(users, write_streams(tmp_path), allow_empty=True)

    assert dataset.users["user_id"].tolist() == ["7", "8"]
    assert dataset.users["city"].tolist() == ["Paris", "Lyon"]
    assert dataset.users["registration_date"].iloc[0] == pd.Timestamp("2024-01-01", tz=UTC)
    assert pd.isna(dataset.users["registration_date"].iloc[1])
    assert report.rows_kept == {"users": 2, "streams": 0}


def test_missing_file_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidDataError) as caught:
        read_dataset(tmp_path / "users.csv", write_streams(tmp_path))
    assert [str(p) for p in caught.value.problems] == [f"{tmp_path / 'users.csv'}: no such file"]


@pytest.mark.parametrize("stray_quote", [False, True])
def test_csv_line_numbers_match_the_csv_module(tmp_path: Path, stray_quote: bool) -> None:
    """The fast quote-parity scan, and its fallback when a value has a bare quote."""
    title = 'A 5" screen' if stray_quote else '"A ""5"" screen"'
    row = "s{i},c1,Paris,1,2,fr,gaming,{title},{description},1,1,{quality},true,false,"
    lines = [STREAM_HEADER]
    for i, description in enumerate(['"one\ntwo\n\nthree"', "plain", '"x\r\ny"', "", "z"]):
        quality = 11 if i in (1, 4) else 5
        lines.append(row.format(i=i, title=title, description=description, quality=quality))
        if i == 2:
            lines.append("")  # a blank line between records
    streams = tmp_path / "streams.csv"
    streams.write_bytes("\r\n".join(lines).encode() + b"\r\n")
    users = tmp_path / "users.csv"
    users.write_text(USER_HEADER + "\n")

    with pytest.raises(InvalidDataError) as caught:
        read_dataset(users, streams)

    assert [(p.row, p.line) for p in caught.value.problems] == [(2, 6), (5, 11)]


def test_parquet_list_columns_are_checked_without_a_python_loop() -> None:
    lists = pa.array(
        [["a", "b"], None, [], [""], ["a", None], ["x\x00"], ["a", "b"]], pa.list_(pa.string())
    )
    parsed = parse_list(pd.Series(pd.arrays.ArrowExtensionArray(lists)))
    assert parsed.values.tolist() == [["a", "b"], [], [], [""], [], [], ["a", "b"]]
    assert parsed.bad.tolist() == [False, False, False, False, True, True, False]
    numbers = pa.array([[1, 2], None], pa.list_(pa.int64()))
    assert parse_list(pd.Series(pd.arrays.ArrowExtensionArray(numbers))).values.tolist() == [
        ["1", "2"],
        [],
    ]
    flags = pa.array([[True], None], pa.list_(pa.bool_()))  # not text: refused row by row
    assert parse_list(pd.Series(pd.arrays.ArrowExtensionArray(flags))).bad.tolist() == [
        True,
        False,
    ]


def test_malformed_rows_beyond_the_detail_limit_are_counted(tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    users.write_text(USER_HEADER + "\n" + "u,Paris,1\n" * (DETAIL_LIMIT + 10))

    with pytest.raises(InvalidDataError) as caught:
        read_dataset(users, write_streams(tmp_path))

    width = USER_HEADER.count(",") + 1
    assert len(caught.value.problems) == DETAIL_LIMIT
    assert caught.value.total == DETAIL_LIMIT + 10
    assert caught.value.problems[-1] == Problem(
        str(users), DETAIL_LIMIT, None, f"has 3 fields, the header has {width}", DETAIL_LIMIT + 1
    )
    assert str(caught.value).endswith(
        f"    {users}: {DETAIL_LIMIT + 10:,} x has the wrong number of fields"
        f" (the header has {width})"
    )

"""A seed-format interaction file alone: what is read, and what is refused with row numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml.feed.data import FeedDataError, from_file

ROWS = {
    "user_id": ["user_b", "user_a", "user_b"],
    "stream_id": ["s1", "s1", "s2"],
    "watch_time": [3.0, 0.0, 12.5],
    "timestamp": [1718803200, 1718803300, 1718803400],
}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_file_alone_is_read_with_extra_columns_ignored(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame({**ROWS, "device": ["ios", "tv", "web"], "rating": [5, None, 4]})
    path = tmp_path / f"log{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    log = from_file(path).log
    assert list(log.user_ids) == ["user_a", "user_b"] and list(log.stream_ids) == ["s1", "s2"]
    assert log.user.tolist() == [1, 0, 1] and log.item.tolist() == [0, 0, 1]
    assert log.at_us.tolist() == [t * 1_000_000 for t in ROWS["timestamp"]]
    assert log.positive.tolist() == [True, False, True]
    assert (log.device == -1).all()


def test_timestamps_may_be_iso_text_or_datetimes_and_seconds_can_be_the_unit(
    tmp_path: Path,
) -> None:
    frame = pd.DataFrame(
        {**ROWS, "timestamp": ["2024-06-19T13:20:00Z", "2024-06-19 13:21:40", "1718803400"]}
    )
    frame["watch_time"] = [180.0, 0.0, 750.0]
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    log = from_file(path, watch_time_unit="seconds").log
    assert log.at_us.tolist() == [t * 1_000_000 for t in ROWS["timestamp"]]
    np.testing.assert_allclose(log.minutes, [3.0, 0.0, 12.5])
    parquet = tmp_path / "log.parquet"
    pd.DataFrame({**ROWS, "timestamp": pd.to_datetime(ROWS["timestamp"], unit="s")}).to_parquet(
        parquet
    )
    assert from_file(parquet).log.at_us.tolist() == log.at_us.tolist()


def test_bad_rows_refuse_the_whole_file_naming_rows_and_lines(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "", "u3", "u4"],
            "stream_id": ["s1", "s2", None, "s4"],
            "watch_time": ["1.5", "2", "lots", "-1"],
            "timestamp": ["1718803200", "yesterday", "1718803200", "1718803200"],
        }
    )
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(FeedDataError) as caught:
        from_file(path)
    message = str(caught.value)
    assert "nothing was read" in message
    assert "row 2 (line 3): user_id is missing" in message
    assert "row 3 (line 4): stream_id is missing" in message
    assert "row 3 (line 4), row 4 (line 5): watch_time must be a number >= 0" in message
    assert "row 2 (line 3): timestamp must be" in message


def test_a_missing_column_or_an_empty_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    pd.DataFrame({k: v for k, v in ROWS.items() if k != "timestamp"}).to_csv(path, index=False)
    with pytest.raises(FeedDataError, match="missing column\\(s\\) timestamp"):
        from_file(path)
    pd.DataFrame({k: [] for k in ROWS}).to_parquet(tmp_path / "empty.parquet")
    with pytest.raises(FeedDataError, match="no rows"):
        from_file(tmp_path / "empty.parquet")
    with pytest.raises(FeedDataError, match=r"expected a \.parquet or \.csv"):
        (tmp_path / "log.json").write_text("{}")
        from_file(tmp_path / "log.json")


def test_the_feed_trains_from_one_source_at_a_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file and the service's log together would be two datasets: refused, exit 2."""
    from ml import cli as ml_cli

    args = ["feed", "train", "--interactions", str(tmp_path / "x.csv"), "--source", "log"]
    with pytest.raises(SystemExit) as stopped:
        ml_cli.main(args)
    assert stopped.value.code == 2
    assert "--source log" in capsys.readouterr().err

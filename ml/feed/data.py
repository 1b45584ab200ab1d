"""The home feed's training data: an interaction log with integer codes (database or file).

Two sources give the same `Log`:

- **the database** (the default): every impression of the `interactions` table,
  with the users and streams tables beside it (`Tables`), so the content
  features, the near-you source and the HOMETOWN order can be built;
- **a file alone** in the seed's real-data format, `user_id, stream_id,
  watch_time, rating, timestamp` (parquet or CSV; extra columns are ignored,
  `rating` is optional and read only to be checked), so a team can try the
  collaborative models on its own logs without users or streams tables.

A *positive* is an interaction with watch time above 0: watch time is the
signal, an impression without it is a negative. Rows are read column-wise
through pyarrow (COPY ... TO STDOUT for the database): ten million rows are a
few hundred megabytes of integer arrays, not ten million Python objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from app.db.limits import DEVICES

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Progress = Callable[[str], None]

#: Device codes of `Log.device` index app.db.limits.DEVICES; -1 = unknown (a file has none).
#: The seed's real-data columns; `rating` may be absent.
FILE_COLUMNS = ("user_id", "stream_id", "watch_time", "timestamp")
#: How many bad rows an error lists before "and N more".
SHOWN_PROBLEMS = 10


class FeedDataError(Exception):
    """The input cannot be used; the message says which rows or what is missing."""


@dataclass(frozen=True)
class Log:
    """Interactions as parallel arrays; `user`/`item` index `user_ids`/`stream_ids`."""

    user_ids: pd.Index
    stream_ids: pd.Index
    user: IntArray
    item: IntArray
    at_us: IntArray  # microseconds since 1970 UTC
    minutes: FloatArray  # watch time; 0 for an impression that was not watched
    device: IntArray  # codes into DEVICES, -1 unknown
    source: str

    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        """Distinct users the codes can name."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Distinct streams the codes can name (the catalogue)."""
        return len(self.stream_ids)

    @property
    def positive(self) -> BoolArray:
        """Rows that were watched: the signal every model learns from."""
        return np.asarray(self.minutes > 0.0)


@dataclass(frozen=True)
class Tables:
    """The users and streams tables, row i = code i of the log's indexes."""

    users: pd.DataFrame  # latitude, longitude, language, timezone_offset, preferred_categories,
    # local_preference_strength
    streams: pd.DataFrame  # creator_id, latitude, longitude, language, category_id, quality,
    # avg_viewers, followers, partnered, mature


@dataclass(frozen=True)
class Data:
    """A log and, when it came from the database, its tables."""

    log: Log
    tables: Tables | None


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


# --------------------------------------------------------------------------- database

USERS_SQL = """
SELECT user_id, latitude, longitude, language, timezone_offset,
       preferred_categories, local_preference_strength
FROM users ORDER BY user_id
"""
STREAMS_SQL = """
SELECT stream_id, creator_id, latitude, longitude, language, category_id,
       stream_quality_score AS quality, avg_viewer_count AS avg_viewers,
       creator_followers AS followers, is_partnered AS partnered, mature_content AS mature
FROM streams ORDER BY stream_id
"""
INTERACTIONS_SQL = """
SELECT user_id, stream_id,
       (extract(epoch FROM impression_at) * 1000000)::bigint AS at_us,
       watch_time_minutes, device_type
FROM interactions
"""
#: The same columns from what the service logged itself (app/events/): each stream of an
#: answer to a signed-in user, at the answer's time, with the minutes of the watch events
#: naming that answer and stream (0 without). Exposures record no device: -1 (unknown),
#: as for a file without one. Ids no longer in users/streams are left out.
LOGGED_INTERACTIONS_SQL = """
SELECT x.user_id, shown.stream_id,
       (extract(epoch FROM x.at) * 1000000)::bigint AS at_us,
       coalesce(w.minutes, 0) AS watch_time_minutes, NULL::text AS device_type
FROM exposures x
CROSS JOIN LATERAL unnest(x.stream_ids) AS shown(stream_id)
JOIN users u ON u.user_id = x.user_id
JOIN streams s ON s.stream_id = shown.stream_id
LEFT JOIN (
    SELECT request_id, stream_id, sum(minutes) AS minutes
    FROM events WHERE type = 'watch' GROUP BY 1, 2
) w ON w.request_id = x.request_id AND w.stream_id = shown.stream_id
"""
#: Where the database's interactions come from: the imported log, or the service's own.
SOURCES = {"interactions": INTERACTIONS_SQL, "log": LOGGED_INTERACTIONS_SQL}


async def _read_database(
    url: str, progress: Progress | None, query: str
) -> tuple[pd.DataFrame, pd.DataFrame, pa.Table]:
    conn = await asyncpg.connect(url)
    try:
        users = pd.DataFrame([dict(r) for r in await conn.fetch(USERS_SQL)])
        streams = pd.DataFrame([dict(r) for r in await conn.fetch(STREAMS_SQL)])
        _say(progress, f"read {len(users):,} users and {len(streams):,} streams")
        parts: list[bytes] = []

        async def collect(chunk: bytes) -> None:
            parts.append(chunk)

        await conn.copy_from_query(query, output=collect, format="csv")
    finally:
        await conn.close()
    ids = pa.dictionary(pa.int32(), pa.string())
    table = pacsv.read_csv(
        pa.BufferReader(b"".join(parts)),
        read_options=pacsv.ReadOptions(
            column_names=["user_id", "stream_id", "at_us", "minutes", "device"]
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={
                "user_id": ids,
                "stream_id": ids,
                "at_us": pa.int64(),
                "minutes": pa.float64(),
                "device": pa.string(),
            }
        ),
    )
    return users, streams, table


def _codes(column: pa.ChunkedArray, index: pd.Index) -> IntArray:
    """Positions in `index` of a (dictionary-encoded) id column; -1 where absent."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    lookup = index.get_indexer(column.dictionary.to_numpy(zero_copy_only=False))
    indices = column.indices.to_numpy(zero_copy_only=False)
    return np.asarray(lookup[indices], dtype=np.int64)


def _devices(column: pa.ChunkedArray) -> IntArray:
    """Codes into DEVICES; -1 for none recorded (the service's log) or an unknown one."""
    values = column.to_numpy(zero_copy_only=False)
    codes = pd.Index(list(DEVICES)).get_indexer(values)
    return np.asarray(codes, dtype=np.int64)


def from_database(url: str, progress: Progress | None = None, source: str = "interactions") -> Data:
    """Every interaction of `source` in the database, with the users and streams tables.

    `source`: "interactions" (the imported log) or "log" (the exposures and watch
    events the service recorded; `LOGGED_INTERACTIONS_SQL`).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {tuple(SOURCES)}, got {source!r}")
    users, streams, table = asyncio.run(_read_database(url, progress, SOURCES[source]))
    if users.empty or streams.empty or table.num_rows == 0:
        what = "interactions" if source == "interactions" else "logged exposures"
        hint = (
            " load some with `uv run python -m seed generate` or `python -m seed import`,"
            " or train from a file with --interactions FILE"
            if source == "interactions"
            else " serve some answers first (every answer to a signed-in user is logged)"
        )
        raise FeedDataError(
            f"the database holds no {what} to train on (users "
            f"{len(users):,}, streams {len(streams):,}, {what} {table.num_rows:,});{hint}"
        )
    user_ids = pd.Index(users.pop("user_id").astype(str))
    stream_ids = pd.Index(streams.pop("stream_id").astype(str))
    users["preferred_categories"] = pd.Series(
        [frozenset(c or ()) for c in users["preferred_categories"]], dtype=object
    )
    for column in ("partnered", "mature"):
        streams[column] = streams[column].astype(np.float64)
    user = _codes(table.column("user_id"), user_ids)
    item = _codes(table.column("stream_id"), stream_ids)
    log = Log(
        user_ids=user_ids,
        stream_ids=stream_ids,
        user=user,
        item=item,
        at_us=table.column("at_us").to_numpy().astype(np.int64),
        minutes=table.column("minutes").to_numpy().astype(np.float64),
        device=_devices(table.column("device")),
        source="database" if source == "interactions" else "service log",
    )
    _say(
        progress,
        f"read {len(log):,} interactions from {source} ({int(log.positive.sum()):,} watched)",
    )
    return Data(log=log, tables=Tables(users=users.reset_index(drop=True), streams=streams))


# --------------------------------------------------------------------------- file


def _read_file(path: Path) -> pa.Table:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise FeedDataError(f"{path}: no such file")
    try:
        if suffix == ".parquet":
            present = set(pq.read_schema(path).names)
            columns = [c for c in (*FILE_COLUMNS, "rating") if c in present]
            return pq.read_table(path, columns=columns)
        if suffix == ".csv":
            return pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    include_columns=[*FILE_COLUMNS, "rating"],
                    include_missing_columns=True,
                    column_types={"user_id": pa.string(), "stream_id": pa.string()},
                    strings_can_be_null=True,
                ),
            )
    except (pa.ArrowInvalid, OSError) as exc:
        raise FeedDataError(f"{path}: cannot read it: {exc}") from exc
    raise FeedDataError(f"{path}: expected a .parquet or .csv file")


def _rows(mask: BoolArray, what: str, csv: bool) -> str:
    """'row 3 (line 4), row 9 (line 10) ...: what' for the first bad rows."""
    rows = np.flatnonzero(mask) + 1
    shown = ", ".join(
        f"row {r} (line {r + 1})" if csv else f"row {r}" for r in rows[:SHOWN_PROBLEMS]
    )
    more = f" and {len(rows) - SHOWN_PROBLEMS:,} more" if len(rows) > SHOWN_PROBLEMS else ""
    return f"{shown}{more}: {what}"


def _numbers(column: pa.ChunkedArray) -> FloatArray:
    """A column as float64; text that is not a number becomes NaN (reported by the caller)."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        values = pd.to_numeric(pd.Series(column.to_numpy(zero_copy_only=False)), errors="coerce")
        return values.to_numpy(dtype=np.float64)
    if pa.types.is_boolean(column.type):
        column = pc.cast(column, pa.float64())
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _instants_us(column: pa.ChunkedArray) -> tuple[IntArray, BoolArray]:
    """Microseconds since 1970 UTC and a mask of unreadable rows.

    Numbers are Unix seconds; text is ISO 8601 (naive means UTC); timestamp
    columns are taken as they are (naive means UTC).
    """
    kind = column.type
    if pa.types.is_timestamp(kind):
        values = pd.Series(column.to_pandas())
        stamps = pd.to_datetime(values, utc=True)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        seconds = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
        bad = ~np.isfinite(seconds) | (np.abs(seconds) > 1e11)
        us = np.round(np.where(bad, 0.0, seconds) * 1e6).astype(np.int64)
        return us, bad
    else:
        text = pd.Series(column.to_numpy(zero_copy_only=False), dtype=object)
        numeric = pd.to_numeric(text, errors="coerce")
        stamps = pd.to_datetime(
            text.where(numeric.isna()), utc=True, errors="coerce", format="ISO8601"
        )
        from_numbers = pd.to_datetime(numeric * 1e6, unit="us", utc=True, errors="coerce")
        stamps = stamps.fillna(from_numbers)
    bad = np.asarray(stamps.isna().to_numpy(), dtype=bool)
    epoch = pd.Timestamp(0, tz="UTC")
    filled = pd.Series(stamps).fillna(epoch).astype("datetime64[us, UTC]")
    us = np.asarray(filled.astype("int64").to_numpy(), dtype=np.int64)
    return us, bad


def from_file(
    path: Path, *, watch_time_unit: str = "minutes", progress: Progress | None = None
) -> Data:
    """A seed-format interaction file alone; refused whole, with row numbers, if any row is bad."""
    path = Path(path)
    table = _read_file(path)
    csv = path.suffix.lower() == ".csv"
    # A CSV's absent columns come back as nulls (include_missing_columns): ask its header.
    present = _csv_header(path) if csv else table.column_names
    absent = [c for c in FILE_COLUMNS if c not in present]
    if absent:
        raise FeedDataError(
            f"{path}: missing column(s) {', '.join(absent)}; the seed's format is"
            " user_id, stream_id, watch_time, rating (optional), timestamp"
        )
    if table.num_rows == 0:
        raise FeedDataError(f"{path}: no rows")
    problems: list[str] = []
    users = table.column("user_id").cast(pa.string()).to_numpy(zero_copy_only=False)
    streams = table.column("stream_id").cast(pa.string()).to_numpy(zero_copy_only=False)
    no_user = (
        pd.isna(users) | (pd.Series(users, dtype=object).astype(str).str.strip() == "").to_numpy()
    )
    no_stream = (
        pd.isna(streams)
        | (pd.Series(streams, dtype=object).astype(str).str.strip() == "").to_numpy()
    )
    if no_user.any():
        problems.append(_rows(no_user, "user_id is missing", csv))
    if no_stream.any():
        problems.append(_rows(no_stream, "stream_id is missing", csv))
    minutes = _numbers(table.column("watch_time"))
    bad_watch = ~np.isfinite(minutes) | (minutes < 0)
    if bad_watch.any():
        problems.append(_rows(bad_watch, "watch_time must be a number >= 0", csv))
    if "rating" in table.column_names and table.column("rating").null_count < table.num_rows:
        column = table.column("rating")
        rating = _numbers(column)
        given = ~pd.isna(column.to_numpy(zero_copy_only=False))
        bad_rating = given & ~np.isfinite(rating)
        if bad_rating.any():
            problems.append(_rows(bad_rating, "rating must be a number when given", csv))
    at_us, bad_time = _instants_us(table.column("timestamp"))
    if bad_time.any():
        problems.append(_rows(bad_time, "timestamp must be Unix seconds or an ISO 8601 time", csv))
    if problems:
        raise FeedDataError(f"{path}: nothing was read; " + "; ".join(problems))
    if watch_time_unit == "seconds":
        minutes = minutes / 60.0
    elif watch_time_unit != "minutes":
        raise ValueError(f"watch_time_unit must be minutes or seconds, got {watch_time_unit!r}")
    user_codes, user_ids = pd.factorize(pd.Series(users, dtype=object).astype(str), sort=True)
    item_codes, stream_ids = pd.factorize(pd.Series(streams, dtype=object).astype(str), sort=True)
    log = Log(
        user_ids=pd.Index(user_ids),
        stream_ids=pd.Index(stream_ids),
        user=user_codes.astype(np.int64),
        item=item_codes.astype(np.int64),
        at_us=at_us,
        minutes=minutes,
        device=np.full(len(minutes), -1, dtype=np.int64),
        source=str(path),
    )
    _say(
        progress,
        f"read {len(log):,} interactions of {log.n_users:,} users and {log.n_items:,} streams"
        f" from {path.name} ({int(log.positive.sum()):,} watched)",
    )
    return Data(log=log, tables=None)


def _csv_header(path: Path) -> list[str]:
    with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
        first = handle.readline()
    return [name.strip().strip('"') for name in first.rstrip("\r\n").split(",")]

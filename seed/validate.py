"""Column rules for the import files, checked a whole column at a time.

The rules mirror the database: every NOT NULL, CHECK, primary and foreign key in
`app.db.models` has a rule here, plus the limits of the column types (integer
width, no NUL in text), so data that passes never makes `seed.loader.load` fail
half-way through a million rows. Checks are vectorised; Python loops run only
over the rows that have a problem, to word the message, and only over the first
`DETAIL_LIMIT` of them: the rest are counted (see `Findings`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from app.db.limits import (
    DEFAULT_DURATION_MINUTES,
    DURATION_MINUTES,
    FOLLOWERS,
    ID_MAX_LENGTH,
    LATITUDE,
    LOCAL_PREFERENCE,
    LONGITUDE,
    PAGE_POSITION,
    QUALITY,
    TIMEZONE_OFFSET,
    VIEWERS,
    WATCH_HOURS,
    WATCH_MINUTES,
    Bounds,
)
from seed.parsing import PARSERS, Parsed
from seed.problems import DETAIL_LIMIT, Problem, Tally

Kind = Literal["id", "text", "long_text", "float", "int", "bool", "timestamp", "list"]
PARSER_OF: dict[Kind, str] = {
    "id": "text",
    "text": "text",
    "long_text": "long_text",
    "float": "number",
    "int": "number",
    "bool": "bool",
    "timestamp": "timestamp",
    "list": "list",
}

#: Marks a field whose empty cells are refused rather than defaulted.
REQUIRED = object()


@dataclass(frozen=True)
class Field:
    """How one column of an import file is read and checked.

    Attributes:
        name: the column in the file.
        kind: how values are parsed; `id` is text that must be unique.
        target: the loader's column, when it is named differently.
        bounds: the allowed range of a number (`app.db.limits`); an upper bound
            that only the column's type enforces is checked too.
        optional: the file may lack the column; every row then gets `empty`.
        empty: what an empty cell becomes; `REQUIRED` refuses empty cells.
    """

    name: str
    kind: Kind
    target: str = ""
    bounds: Bounds | None = None
    optional: bool = False
    empty: object = REQUIRED

    @property
    def column(self) -> str:
        """The loader's name for this column."""
        return self.target or self.name


def _coordinates() -> tuple[Field, Field]:
    return Field("latitude", "float", bounds=LATITUDE), Field(
        "longitude", "float", bounds=LONGITUDE
    )


USER_FIELDS = (
    Field("user_id", "id"),
    Field("city", "text"),
    *_coordinates(),
    Field("language", "text"),
    Field("timezone_offset", "float", bounds=TIMEZONE_OFFSET),
    Field("total_watch_hours", "float", bounds=WATCH_HOURS),
    Field("local_preference_strength", "float", bounds=LOCAL_PREFERENCE),
    Field("preferred_categories", "list", empty=[]),
    Field("registration_date", "timestamp", optional=True, empty=None),
)
STREAM_FIELDS = (
    Field("stream_id", "id"),
    Field("creator_id", "text"),
    Field("city", "text"),
    *_coordinates(),
    Field("language", "text"),
    Field("category_id", "text"),
    Field("title", "text"),
    Field("description", "long_text", empty=""),
    Field("avg_viewer_count", "int", bounds=VIEWERS),
    Field("creator_followers", "int", bounds=FOLLOWERS),
    Field("stream_quality_score", "float", bounds=QUALITY),
    Field("is_partnered", "bool"),
    Field("mature_content", "bool"),
    Field("tags", "list", empty=[]),
    Field(
        "typical_duration_minutes",
        "float",
        bounds=DURATION_MINUTES,
        optional=True,
        empty=DEFAULT_DURATION_MINUTES,
    ),
    Field("is_live", "bool", optional=True, empty=True),
)
INTERACTION_FIELDS = (
    Field("user_id", "text"),
    Field("stream_id", "text"),
    Field("clicked", "bool"),
    Field("watch_time_minutes", "float", bounds=WATCH_MINUTES),
    Field("impression_timestamp", "timestamp", target="impression_at"),
    Field("device_type", "text"),
    Field("page_position", "int", bounds=PAGE_POSITION),
    Field("session_id", "text"),
)
FIELDS = {"users": USER_FIELDS, "streams": STREAM_FIELDS, "interactions": INTERACTION_FIELDS}
#: Other names accepted for a column, so a database export can be imported as is.
ALIASES = {"impression_timestamp": ("impression_at",)}


def show(value: object) -> str:
    """A value for a message: numbers plainly, text quoted and cut short."""
    if isinstance(value, float | np.floating):
        number = float(value)
        return str(int(number)) if number.is_integer() and abs(number) < 1e16 else repr(number)
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        return str(value)
    text = str(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")


@dataclass
class _Part:
    """The rows that one `Findings.add` call reported: the first ones in full, all counted."""

    positions: np.ndarray  # the first `DETAIL_LIMIT` rows, ascending
    column: str | None
    reasons: list[str]  # one per position
    summary: str  # the reason without a value, for `Tally`
    count: int  # every row, including those not in `positions`


def _first_rows(mask: np.ndarray, limit: int) -> np.ndarray:
    """The first `limit` positions where `mask` is true, without listing all of them."""
    step = max(limit * 64, 1 << 20)
    found: list[np.ndarray] = []
    wanted = limit
    for start in range(0, len(mask), step):
        hits = np.flatnonzero(mask[start : start + step])[:wanted] + start
        found.append(hits)
        wanted -= len(hits)
        if wanted <= 0:
            break
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


@dataclass
class Findings:
    """The problems of one file, gathered column by column.

    The masks are complete, so `skip_invalid` drops every bad row; messages are
    worded for the first `limit` rows of each check only and the rest are
    counted, so a file where every cell is wrong needs a few bytes per row here,
    not a `Problem` per cell.

    Attributes:
        rows: how many data rows the file has.
        limit: how many problems `problems` returns in full (`DETAIL_LIMIT`).
        bad: rows with at least one problem (the rows `skip_invalid` drops).
    """

    rows: int
    limit: int = DETAIL_LIMIT
    bad: np.ndarray = field(init=False)
    _parts: list[_Part] = field(default_factory=list)
    _columns: dict[str | None, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bad = np.zeros(self.rows, dtype=bool)

    @property
    def count(self) -> int:
        """How many problems were found (a row may have several)."""
        return sum(part.count for part in self._parts)

    def bad_in(self, column: str) -> np.ndarray:
        """Rows with a problem in `column` (their parsed value is a placeholder)."""
        return self._columns.get(column, np.zeros(self.rows, dtype=bool))

    def add(
        self,
        mask: np.ndarray,
        column: str | None,
        reason: str | Callable[[int], str],
        summary: str | None = None,
    ) -> None:
        """Record a problem for every row in `mask`.

        Args:
            mask: one boolean per row of the file.
            column: the column in the file, or None.
            reason: the message, or a function that words it for a 0-based row
                (called for the first `limit` rows only).
            summary: the kind of problem without a value, to count the rows
                beyond `limit` by; defaults to `reason` when that is a string.
        """
        mask = np.asarray(mask, dtype=bool)
        count = int(np.count_nonzero(mask))
        if count == 0:
            return
        self.bad |= mask
        if column in self._columns:
            self._columns[column] |= mask
        else:
            self._columns[column] = mask.copy()
        positions = _first_rows(mask, self.limit)
        if isinstance(reason, str):
            reasons = [reason] * len(positions)
            summary = reason if summary is None else summary
        else:
            assert summary is not None, "a reason worded per row needs a summary"
            reasons = [reason(int(position)) for position in positions]
        self._parts.append(_Part(positions, column, reasons, summary, count))

    def problems(
        self,
        file: str,
        lines: Callable[[np.ndarray], np.ndarray] | None,
        column_order: list[str],
    ) -> list[Problem]:
        """The first `limit` problems, by row and then by column in `column_order`."""
        if not self._parts:
            return []
        positions = np.concatenate([part.positions for part in self._parts])
        columns = [part.column for part in self._parts for _ in range(len(part.positions))]
        reasons = [reason for part in self._parts for reason in part.reasons]
        rank = {column: index for index, column in enumerate(column_order)}
        ranks = np.array([rank.get(column or "", -1) for column in columns], dtype=np.int64)
        order = np.lexsort((ranks, positions))[: self.limit]
        numbers = lines(positions[order]) if lines is not None else None
        return [
            Problem(
                file,
                int(positions[i]) + 1,
                columns[i],
                reasons[i],
                None if numbers is None else int(numbers[k]),
            )
            for k, i in enumerate(order)
        ]

    def tallies(self, file: str, column_order: list[str]) -> list[Tally]:
        """Every problem counted by column (in `column_order`) and kind."""
        counts: dict[tuple[str | None, str], int] = {}
        for part in self._parts:
            key = (part.column, part.summary)
            counts[key] = counts.get(key, 0) + part.count
        rank = {column: index for index, column in enumerate(column_order)}
        keys = sorted(counts, key=lambda key: rank.get(key[0] or "", -1))
        return [Tally(file, column, summary, counts[column, summary]) for column, summary in keys]


@dataclass
class Checked:
    """One file after validation.

    Attributes:
        frame: typed columns named as the loader names them, one per input row
            (placeholders where a value was bad: drop `findings.bad` rows).
        findings: the problems found.
        first_rows: for files with an id, the 0-based row of each id's first
            occurrence, indexed by id.
    """

    frame: pd.DataFrame
    findings: Findings
    first_rows: pd.Series | None = None


def check_table(
    fields: tuple[Field, ...],
    raw: pd.DataFrame,
    where: Callable[[int], str],
) -> Checked:
    """Parse and check every column of one file.

    Args:
        fields: the file's rules; columns absent from `raw` must be optional.
        raw: the columns as read, named as in `fields`.
        where: describes a 0-based row for messages that point at another row
            ("row 2 (line 3)").
    """
    findings = Findings(len(raw))
    columns: dict[str, pd.Series] = {}
    first_rows = None
    for spec in fields:
        if spec.name not in raw:
            columns[spec.column] = _constant(spec.empty, len(raw))
            continue
        parsed = PARSERS[PARSER_OF[spec.kind]](raw[spec.name])
        columns[spec.column] = _check_column(spec, raw[spec.name], parsed, findings)
        if spec.kind == "id":
            first_rows = _check_id(spec.name, columns[spec.column], findings, where)
    frame = pd.DataFrame(columns, index=pd.RangeIndex(len(raw)))
    return Checked(frame, findings, first_rows)


def check_rows(kind: str, checked: Checked) -> None:
    """Rules that tie two columns of a row together (the schema's multi-column CHECKs).

    Only `clicked OR watch_time_minutes = 0` exists; `live_since` is derived by the
    importer so that `is_live OR live_since IS NULL` always holds.
    """
    if kind != "interactions":
        return
    findings = checked.findings
    watch = checked.frame["watch_time_minutes"].to_numpy(dtype="float64")
    usable = ~findings.bad_in("clicked") & ~findings.bad_in("watch_time_minutes")
    unclicked = usable & ~checked.frame["clicked"].to_numpy(dtype=bool)
    findings.add(
        unclicked & (np.nan_to_num(watch) != 0),
        "watch_time_minutes",
        lambda i: f"must be 0 when clicked is false, got {show(watch[i])}",
        "must be 0 when clicked is false",
    )


def _constant(value: object, rows: int) -> pd.Series:
    if value is None:
        return pd.Series(pd.NaT, index=pd.RangeIndex(rows), dtype="datetime64[us, UTC]")
    if isinstance(value, list):
        return pd.Series([[] for _ in range(rows)], dtype=object)
    return pd.Series(value, index=pd.RangeIndex(rows))


def _check_column(spec: Field, raw: pd.Series, parsed: Parsed, findings: Findings) -> pd.Series:
    """Report empty, unparsable and out-of-range values; return the typed column."""
    values, missing, bad = parsed.values, parsed.missing, parsed.bad
    name = spec.name
    if spec.kind != "list":  # an empty list cell is simply the empty list
        if spec.empty is REQUIRED:
            findings.add(missing, name, "missing (empty or null): a value is required")
        elif missing.any():
            values = values.where(~missing, spec.empty)
    findings.add(
        bad,
        name,
        lambda i: f"expected {parsed.expected}, got {show(raw.iat[i])}",
        f"expected {parsed.expected}",
    )
    if spec.kind not in ("float", "int"):
        return values
    numbers = values.to_numpy(dtype="float64", na_value=np.nan)
    usable = ~bad & ~np.isnan(numbers)
    infinite = usable & ~np.isfinite(numbers)
    findings.add(
        infinite,
        name,
        lambda i: f"expected a finite number, got {show(raw.iat[i])}",
        "expected a finite number",
    )
    usable &= ~infinite
    if spec.kind == "int":
        fraction = usable & (numbers != np.floor(np.where(usable, numbers, 0)))
        findings.add(
            fraction,
            name,
            lambda i: f"expected a whole number, got {show(numbers[i])}",
            "expected a whole number",
        )
        usable &= ~fraction
    _check_range(spec, numbers, usable, findings)
    if spec.kind == "int":
        return pd.Series(np.where(usable, numbers, 0).astype(np.int64), index=values.index)
    return pd.Series(numbers, index=values.index)


def _check_range(spec: Field, numbers: np.ndarray, usable: np.ndarray, findings: Findings) -> None:
    bounds = spec.bounds
    if bounds is None or (bounds.low is None and bounds.high is None):
        return
    low, high = bounds.low, bounds.high
    outside = np.zeros(len(numbers), dtype=bool)
    safe = np.where(usable, numbers, 0)
    if low is not None:
        outside |= usable & ((safe <= low) if bounds.low_open else (safe < low))
    if high is not None:
        outside |= usable & (safe > high)
    allowed = _range_text(bounds)
    findings.add(
        outside,
        spec.name,
        lambda i: f"out of range: {show(numbers[i])} ({allowed})",
        f"out of range ({allowed})",
    )


def _range_text(bounds: Bounds) -> str:
    """What `bounds` allows, for messages: "must be between -90 and 90", "must be > 0"."""
    low, high = bounds.low, bounds.high
    low_text = None if low is None else show(float(low))
    high_text = None if high is None else show(float(high))
    if low is not None and high is not None and not bounds.low_open:
        return f"must be between {low_text} and {high_text}"
    parts = []
    if low is not None:
        parts.append(f"{'>' if bounds.low_open else '>='} {low_text}")
    if high is not None:
        parts.append(f"<= {high_text}")
    return "must be " + " and ".join(parts)


def _check_id(
    name: str, ids: pd.Series, findings: Findings, where: Callable[[int], str]
) -> pd.Series:
    """Report ids too long to index and every repeat after an id's first row.

    Returns:
        The 0-based row of each id's first occurrence, indexed by id.
    """
    lengths = ids.str.len().to_numpy(dtype="int64")
    findings.add(
        lengths > ID_MAX_LENGTH,
        name,
        lambda i: f"too long: {lengths[i]} characters (at most {ID_MAX_LENGTH})",
        f"too long (at most {ID_MAX_LENGTH} characters)",
    )
    present = ids[ids != ""]
    repeat = present.duplicated(keep="first")
    first_rows = pd.Series(
        present.index[~repeat.to_numpy()], index=present[~repeat].to_numpy(dtype=object)
    )
    if repeat.any():
        repeats = present[repeat]
        firsts = first_rows.reindex(repeats.to_numpy(dtype=object)).to_numpy()
        first_of = dict(zip(repeats.index, firsts, strict=True))
        mask = np.zeros(len(ids), dtype=bool)
        mask[repeats.index.to_numpy()] = True
        findings.add(
            mask,
            name,
            lambda i: f"duplicate {name} {show(ids.iat[i])}: first seen at {where(first_of[i])}",
            f"duplicate {name}",
        )
    return first_rows


def check_references(
    rows: Checked,
    column: str,
    target: Checked,
    target_file: str,
    noun: str,
    where: Callable[[int], str],
    *,
    cascade: bool,
) -> None:
    """Report values of `rows[column]` that name no row of `target`.

    Args:
        rows: the referencing file (interactions).
        column: the referencing column, e.g. `user_id`.
        target: the referenced file, already checked.
        target_file: its name for messages.
        noun: what a target row is, e.g. "user".
        where: describes a 0-based row of `target` for messages.
        cascade: also report references to target rows that have problems
            themselves (they will be skipped, so these rows must go too).
    """
    assert target.first_rows is not None, "the target file has no id column"
    refs = rows.frame[column]
    positions = target.first_rows.reindex(refs.to_numpy(dtype=object)).to_numpy()
    known = ~np.isnan(positions.astype("float64"))
    checkable = (refs != "").to_numpy(dtype=bool)
    rows.findings.add(
        checkable & ~known,
        column,
        lambda i: f"unknown {column} {show(refs.iat[i])}: no such {noun} in {target_file}",
        f"unknown {column}: no such {noun} in {target_file}",
    )
    if not cascade:
        return
    target_bad = target.findings.bad[np.where(known, positions, 0).astype(np.int64)]
    rows.findings.add(
        checkable & known & target_bad,
        column,
        lambda i: (
            f"{noun} {show(refs.iat[i])} was skipped: {where(int(positions[i]))}"
            f" of {target_file} is invalid"
        ),
        f"the {noun} was skipped: its row of {target_file} is invalid",
    )

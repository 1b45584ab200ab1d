"""Import users, streams and interactions from CSV or parquet files.

`read_dataset` reads and validates the files and returns a `seed.loader.Dataset`
ready for `seed.loader.load`. It checks everything the database would check
(and a little more, such as NaN), so a file that passes never makes the load
fail half-way; a file that does not pass is refused with its problems, by file,
row number and column (the first `DETAIL_LIMIT` in full, all of them counted by
column and reason), before anything touches the database.

Columns follow the seed project's data models; extra columns are ignored. Values
that are not in the files are filled in as follows:

- `typical_duration_minutes` absent or empty: `DEFAULT_DURATION_MINUTES` (120).
- `is_live` absent or empty: true. The seed data has no live state, and a
  recommender of live streams with nothing live would have nothing to show.
- `current_viewer_count`: `avg_viewer_count` for live streams, 0 otherwise.
- `live_since`: `now` for live streams, NULL otherwise (the schema requires it).
- `updated_at`: `now`.
- `registration_date` absent or empty: NULL. `description` empty: "".
- `preferred_categories` / `tags` empty: the empty list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from app.db.limits import (
    DEFAULT_DURATION_MINUTES,
    INTERACTION_COLUMNS,
    STREAM_COLUMNS,
    USER_COLUMNS,
)
from seed.loader import Dataset
from seed.problems import (
    DETAIL_LIMIT,
    PRINT_LIMIT,
    InvalidDataError,
    Problem,
    Tally,
    format_problems,
)
from seed.tabular import CsvLines, header, read
from seed.validate import (
    ALIASES,
    FIELDS,
    Checked,
    check_references,
    check_rows,
    check_table,
)

__all__ = [
    "DEFAULT_DURATION_MINUTES",
    "DETAIL_LIMIT",
    "ImportReport",
    "InvalidDataError",
    "Problem",
    "Tally",
    "format_problems",
    "read_dataset",
]


@dataclass
class ImportReport:
    """What an import read and kept.

    Attributes:
        rows_read: data rows per file kind ("users", "streams", "interactions").
        rows_kept: rows in the returned dataset, per kind.
        skipped: why rows were dropped (only with `skip_invalid`), the first
            `DETAIL_LIMIT` problems in full; a row with several problems appears
            once per problem.
        tallies: every problem behind the dropped rows, counted by file,
            column and reason.
    """

    rows_read: dict[str, int] = field(default_factory=dict)
    rows_kept: dict[str, int] = field(default_factory=dict)
    skipped: list[Problem] = field(default_factory=list)
    tallies: list[Tally] = field(default_factory=list)

    @property
    def problem_count(self) -> int:
        """How many problems the dropped rows had, including those not in `skipped`."""
        return max(len(self.skipped), sum(tally.count for tally in self.tallies))

    def __str__(self) -> str:
        counts = ", ".join(
            f"{kind} {self.rows_kept[kind]:,} of {read:,}" for kind, read in self.rows_read.items()
        )
        text = f"kept {counts}"
        if self.skipped or self.tallies:
            dropped = sum(read - self.rows_kept[kind] for kind, read in self.rows_read.items())
            listed = format_problems(self.skipped, total=self.problem_count, tallies=self.tallies)
            text += f"; skipped {dropped:,} invalid rows:\n{listed}"
        return text


@dataclass
class _Source:
    """One input file once its header is known."""

    kind: str
    path: Path
    label: str
    columns: dict[str, str]  # field name -> column name in the file
    lines: CsvLines | None = None

    def where(self, position: int) -> str:
        """A 0-based row as a person counts it: "row 3 (line 4)"."""
        text = f"row {position + 1}"
        if self.lines is not None:
            text += f" (line {self.lines.line_of(position)})"
        return text


def read_dataset(
    users: Path,
    streams: Path,
    interactions: Path | None = None,
    *,
    skip_invalid: bool = False,
    allow_empty: bool = False,
    now: datetime | None = None,
) -> tuple[Dataset, ImportReport]:
    """Read and validate the import files; return the dataset to load and a report.

    The format is chosen by extension: `.csv`, `.csv.gz`, `.parquet` or `.pq`.

    Args:
        users: the users file.
        streams: the streams file.
        interactions: the interactions file, if any (otherwise none are loaded).
        skip_invalid: drop invalid rows instead of refusing the input; dropping a
            user or stream also drops the interactions that reference it. Problems
            with a whole file (unreadable, a missing column) are always fatal.
        allow_empty: accept a users or streams file with no data rows (or none
            left after skipping), which empties the database. Without it such a
            file is refused: a header-only export would silently replace the whole
            dataset with nothing. An empty interactions file is always accepted
            (it is the same as giving none).
        now: the time written to `updated_at` and to `live_since` of live streams;
            defaults to the current time. A naive datetime is taken as UTC.

    Returns:
        The dataset for `seed.loader.load`, and what was read, kept and skipped.

    Raises:
        InvalidDataError: with the problems found, when any file cannot be used,
            when a row is invalid and `skip_invalid` is false, or when users or
            streams would be empty and `allow_empty` is false.
    """
    moment = _as_utc(now or datetime.now(UTC))
    paths = {"users": users, "streams": streams}
    if interactions is not None:
        paths["interactions"] = interactions
    sources = _open(paths)
    checked = {kind: _check(source) for kind, source in sources.items()}
    if "interactions" in checked:
        for column, kind, noun in (
            ("user_id", "users", "user"),
            ("stream_id", "streams", "stream"),
        ):
            check_references(
                checked["interactions"],
                column,
                checked[kind],
                sources[kind].label,
                noun,
                sources[kind].where,
                cascade=skip_invalid,
            )

    problems: list[Problem] = []
    tallies: list[Tally] = []
    for kind, result in checked.items():
        order = [spec.name for spec in FIELDS[kind]]
        if len(problems) < DETAIL_LIMIT:
            found = result.findings.problems(sources[kind].label, sources[kind].lines, order)
            problems.extend(found[: DETAIL_LIMIT - len(problems)])
        tallies.extend(result.findings.tallies(sources[kind].label, order))
    if tallies and not skip_invalid:
        raise InvalidDataError(problems, tallies)

    kept = {kind: result.frame[~result.findings.bad] for kind, result in checked.items()}
    if not allow_empty:
        _refuse_empty(sources, checked, kept)
    report = ImportReport(
        rows_read={kind: len(result.frame) for kind, result in checked.items()},
        rows_kept={kind: len(frame) for kind, frame in kept.items()},
        skipped=problems,
        tallies=tallies,
    )
    dataset = Dataset(users=_users(kept["users"]), streams=_streams(kept["streams"], moment))
    if "interactions" in kept:
        dataset.interactions = _interactions(kept["interactions"])
    return dataset, report


def _refuse_empty(
    sources: dict[str, _Source], checked: dict[str, Checked], kept: dict[str, pd.DataFrame]
) -> None:
    """Refuse to replace the users or streams with nothing (see `allow_empty`)."""
    problems = []
    for kind in ("users", "streams"):
        if len(kept[kind]):
            continue
        read = len(checked[kind].frame)
        what = f"has no valid rows left (all {read:,} are invalid)"
        if read == 0:
            what = "has no data rows, only a header"
        problems.append(
            Problem(
                sources[kind].label,
                None,
                None,
                f"{what}: importing it would empty the database;"
                " pass --allow-empty (allow_empty=True) to do that on purpose",
            )
        )
    if problems:
        raise InvalidDataError(problems)


def _check(source: _Source) -> Checked:
    """Read one file's columns and check them on their own (references come later)."""
    fields = FIELDS[source.kind]
    texts = {
        source.columns[spec.name]
        for spec in fields
        if spec.kind in ("id", "text", "long_text") and spec.name in source.columns
    }
    raw = read(source.path, list(source.columns.values()), texts)
    source.lines = raw.lines
    frame = raw.frame.rename(columns={column: name for name, column in source.columns.items()})
    checked = check_table(fields, frame, source.where)
    check_rows(source.kind, checked)
    return checked


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _open(paths: dict[str, Path]) -> dict[str, _Source]:
    """Read every header and match columns; refuse all unusable files at once."""
    sources: dict[str, _Source] = {}
    problems: list[Problem] = []
    for kind, path in paths.items():
        path = Path(path)
        label = str(path)
        try:
            names = header(path)
        except InvalidDataError as error:
            problems.extend(error.problems)
            continue
        columns: dict[str, str] = {}
        for spec in FIELDS[kind]:
            found = next(
                (name for name in (spec.name, *ALIASES.get(spec.name, ())) if name in names), None
            )
            if found is not None:
                columns[spec.name] = found
            elif not spec.optional:
                problems.append(
                    Problem(label, None, spec.name, f"required column is missing; {_found(names)}")
                )
        sources[kind] = _Source(kind, path, label, columns)
    if problems:
        raise InvalidDataError(problems)
    return sources


def _found(names: list[str]) -> str:
    shown = ", ".join(names[: PRINT_LIMIT // 2])
    more = f" and {len(names) - PRINT_LIMIT // 2} more" if len(names) > PRINT_LIMIT // 2 else ""
    return f"the header has: {shown}{more}" if names else "the header is empty"


def _users(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[:, list(USER_COLUMNS)].reset_index(drop=True)


def _streams(frame: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """Add the live state the files do not carry (see the module docstring)."""
    out = frame.reset_index(drop=True)
    live = out["is_live"].to_numpy(dtype=bool)
    out["is_live"] = live
    out["current_viewer_count"] = np.where(live, out["avg_viewer_count"].to_numpy(), 0)
    stamp = pd.Series(pd.Timestamp(now), index=out.index).astype("datetime64[us, UTC]")
    out["live_since"] = stamp.where(live)
    out["updated_at"] = stamp
    return out.loc[:, list(STREAM_COLUMNS)]


def _interactions(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[:, list(INTERACTION_COLUMNS)].reset_index(drop=True)

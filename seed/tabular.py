"""Read one CSV or parquet file into a frame of raw columns, and locate its rows.

CSV is read by pyarrow with every column as text (about five times faster than
pandas' own reader on a million rows) so that `seed.parsing` sees exactly what
the file holds and can name a bad value instead of silently turning it into NaN.
Quoted values may span lines, so a data row's line number is not its index plus
two: `CsvLines` finds it by rescanning the file, only when a problem needs it.
"""

from __future__ import annotations

import csv
import gzip
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from seed.problems import DETAIL_LIMIT, InvalidDataError, Problem, Tally

Format = Literal["csv", "parquet"]
SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def file_format(path: Path) -> Format:
    """The format named by the file's extension (case-insensitive).

    Raises:
        InvalidDataError: the extension is not one of `SUFFIXES`.
    """
    name = path.name.lower()
    for suffix, fmt in SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    known = ", ".join(SUFFIXES)
    raise _refuse(path, f"unsupported file type {path.name!r}: use one of {known}")


def _refuse(path: Path, reason: str) -> InvalidDataError:
    return InvalidDataError([Problem(str(path), None, None, reason)])


@contextmanager
def _open_text(path: Path) -> Iterator[IO[str]]:
    """The CSV as text; `utf-8-sig` drops a byte-order mark some spreadsheets write."""
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8-sig", newline="") as handle:
            yield handle
    else:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            yield handle


@contextmanager
def _big_fields() -> Iterator[None]:
    """Let the csv module read values longer than its 128 KiB default (long descriptions)."""
    previous = csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of each CSV record after the header, blank lines skipped.

    Blank lines are skipped because pyarrow skips them too, so the n-th record
    here is the n-th row of the frame.
    """
    with _open_text(path) as handle, _big_fields():
        reader = csv.reader(handle)
        next(reader, None)
        previous = reader.line_num
        for record in reader:
            if record:
                yield previous + 1, record
            previous = reader.line_num


@dataclass
class CsvLines:
    """Line numbers of a CSV's data rows (header = line 1), computed once when first asked.

    Attributes:
        path: the CSV file.
        rows: how many data rows pyarrow read from it; the scan must agree.
    """

    path: Path
    rows: int
    _lines: np.ndarray | None = None

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        """Line number of each 0-based data row in `positions`."""
        lines: np.ndarray = self._all()[positions]
        return lines

    def line_of(self, position: int) -> int:
        """Line number of one 0-based data row."""
        return int(self._all()[position])

    def _all(self) -> np.ndarray:
        if self._lines is None:
            lines = _quote_parity_lines(self.path)
            if len(lines) != self.rows:  # a quote inside an unquoted value: ask the csv module
                lines = np.fromiter((line for line, _ in _records(self.path)), dtype=np.int64)
            self._lines = lines
        return self._lines


def _quote_parity_lines(path: Path) -> np.ndarray:
    """Start line of every data record, found with array operations over the raw bytes.

    A newline ends a record exactly when an even number of quote characters comes
    before it: quoted values open and close with one quote each, and a quote inside
    them is doubled. This is about five times faster than the csv module, and is
    exact for any file that quotes the values holding quotes, as CSV writers do;
    `CsvLines` checks the record count and falls back to the csv module otherwise.
    """
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    else:
        data = path.read_bytes()
    raw = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(raw == ord("\n"))
    quotes = np.flatnonzero(raw == ord('"'))
    ends_record = np.searchsorted(quotes, newlines) % 2 == 0
    starts = newlines[ends_record] + 1
    start_lines = np.flatnonzero(ends_record) + 2  # the line after the k-th newline is k + 2
    # Blank lines are not records (pyarrow skips them): nothing, "\n" or "\r\n" follows.
    size = len(raw)
    first = raw[np.minimum(starts, size - 1)] if size else starts
    second = raw[np.minimum(starts + 1, size - 1)] if size else starts
    blank = (
        (starts >= size)
        | (first == ord("\n"))
        | ((first == ord("\r")) & ((starts + 1 >= size) | (second == ord("\n"))))
    )
    lines: np.ndarray = start_lines[~blank].astype(np.int64)
    return lines


@dataclass
class RawTable:
    """One file's wanted columns as read, before any conversion.

    Attributes:
        frame: the wanted columns that exist, named as in the file.
        lines: for CSV, maps 0-based row positions to line numbers; None for parquet.
    """

    frame: pd.DataFrame
    lines: CsvLines | None


def header(path: Path) -> list[str]:
    """Column names, trimmed; a later duplicate of a name is renamed `name.1`, `name.2`.

    Raises:
        InvalidDataError: unknown extension, missing or unreadable file, no header.
    """
    fmt = file_format(path)
    if not path.is_file():
        raise _refuse(path, "no such file")
    try:
        if fmt == "parquet":
            names = list(pq.read_schema(path).names)
        else:
            with _open_text(path) as handle, _big_fields():
                names = next(csv.reader(handle), [])
            if not names:
                raise _refuse(path, "the file is empty: expected a header row")
    except (OSError, UnicodeDecodeError, csv.Error, pa.ArrowException) as error:
        raise _refuse(path, f"cannot read the file: {_short(error)}") from error
    return _unique([name.strip() for name in names])


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}.{count}")
    return out


def read(path: Path, columns: list[str], texts: set[str]) -> RawTable:
    """Read `columns` (all present in `header(path)`).

    Args:
        path: a file whose extension `file_format` accepts.
        columns: the columns to read; others are never parsed.
        texts: columns to deliver as text even from parquet (ids, names), so an
            integer id column becomes "42", not the float 42.0 pandas makes of
            integers with nulls.

    Raises:
        InvalidDataError: the file cannot be read, or CSV rows have the wrong
            number of fields (always fatal: such a row cannot be trusted).
    """
    try:
        if file_format(path) == "parquet":
            return RawTable(_read_parquet(path, columns, texts), None)
        frame = _read_csv(path, columns)
        return RawTable(frame, CsvLines(path, len(frame)))
    except (OSError, UnicodeDecodeError, pa.ArrowException) as error:
        raise _refuse(path, f"cannot read the file: {_short(error)}") from error


def _short(error: Exception) -> str:
    """The first line of an error, cut short: pyarrow quotes whole rows in its messages."""
    if isinstance(error, UnicodeDecodeError):
        return f"it is not UTF-8 text ({error.reason}, byte 0x{error.object[error.start]:02x})"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    names = header(path)
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                include_columns=columns,
                column_types=dict.fromkeys(columns, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as error:
        malformed, count = _malformed_rows(path, len(names))
        if malformed:
            reason = f"has the wrong number of fields (the header has {len(names)})"
            raise InvalidDataError(malformed, [Tally(str(path), None, reason, count)]) from error
        raise
    frame: pd.DataFrame = table.to_pandas()
    return frame


def _malformed_rows(path: Path, width: int) -> tuple[list[Problem], int]:
    """Rows whose field count differs from the header's, for a readable refusal.

    Returns:
        The first `DETAIL_LIMIT` of them, and how many there are in all.
    """
    problems: list[Problem] = []
    count = 0
    try:
        for row, (line, fields) in enumerate(_records(path), start=1):
            if len(fields) != width:
                count += 1
                if len(problems) < DETAIL_LIMIT:
                    reason = f"has {len(fields)} fields, the header has {width}"
                    problems.append(Problem(str(path), row, None, reason, line))
    except (csv.Error, UnicodeDecodeError):
        return [], 0
    return problems, count


def _read_parquet(path: Path, columns: list[str], texts: set[str]) -> pd.DataFrame:
    table = pq.read_table(path, columns=columns)
    arrays = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if pa.types.is_dictionary(kind):
            column = pc.cast(column, kind.value_type)
            kind = kind.value_type
        if pa.types.is_date(kind):
            column = pc.cast(column, pa.timestamp("s"))
        elif name in texts and (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            column = pc.cast(column, pa.string())
        arrays.append(column)
    # Lists stay arrow-backed, so `seed.parsing` can check them without a Python loop.
    frame: pd.DataFrame = pa.table(arrays, names=table.column_names).to_pandas(
        types_mapper=_keep_lists
    )
    return frame


def _keep_lists(kind: pa.DataType) -> pd.ArrowDtype | None:
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pd.ArrowDtype(kind)
    return None

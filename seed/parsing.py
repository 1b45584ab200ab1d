"""Turn raw column values (CSV text or parquet types) into the loader's types.

Every parser takes one column as read from a file and returns a `Parsed`: the
converted values plus two masks, `missing` (null or empty) and `bad` (present but
not convertible). The parsers never raise on bad data, so one pass can report
every problem in a file; `seed.validate` decides what a missing value means for
each column.

CSV columns arrive as text. Parquet columns arrive typed, but a producer may have
written numbers as strings or booleans as 0/1, so anything that is not already
the right type goes through the same text rules as CSV.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api import types as ptypes

TRUE_WORDS = ("true", "1", "1.0", "yes")
FALSE_WORDS = ("false", "0", "0.0", "no")
LIST_SEPARATORS = re.compile(r"[|;]")
#: PostgreSQL text cannot hold NUL, so COPY would refuse any value containing one.
NUL = "\x00"
#: Control characters a one-line text (an id, a city, a title, a list element) may not
#: hold: all of C0, DEL and C1 but the tab. A CR or an ESC in a city breaks CSV round
#: trips and terminals; the API refuses the same (app/api/schemas.py).
CONTROL = "[\x00-\x08\x0a-\x1f\x7f-\x9f]"
#: Long free text (a description) may also hold line breaks (LF, CR: CRLF too).
LONG_CONTROL = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_CONTROL = re.compile(CONTROL)


@dataclass
class Parsed:
    """One column after conversion.

    Attributes:
        values: converted values; placeholders (NaN, False, NaT, []) where the
            input was missing or bad.
        missing: input was null or empty (after trimming whitespace).
        bad: input was present but does not convert; `expected` says what would.
        expected: what a good value looks like, for error messages.
    """

    values: pd.Series
    missing: np.ndarray
    bad: np.ndarray
    expected: str


def as_text(column: pd.Series) -> pd.Series:
    """Return `column` as trimmed strings, missing values as empty strings."""
    if not isinstance(column.dtype, pd.StringDtype):
        column = column.astype("str")
    return column.str.strip().fillna("")


def parse_text(column: pd.Series) -> Parsed:
    """Trimmed one-line text; a control character other than tab makes a value bad."""
    return _text(column, CONTROL, "text without control characters (tab aside)")


def parse_long_text(column: pd.Series) -> Parsed:
    """Trimmed free text: tab, LF and CR allowed, other control characters bad."""
    return _text(column, LONG_CONTROL, "text without control characters (tab, line breaks aside)")


def _text(column: pd.Series, control: str, expected: str) -> Parsed:
    text = as_text(column)
    missing = (text == "").to_numpy(dtype=bool)
    bad = text.str.contains(control, regex=True).to_numpy(dtype=bool)
    return Parsed(text, missing, bad, expected)


def parse_number(column: pd.Series) -> Parsed:
    """Floats (NaN where missing or bad); inf is kept, the range checks refuse it."""
    if ptypes.is_numeric_dtype(column) and not ptypes.is_bool_dtype(column):
        values = column.to_numpy(dtype="float64", na_value=np.nan)
        missing = np.isnan(values)
        bad = np.zeros(len(values), dtype=bool)
    else:
        text = as_text(column)
        missing = (text == "").to_numpy(dtype=bool)
        values = _floats(text.where(~missing))
        bad = ~missing & np.isnan(values)
    return Parsed(pd.Series(values, index=column.index), missing, bad, "a number")


def _arrow_text(text: pd.Series) -> pa.Array:
    """The arrow array behind a text column (no copy for pyarrow-backed strings)."""
    array = pa.array(text, type=pa.string())
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _floats(text: pd.Series) -> np.ndarray:
    """Text to float64, NaN where it is not a number.

    Arrow's cast is about seven times faster than `pd.to_numeric` but all-or-nothing,
    so it serves the usual all-valid column and pandas finds the bad values.
    """
    try:
        return np.asarray(
            pc.cast(_arrow_text(text), pa.float64()).to_numpy(zero_copy_only=False),
            dtype="float64",
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def parse_bool(column: pd.Series) -> Parsed:
    """Booleans from bool columns, 0/1 numbers or the words in TRUE_WORDS/FALSE_WORDS."""
    if ptypes.is_bool_dtype(column):
        missing = column.isna().to_numpy(dtype=bool)
        truth = column.fillna(False).to_numpy(dtype=bool)
        bad = np.zeros(len(column), dtype=bool)
    elif ptypes.is_numeric_dtype(column):
        numbers = column.to_numpy(dtype="float64", na_value=np.nan)
        missing = np.isnan(numbers)
        truth = numbers == 1
        bad = ~missing & ~truth & (numbers != 0)
    else:
        words = as_text(column).str.lower()
        missing = (words == "").to_numpy(dtype=bool)
        truth = words.isin(TRUE_WORDS).to_numpy(dtype=bool)
        bad = ~missing & ~truth & ~words.isin(FALSE_WORDS).to_numpy(dtype=bool)
    values = pd.Series(truth, index=column.index, dtype=bool)
    return Parsed(values, missing, bad, "true/false, 1/0 or yes/no")


def parse_timestamp(column: pd.Series) -> Parsed:
    """UTC timestamps from datetime columns or ISO 8601 text; naive ones are taken as UTC."""
    if ptypes.is_datetime64_any_dtype(column):
        stamps = column.dt.tz_localize("UTC") if column.dt.tz is None else column
        missing = column.isna().to_numpy(dtype=bool)
        bad = np.zeros(len(column), dtype=bool)
    else:
        text = as_text(column)
        missing = (text == "").to_numpy(dtype=bool)
        stamps = pd.to_datetime(text.where(~missing), utc=True, errors="coerce", format="ISO8601")
        bad = ~missing & stamps.isna().to_numpy(dtype=bool)
    values = stamps.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    return Parsed(values, missing, bad, "an ISO 8601 timestamp")


def parse_list_text(text: str) -> list[str] | None:
    """Parse one list written as text; None if it is not a list we understand.

    Accepted: a JSON list (`["a","b"]`), a Python list (`['a', 'b']`), a numpy
    array as printed (`['a' 'b']`, what `DataFrame.to_csv` writes), a
    PostgreSQL array literal (`{a,"b c"}`) or a `|`- or `;`-separated string
    (`a|b`, elements trimmed, empty ones dropped). Commas do not separate
    elements outside brackets and braces: `a, b` is the one element `a, b`.
    Empty text is the empty list. Elements must be strings or numbers.
    """
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        items = _bracketed(text)
    elif text.startswith("{") and text.endswith("}"):
        items = _pg_array(text[1:-1])
    else:
        items = [part.strip() for part in LIST_SEPARATORS.split(text) if part.strip()]
    if items is None or any(_CONTROL.search(item) for item in items):
        return None
    return items


def _bracketed(text: str) -> list[str] | None:
    """A JSON list, or failing that a list as Python or numpy prints it."""
    try:
        value = json.loads(text)
    except ValueError:
        return _python_list(text)
    if not isinstance(value, list):
        return None
    return _strings(value)


_QUOTED = r"""'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*\""""
_NUMBER = r"[-+]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][-+]?\d+)?"
#: One element of a printed list and what follows it: a comma, spaces or the end.
_ELEMENT = re.compile(
    rf"\s*(?:(?:np|numpy)\.\w+\(\s*({_QUOTED}|{_NUMBER})\s*\)|({_QUOTED}|{_NUMBER}))"
    r"(\s*,\s*|\s+|\s*$)",
    re.DOTALL,
)


def _python_list(text: str) -> list[str] | None:
    """A list as Python or numpy prints it; None for anything else.

    `str(list)` separates elements with commas, `['a', 'b']` (under numpy 2 a list
    of numpy strings prints `[np.str_('a'), np.str_('b')]`). `str(ndarray)`, which
    `DataFrame.to_csv` writes for a cell holding an array, separates them with
    spaces alone, `['a' 'b']`, and wraps a long array over several lines. Python
    would read that as one concatenated string, so each element is read on its
    own. Elements are string or number literals; separators are commas between
    every two elements (a trailing one allowed) or whitespace alone.
    """
    if not text.endswith("]"):
        return None
    end = len(text) - 1
    if not text[1:end].strip():
        return []
    literals: list[str] = []
    separators: list[str] = []
    position = 1
    while position < end:
        match = _ELEMENT.match(text, position, end)
        if match is None:
            return None
        literals.append(match.group(1) or match.group(2))
        separators.append("," if "," in match.group(3) else " " if match.group(3) else "")
        position = match.end()
    between = set(separators[:-1])
    if len(between) > 1 or (separators[-1] == "," and " " in between):
        return None  # `['a' 'b', 'c']`: neither Python's nor numpy's way
    elements: list[object] = []
    for literal in literals:
        if literal[0] in "'\"" and "\\" not in literal:
            elements.append(literal[1:-1])
            continue
        try:
            elements.append(ast.literal_eval(literal))
        except (ValueError, SyntaxError):
            return None
    return _strings(elements)


def _strings(items: object) -> list[str] | None:
    """Elements as strings: numbers are written out, anything else is refused."""
    out: list[str] = []
    for item in items:  # type: ignore[attr-defined]
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, int | float | np.integer | np.floating) and not isinstance(
            item, bool | np.bool_
        ):
            out.append(str(item))
        else:
            return None
    return out


def _pg_array(body: str) -> list[str] | None:
    """The inside of a one-dimensional PostgreSQL array literal, `a,"b c",d`."""
    items: list[str] = []
    i, end = 0, len(body)
    if not body.strip():
        return items
    while True:
        while i < end and body[i].isspace():
            i += 1
        if i < end and body[i] == '"':
            i += 1
            chars: list[str] = []
            while i < end and body[i] != '"':
                if body[i] == "\\":
                    i += 1
                if i < end:
                    chars.append(body[i])
                    i += 1
            if i >= end:
                return None  # unterminated quote
            i += 1
            items.append("".join(chars))
        else:
            start = i
            while i < end and body[i] != ",":
                if body[i] in '{}"\\':
                    return None  # nested arrays and stray quotes are not supported
                i += 1
            element = body[start:i].strip()
            if not element or element.upper() == "NULL":
                return None
            items.append(element)
        while i < end and body[i].isspace():
            i += 1
        if i == end:
            return items
        if body[i] != ",":
            return None
        i += 1


def parse_list(column: pd.Series) -> Parsed:
    """Lists of strings from parquet list columns or from text (see `parse_list_text`).

    Values are parsed one by one (there is no vectorised way to read these
    notations), but each distinct text only once: tag lists repeat a lot.
    """
    if isinstance(column.dtype, pd.StringDtype):
        parsed = _distinct_texts(column)
    elif _is_arrow_list_of_scalars(column):
        parsed = _distinct_lists(column)
    else:
        parsed = np.empty(len(column), dtype=object)
        for index, value in enumerate(column):
            parsed[index] = _list_value(value)
    bad = np.fromiter((items is None for items in parsed), dtype=bool, count=len(parsed))
    for position in np.flatnonzero(bad):
        parsed[position] = []
    return Parsed(
        pd.Series(parsed, index=column.index, dtype=object),
        column.isna().to_numpy(dtype=bool),
        bad,
        "a list: [\"a\",\"b\"], ['a', 'b'], {a,b} or a|b",
    )


def _is_arrow_list_of_scalars(column: pd.Series) -> bool:
    """Is this a parquet list column whose elements convert to text (strings, numbers)?"""
    if not isinstance(column.dtype, pd.ArrowDtype):
        return False
    kind = column.dtype.pyarrow_dtype
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        return False
    element = kind.value_type
    return bool(
        pa.types.is_string(element)
        or pa.types.is_large_string(element)
        or pa.types.is_integer(element)
        or pa.types.is_floating(element)
    )


def _distinct_lists(column: pd.Series) -> np.ndarray:
    """Convert an arrow list column, each distinct list once; None marks bad rows.

    Rows are keyed by their elements joined with NUL, which no good element can
    contain; rows with a null element, or one holding a control character, are bad.
    """
    array = pa.array(column)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    lists = pc.cast(array, pa.list_(pa.string()))
    flat = pc.list_flatten(lists)
    broken = pc.fill_null(pc.match_substring_regex(flat, CONTROL), True)
    broken = broken.to_numpy(zero_copy_only=False)
    bad = np.zeros(len(lists), dtype=bool)
    bad[pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)[broken]] = True
    encoded = pc.dictionary_encode(pc.binary_join(lists, NUL))
    distinct = np.empty(len(encoded.dictionary) + 2, dtype=object)
    for index, key in enumerate(encoded.dictionary.to_pylist()):
        distinct[index] = key.split(NUL)
    distinct[-2] = []  # null and empty lists
    distinct[-1] = None  # bad rows
    indices = pc.fill_null(encoded.indices, -2).to_numpy(zero_copy_only=False).copy()
    # [] and [""] both join to "": tell them apart by length.
    empty = pc.fill_null(pc.equal(pc.list_value_length(lists), 0), True)
    indices[empty.to_numpy(zero_copy_only=False)] = -2
    indices[bad] = -1
    spread: np.ndarray = distinct[indices]
    return spread


def _distinct_texts(column: pd.Series) -> np.ndarray:
    """Parse each distinct text once and spread the results back over the rows."""
    encoded = pc.dictionary_encode(_arrow_text(column))
    distinct = np.empty(len(encoded.dictionary) + 1, dtype=object)
    for index, text in enumerate(encoded.dictionary.to_pylist()):
        distinct[index] = parse_list_text(text)
    distinct[-1] = []  # nulls: index -1 below
    indices = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    spread: np.ndarray = distinct[indices]
    return spread


def _list_value(value: object) -> list[str] | None:
    """One parquet cell: a list (numpy array), a text to parse, or null."""
    if isinstance(value, str):
        return parse_list_text(value)
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, np.ndarray | list | tuple):
        items = _strings(value)
        if items is None or any(_CONTROL.search(item) for item in items):
            return None
        return items
    return None


PARSERS: dict[str, Callable[[pd.Series], Parsed]] = {
    "text": parse_text,
    "long_text": parse_long_text,
    "number": parse_number,
    "bool": parse_bool,
    "timestamp": parse_timestamp,
    "list": parse_list,
}

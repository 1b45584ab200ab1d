"""The click model's feature vector: one definition for training and for serving.

Training (ml/dataset.py) builds `Pairs` for millions of impressions; the service
builds them for one viewer and a few hundred candidate streams. Both call
`feature_matrix`, so a feature cannot mean one thing offline and another online.
The columns, in order, are `FEATURE_NAMES`; a saved model records them and
refuses to load against a different list (app/features/artifact.py).

Definitions (d = distance in km on the sphere, as the service measures it):

- `distance_km`: d; `proximity_boost`: 1 / (1 + d), the ranking formula's term.
- `is_local_match`: d < `LOCAL_KM`; `is_regional_match`: d < `REGIONAL_KM`
  (strictly below, so a stream exactly 100 km away is regional, not local).
- `same_city`, `same_language`: the two strings are equal; a missing value (None)
  never matches, not even another missing value.
- `category_match`: the stream's category is one of the user's preferred ones.
- the rest are the user's or the stream's stored numbers and flags, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]
BoolArray = npt.NDArray[np.bool_]

FEATURE_NAMES: tuple[str, ...] = (
    "distance_km",
    "proximity_boost",
    "is_local_match",
    "is_regional_match",
    "same_city",
    "same_language",
    "user_local_preference",
    "user_total_watch_hours",
    "stream_quality_score",
    "stream_avg_viewers",
    "creator_followers",
    "is_partnered",
    "mature_content",
    "category_match",
)
#: A stream is a local match when it is less than this many km away.
LOCAL_KM = 100.0
#: ... and a regional match when it is less than this many km away.
REGIONAL_KM = 1000.0

#: Up to this many rows, category_match is a set lookup per row (the serving case:
#: one viewer, a few hundred streams); above it, the rows are factorised first.
_ROW_LOOKUP_MAX = 4096
#: Largest (distinct preference sets × distinct categories) membership table built densely.
_DENSE_TABLE_MAX = 1 << 25


@dataclass(frozen=True)
class Pairs:
    """(user, stream) pairs as parallel columns: entry i of every array is pair i.

    Text columns may hold None (a signed-out viewer has no city, maybe no
    language). Each `user_preferred_categories` entry is a collection of category
    ids (frozenset, list or tuple), possibly empty. Rows that share a user may
    share one collection object, which makes `feature_matrix` faster on millions.
    """

    distance_km: FloatArray
    user_city: ObjectArray
    user_language: ObjectArray
    user_preferred_categories: ObjectArray
    user_local_preference: FloatArray
    user_total_watch_hours: FloatArray
    stream_city: ObjectArray
    stream_language: ObjectArray
    stream_category_id: ObjectArray
    stream_quality_score: FloatArray
    stream_avg_viewers: FloatArray
    creator_followers: FloatArray
    is_partnered: BoolArray
    mature_content: BoolArray

    def __post_init__(self) -> None:
        lengths = {f.name: len(getattr(self, f.name)) for f in fields(self)}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"Pairs columns differ in length: {lengths}")

    def __len__(self) -> int:
        return len(self.distance_km)

    @classmethod
    def for_viewer(
        cls,
        *,
        distance_km: npt.ArrayLike,
        user_city: str | None,
        user_language: str | None,
        user_preferred_categories: Collection[str],
        user_local_preference: float,
        user_total_watch_hours: float,
        stream_city: npt.ArrayLike,
        stream_language: npt.ArrayLike,
        stream_category_id: npt.ArrayLike,
        stream_quality_score: npt.ArrayLike,
        stream_avg_viewers: npt.ArrayLike,
        creator_followers: npt.ArrayLike,
        is_partnered: npt.ArrayLike,
        mature_content: npt.ArrayLike,
    ) -> Pairs:
        """One viewer against many streams (the serving case): user values repeat per row."""
        distance = np.asarray(distance_km, dtype=np.float64)
        n = len(distance)
        return cls(
            distance_km=distance,
            user_city=_repeat(user_city, n),
            user_language=_repeat(user_language, n),
            user_preferred_categories=_repeat(user_preferred_categories, n),
            user_local_preference=np.full(n, user_local_preference, dtype=np.float64),
            user_total_watch_hours=np.full(n, user_total_watch_hours, dtype=np.float64),
            stream_city=np.asarray(stream_city, dtype=object),
            stream_language=np.asarray(stream_language, dtype=object),
            stream_category_id=np.asarray(stream_category_id, dtype=object),
            stream_quality_score=np.asarray(stream_quality_score, dtype=np.float64),
            stream_avg_viewers=np.asarray(stream_avg_viewers, dtype=np.float64),
            creator_followers=np.asarray(creator_followers, dtype=np.float64),
            is_partnered=np.asarray(is_partnered, dtype=bool),
            mature_content=np.asarray(mature_content, dtype=bool),
        )


def feature_matrix(pairs: Pairs) -> FloatArray:
    """The features of every pair: float64, shape (n, 14), columns in `FEATURE_NAMES` order.

    The array is column-major (Fortran order): each feature is written as one
    contiguous column, which is what makes ten million rows cheap; sklearn and
    numpy accept either layout.
    """
    n = len(pairs)
    out = np.empty((n, len(FEATURE_NAMES)), dtype=np.float64, order="F")
    distance = np.asarray(pairs.distance_km, dtype=np.float64)
    columns: dict[str, npt.ArrayLike] = {
        "distance_km": distance,
        "proximity_boost": 1.0 / (1.0 + distance),
        "is_local_match": distance < LOCAL_KM,
        "is_regional_match": distance < REGIONAL_KM,
        "same_city": same_value(pairs.user_city, pairs.stream_city),
        "same_language": same_value(pairs.user_language, pairs.stream_language),
        "user_local_preference": pairs.user_local_preference,
        "user_total_watch_hours": pairs.user_total_watch_hours,
        "stream_quality_score": pairs.stream_quality_score,
        "stream_avg_viewers": pairs.stream_avg_viewers,
        "creator_followers": pairs.creator_followers,
        "is_partnered": pairs.is_partnered,
        "mature_content": pairs.mature_content,
        "category_match": category_match(pairs.stream_category_id, pairs.user_preferred_categories),
    }
    for j, name in enumerate(FEATURE_NAMES):
        out[:, j] = columns[name]
    return out


def same_value(left: npt.ArrayLike, right: npt.ArrayLike) -> BoolArray:
    """Row-wise `left == right` for text columns, where a missing value matches nothing.

    A value is present when it is a string: None, NaN or pandas' NA (which a
    pandas round trip in training may produce) all count as missing.
    """
    a = np.asarray(left, dtype=object)
    b = np.asarray(right, dtype=object)
    present = _is_text(a) & _is_text(b)
    equal: BoolArray = present & np.equal(np.where(present, a, ""), np.where(present, b, ""))
    return equal.astype(bool, copy=False)


def _is_text(column: ObjectArray) -> BoolArray:
    return np.fromiter((isinstance(v, str) for v in column), dtype=bool, count=len(column))


def category_match(categories: npt.ArrayLike, preferred: npt.ArrayLike) -> BoolArray:
    """Row-wise `categories[i] in preferred[i]`.

    Few rows: one set lookup per row. Many rows: factorise the preference
    collections and the categories, decide membership once per distinct
    (collection, category) combination, and look every row up in that table. In
    training the users number thousands and the rows millions, so this replaces
    ten million set lookups with a few thousand and two numpy indexings.
    """
    cats = np.asarray(categories, dtype=object)
    prefs = _object_column(preferred)
    if len(cats) <= _ROW_LOOKUP_MAX:
        return np.fromiter(
            (p is not None and c in p for c, p in zip(cats, prefs, strict=True)),
            dtype=bool,
            count=len(cats),
        )
    pref_codes, pref_sets = _factorize(prefs, key=_frozen)
    cat_codes, cat_values = _factorize(cats, key=lambda c: c if isinstance(c, str) else None)
    position = {value: j for j, value in enumerate(cat_values)}
    members = [
        (u, position[c])
        for u, collection in enumerate(pref_sets)
        for c in collection
        if c in position
    ]
    member = np.array(members, dtype=np.int64).reshape(-1, 2)
    known = (pref_codes >= 0) & (cat_codes >= 0)  # -1: a None collection or category
    rows_u = np.where(known, pref_codes, 0)
    rows_c = np.where(known, cat_codes, 0)
    n_sets, n_cats = max(len(pref_sets), 1), max(len(cat_values), 1)
    if n_sets * n_cats <= _DENSE_TABLE_MAX:
        table = np.zeros((n_sets, n_cats), dtype=bool)
        table[member[:, 0], member[:, 1]] = True
        found: BoolArray = table[rows_u, rows_c]
    else:
        found = np.isin(rows_u * n_cats + rows_c, member[:, 0] * n_cats + member[:, 1])
    return found & known


def _factorize(
    values: ObjectArray, key: Callable[[Any], Hashable | None]
) -> tuple[npt.NDArray[np.int64], list[Any]]:
    """Codes 0..k-1 for the distinct `key(value)`s, in order of first appearance; -1 for None.

    A dict does what `pandas.factorize` does (one hash per row), without pandas:
    the service imports this module and must not pay pandas' memory.
    Consecutive rows often share one object (a user's preferences repeat over
    their impressions), so the key of the previous row is reused when they do.
    """
    index: dict[Hashable, int] = {}

    def codes() -> Iterator[int]:
        previous: Any = object()
        code = -1
        for value in values:
            if value is not previous:
                previous = value
                k = key(value)
                code = -1 if k is None else index.setdefault(k, len(index))
            yield code

    found = np.fromiter(codes(), dtype=np.int64, count=len(values))
    return found, list(index)


def _repeat(value: Any, n: int) -> ObjectArray:
    """An object column holding the same value n times (even a list, kept whole)."""
    column = np.empty(n, dtype=object)
    column.fill(value)
    return column


def _object_column(values: Any) -> ObjectArray:
    """A 1-D object array of `values` without numpy unpacking nested collections."""
    if isinstance(values, np.ndarray) and values.dtype == object and values.ndim == 1:
        return values
    items = list(values)
    return np.fromiter(items, dtype=object, count=len(items))


def _frozen(collection: Any) -> frozenset[str] | None:
    """A collection as a hashable set; anything else (None, NaN) is a missing one."""
    if isinstance(collection, frozenset):
        return collection
    if isinstance(collection, list | tuple | set | np.ndarray):
        return frozenset(collection)
    return None

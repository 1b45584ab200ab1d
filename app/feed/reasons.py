"""Why a stream is in the feed: the strongest positive feature group, said in words.

The reranker's approximate contributions (XGBoost's Saabas method,
`approx_contribs`: about 0.3 ms for 30 rows, against 36 ms for exact SHAP) say
how much each feature moved a stream's score. Summed over groups of features
that mean one thing to a person, the largest positive group picks the sentence:

- `watched` (cf_score, cf_rank, own_rank, log_creator_minutes, creator_sessions):
  "Because you watched <channel>";
- `popular` (log_popularity, log_avg_viewers, log_followers, quality, partnered,
  category_share, category_preferred, audience_hour_share):
  "Popular in <category> right now";
- `near` (near_rank, log_distance_km): "Live near you in <city>";
- `watching` (trending_rank): "<n> people watching now";
- `language` (same_language, locale_match, trending_language_rank): "In your language".

The other features (n_sources, mature, device_match, hour_share) say nothing a
person would call a reason and belong to no group. When no group is positive,
or no reranker served, the reason follows the stream's best-ranked source
instead (`from_sources`). `<channel>` is the stream's own creator when the
viewer watched them, else the creator the viewer watched most; a viewer with no
channels gets the next reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from app.feed.features import FEATURE_NAMES

GROUPS: dict[str, tuple[str, ...]] = {
    "watched": ("cf_score", "cf_rank", "own_rank", "log_creator_minutes", "creator_sessions"),
    "popular": (
        "log_popularity",
        "log_avg_viewers",
        "log_followers",
        "quality",
        "partnered",
        "category_share",
        "category_preferred",
        "audience_hour_share",
    ),
    "near": ("near_rank", "log_distance_km"),
    "watching": ("trending_rank",),
    "language": ("same_language", "locale_match", "trending_language_rank"),
}
#: The reason a source stands for, when the model gives none.
SOURCE_REASONS = {
    "own": "watched",
    "cf": "watched",
    "near": "near",
    "trending": "watching",
    "trending_language": "language",
    "popular": "popular",
}
_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}
_NAMES = list(GROUPS)
_GROUP_COLUMNS = {group: [_INDEX[f] for f in names] for group, names in GROUPS.items()}


class Subject(NamedTuple):
    """What a reason may name about one stream and its viewer.

    Tuples, not frozen dataclasses: a feed answer makes 30 of each, and a frozen
    dataclass sets each field through `object.__setattr__`.
    """

    creator_id: str
    category_id: str
    city: str
    viewers: int
    #: The creators the viewer watched, most watched first.
    channels: Sequence[str] = ()


class Reason(NamedTuple):
    """A reason's kind (a group name) and its sentence."""

    kind: str
    text: str


def group_strengths(contributions: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """(n, len(GROUPS)) summed contributions per group, columns in `GROUPS` order.

    `contributions` is XGBoost's (n, n_features + 1) matrix; the last column (the
    bias) belongs to no feature.
    """
    values = np.asarray(contributions, dtype=np.float64)
    return np.stack([values[:, cols].sum(axis=1) for cols in _GROUP_COLUMNS.values()], axis=1)


def from_model(
    strengths: npt.NDArray[np.float64], subject: Subject, sources: Sequence[str]
) -> Reason:
    """The strongest positive group that can be said about `subject`; else `from_sources`."""
    values = strengths.tolist()  # five numbers: Python sorts them faster than numpy
    for column in sorted(range(len(_NAMES)), key=lambda c: -values[c]):
        if values[column] <= 0:
            break
        reason = say(_NAMES[column], subject)
        if reason is not None:
            return reason
    return from_sources(subject, sources)


def from_sources(subject: Subject, sources: Sequence[str]) -> Reason:
    """The reason of the first source (best first) that can be said, else "popular"."""
    for source in sources:
        reason = say(SOURCE_REASONS.get(source, "popular"), subject)
        if reason is not None:
            return reason
    return say("popular", subject) or Reason("popular", "Popular right now")


def say(kind: str, subject: Subject) -> Reason | None:
    """The sentence of reason `kind` for `subject`, or None when it has nothing to name."""
    if kind == "watched":
        channel = _channel(subject)
        return None if channel is None else Reason(kind, f"Because you watched {channel}")
    if kind == "popular":
        return Reason(kind, f"Popular in {subject.category_id} right now")
    if kind == "near":
        return Reason(kind, f"Live near you in {subject.city}")
    if kind == "watching":
        noun = "person" if subject.viewers == 1 else "people"
        return Reason(kind, f"{subject.viewers:,} {noun} watching now")
    if kind == "language":
        return Reason(kind, "In your language")
    raise ValueError(f"unknown reason kind {kind!r}")


def _channel(subject: Subject) -> str | None:
    if not subject.channels:
        return None
    return subject.creator_id if subject.creator_id in subject.channels else subject.channels[0]

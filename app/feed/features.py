"""The reranker's features for (viewer, candidate stream) pairs: numpy only, no I/O.

Training (`ml/feed`) and serving build the reranker's input with this one
function, `pair_features`, from the same three kinds of facts:

- who the viewer is (`Viewer`: place, language, time zone, and what their past
  viewing says: minutes per category, per local hour, per device),
- the candidates (`Candidates`: each stream's attributes, which sources proposed
  it and at what rank, and the viewer's own history with its creator),
- the moment of the request (`Context`: time, device, locale).

Training reads those facts from the interaction log up to a cut-off; serving
reads them from the feature store. Neither computes a feature itself, so the
two cannot drift apart: a parity test compares them for the same pairs.

A fact nobody knows (a viewer without a location, a file with no streams table,
a source that did not propose the stream) is NaN, never a made-up 0: gradient
boosting learns a separate direction for missing values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from app.geo import haversine_km

FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]

#: The reranker's input columns, in order. A saved reranker records this list and
#: is refused when it differs (app/feed/artifact.py).
FEATURE_NAMES: tuple[str, ...] = (
    "cf_score",  # dot product of the viewer's and the stream's embeddings
    "cf_rank",  # 1 = the collaborative source's best; NaN = not proposed by it
    "near_rank",
    "trending_rank",
    "trending_language_rank",
    "own_rank",  # among the creators the viewer watched most
    "n_sources",  # how many sources proposed the stream
    "log_distance_km",
    "same_language",  # the viewer's language
    "locale_match",  # the request's locale
    "category_preferred",  # among the viewer's stated categories
    "category_share",  # share of the viewer's watch minutes in the stream's category
    "quality",
    "log_avg_viewers",
    "log_followers",
    "partnered",
    "mature",
    "log_popularity",  # viewers who watched the stream in the history window
    "log_creator_minutes",  # the viewer's minutes with this creator
    "creator_sessions",  # the viewer's watches of this creator
    "device_match",  # request device = the device most of the stream's audience uses
    "hour_share",  # share of the viewer's watching at this local hour (±1 h)
    "audience_hour_share",  # share of the stream's watches at this UTC hour (±1 h)
)
N_FEATURES = len(FEATURE_NAMES)
_COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}


@dataclass(frozen=True)
class Viewer:
    """What is known about the viewer, from their profile and their history."""

    latitude: float = float("nan")
    longitude: float = float("nan")
    language: str | None = None
    utc_offset_hours: float = 0.0
    preferred_categories: frozenset[str] = frozenset()
    #: Share of the viewer's watch minutes per category (sums to 1, or empty).
    category_share: Mapping[str, float] = field(default_factory=dict)
    #: Share of the viewer's watches per local hour 0..23 (sums to 1, or all zero).
    hour_share: FloatArray = field(default_factory=lambda: np.zeros(24))


@dataclass(frozen=True)
class Candidates:
    """Parallel arrays, one entry per candidate stream.

    The source columns hold the stream's rank (1 = best) in each source, NaN where
    that source did not propose it; `cf_score` is the embedding dot product, NaN
    when the viewer or the stream has no embedding.
    """

    stream_id: ObjectArray
    latitude: FloatArray
    longitude: FloatArray
    language: ObjectArray
    category_id: ObjectArray
    quality: FloatArray
    avg_viewers: FloatArray
    followers: FloatArray
    partnered: FloatArray  # 0/1, NaN unknown
    mature: FloatArray
    dominant_device: ObjectArray  # None when the stream has no audience yet
    hour_profile: FloatArray  # (n, 24): share of the stream's watches per UTC hour
    popularity: FloatArray
    creator_minutes: FloatArray
    creator_sessions: FloatArray
    cf_score: FloatArray
    cf_rank: FloatArray
    near_rank: FloatArray
    trending_rank: FloatArray
    trending_language_rank: FloatArray
    own_rank: FloatArray

    def __len__(self) -> int:
        return len(self.stream_id)


@dataclass(frozen=True)
class Context:
    """The request's moment: `hour_utc` in [0, 24), device and locale language if given."""

    hour_utc: float
    device: str | None = None
    locale_language: str | None = None


def _equal(values: ObjectArray, to: str | None) -> FloatArray:
    """1 where `values` equals `to`, 0 elsewhere; NaN where either side is unknown."""
    if to is None:
        return np.full(len(values), np.nan)
    known = np.fromiter((v is not None for v in values), bool, count=len(values))
    same = np.fromiter((v == to for v in values), bool, count=len(values))
    return np.where(known, same.astype(np.float64), np.nan)


def local_hour(hour_utc: float, utc_offset_hours: float) -> int:
    """The viewer's local hour 0..23 at `hour_utc`."""
    return int(np.floor((hour_utc + utc_offset_hours) % 24.0)) % 24


def pair_features(
    viewer: Viewer, candidates: Candidates, context: Context
) -> npt.NDArray[np.float32]:
    """The (len(candidates), N_FEATURES) float32 matrix, columns in `FEATURE_NAMES` order."""
    n = len(candidates)
    out = np.full((n, N_FEATURES), np.nan, dtype=np.float32)

    def put(name: str, values: npt.ArrayLike) -> None:
        out[:, _COLUMN[name]] = np.asarray(values, dtype=np.float64)

    put("cf_score", candidates.cf_score)
    for source in ("cf_rank", "near_rank", "trending_rank", "trending_language_rank", "own_rank"):
        put(source, getattr(candidates, source))
    proposed = np.stack(
        [
            ~np.isnan(np.asarray(getattr(candidates, s), dtype=np.float64))
            for s in ("cf_rank", "near_rank", "trending_rank", "trending_language_rank", "own_rank")
        ]
    )
    put("n_sources", proposed.sum(axis=0))
    distance = haversine_km(
        viewer.latitude, viewer.longitude, candidates.latitude, candidates.longitude
    )
    put("log_distance_km", np.log1p(distance))
    put("same_language", _equal(candidates.language, viewer.language))
    put("locale_match", _equal(candidates.language, context.locale_language))
    known_category = np.fromiter((c is not None for c in candidates.category_id), bool, count=n)
    preferred = np.fromiter(
        (c in viewer.preferred_categories for c in candidates.category_id), bool, count=n
    )
    put("category_preferred", np.where(known_category, preferred.astype(np.float64), np.nan))
    share = np.fromiter(
        (viewer.category_share.get(c, 0.0) for c in candidates.category_id), float, count=n
    )
    put("category_share", np.where(known_category, share, np.nan))
    put("quality", candidates.quality)
    put("log_avg_viewers", np.log1p(candidates.avg_viewers))
    put("log_followers", np.log1p(candidates.followers))
    put("partnered", candidates.partnered)
    put("mature", candidates.mature)
    put("log_popularity", np.log1p(candidates.popularity))
    put("log_creator_minutes", np.log1p(candidates.creator_minutes))
    put("creator_sessions", candidates.creator_sessions)
    put("device_match", _equal(candidates.dominant_device, context.device))
    hour = local_hour(context.hour_utc, viewer.utc_offset_hours)
    hours = np.asarray(viewer.hour_share, dtype=np.float64)
    near_hours = hours[[(hour - 1) % 24, hour, (hour + 1) % 24]].sum()
    put("hour_share", np.full(n, near_hours))
    utc = int(np.floor(context.hour_utc)) % 24
    profile = np.asarray(candidates.hour_profile, dtype=np.float64).reshape(n, 24)
    put("audience_hour_share", profile[:, [(utc - 1) % 24, utc, (utc + 1) % 24]].sum(axis=1))
    return out

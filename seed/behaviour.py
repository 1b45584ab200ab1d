"""The behaviour model: which streams a user is shown, which they click, how long they watch.

Everything here works on whole numpy arrays (one entry per user, stream or
impression), so ten million impressions cost a few vectorised passes, not ten
million Python calls. The click model is deliberately *not* the product's ranking
formula: it decays exponentially with distance, works on the logit scale, has
interactions and latent per-user taste (communities, favourite channels, habits:
see `seed.tastes`), so a ranker trained on these clicks has something to learn
rather than a formula to copy back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from app.db.limits import DEVICES
from app.geo import haversine_km
from seed.cities import ENGLISH, FloatArray, IntArray
from seed.tastes import (
    FAVOURITE_FROM_COMMUNITY,
    MAX_FAVOURITES,
    affinity,
    favourite_counts,
    pick_slot,
)

BoolArray = npt.NDArray[np.bool_]
ArrayLike = npt.ArrayLike

DEVICE_SHARES = (0.55, 0.30, 0.08, 0.07)
PAGE_SLOTS = 20  # a front page shows at most 20 streams; position 1 is the top
WINDOW_DAYS = 30  # impressions fall in the 30 days before `as_of`
MAX_GAP_SECONDS = 20  # seconds between two impressions of one session, at most
CHUNK_ROWS = 500_000

# Where a shown stream comes from. First, with the user's own loyalty share, one of
# their favourite channels ("loyalty"); otherwise the user's own place, their region,
# the world, or their taste communities ("taste"), with these shares.
SOURCES = ("place", "region", "world", "taste", "loyalty")
SOURCE_SHARES = (0.30, 0.15, 0.25, 0.30)  # place, region, world, taste
# Within the city/region a stream is picked with weight (1 + avg viewers)^0.5 (local
# discovery lets small channels through); worldwide with (1 + avg viewers)^0.9; within
# a community with (1 + avg viewers)^0.7.
LOCAL_POPULARITY_EXPONENT = 0.5
GLOBAL_POPULARITY_EXPONENT = 0.9
TASTE_POPULARITY_EXPONENT = 0.7
TASTE_OWN_LANGUAGE = 0.7  # taste picks restricted to the user's language, where it has any
# A loyalty slot shows favourite i of n (ordered as drawn) at floor(n u^2): the first
# favourite is the most frequent (58% of the slots with 3 favourites).
FAVOURITE_SKEW = 2.0
WEEKEND_WEIGHT = 1.3  # Saturdays and Sundays have 30% more sessions than weekdays
USUAL_HOUR_HOURS = 2.0  # a session "at the usual hour" starts within 2 h of the peak

# Share of sessions starting in each local hour 0..23: quiet nights, busy evenings.
DIURNAL = np.array(
    [3, 2, 1.5, 1, 1, 1, 1.5, 2, 2.5, 3, 3, 3.5, 4, 4, 4, 4.5, 5, 5.5, 6.5, 7.5, 8, 8, 6.5, 4.5]
)
DIURNAL_P = DIURNAL / DIURNAL.sum()

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ClickModel:
    """Coefficients of the click model, all on the logit scale.

    `logit = intercept
             + (near_base + near_per_preference * local_preference) * exp(-d_km / distance_scale_km)
             + (quality + category_quality * category_match) * ln(1 + quality_score)
             + same_language * [same language]
             + english_fallback * [stream in English, user not]
             + category_match * [stream category among the user's preferred]
             + popularity * ln(1 + avg_viewers)
             + position * ln(page_position)
             + partnered * [partnered] + mature * [mature]
             + affinity * a(u, s)
             + favourite * [stream is one of the user's favourite channels]
             + usual_device * [session on the user's habitual device]
             + usual_hour * [session within 2 h of the user's peak hour, local time]
             + device_effect[device] + user_bias + noise`

    with `user_bias ~ N(0, user_sd)` fixed per user and `noise ~ N(0, noise_sd)` per
    impression; P(click) = sigmoid(logit). `a(u, s)` in 0..1 is the user's community
    weights dotted with the stream's community membership (`seed.tastes.affinity`).
    """

    intercept: float = -6.6
    near_base: float = 0.4
    near_per_preference: float = 2.2
    distance_scale_km: float = 150.0
    quality: float = 0.8
    category_quality: float = 0.3
    same_language: float = 1.2
    english_fallback: float = 0.5
    category_match: float = 0.9
    popularity: float = 0.15
    position: float = -0.45
    partnered: float = 0.1
    mature: float = -0.2
    affinity: float = 2.6  # taste: per unit of community affinity a(u, s)
    favourite: float = 1.5  # loyalty: the stream is one of the user's favourite channels
    usual_device: float = 0.15  # habit: on the device the user mostly uses
    usual_hour: float = 0.25  # habit: near the hour the user mostly watches
    device_effect: tuple[float, ...] = (0.0, 0.15, -0.05, -0.3)  # in DEVICES order
    user_sd: float = 0.5
    noise_sd: float = 0.7


CLICK_MODEL = ClickModel()


def click_model_with(changes: dict[str, str]) -> ClickModel:
    """The default click model with some coefficients changed (`--behaviour name=value`).

    Raises:
        ValueError: an unknown coefficient, a value that is not a number, or a
            distance scale that is not positive.
    """
    numbers = {f.name for f in fields(ClickModel) if f.type in ("float", float)}
    values: dict[str, float] = {}
    for name, text in changes.items():
        if name not in numbers:
            raise ValueError(
                f"unknown behaviour coefficient {name!r}; one of: {', '.join(sorted(numbers))}"
            )
        try:
            values[name] = float(text)
        except ValueError:
            raise ValueError(
                f"behaviour coefficient {name} must be a number, got {text!r}"
            ) from None
        if not np.isfinite(values[name]):
            raise ValueError(f"behaviour coefficient {name} must be finite, got {text!r}")
    if values.get("distance_scale_km", 1.0) <= 0:
        raise ValueError("distance_scale_km must be > 0")
    return replace(CLICK_MODEL, **values)  # type: ignore[arg-type]  # floats only, checked above


def click_model_from(texts: list[str]) -> ClickModel:
    """The click model that `--behaviour NAME=VALUE` options (repeatable) describe.

    Raises:
        ValueError: a text without `=`, or what `click_model_with` refuses.
    """
    changes: dict[str, str] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep:
            raise ValueError(f"--behaviour takes NAME=VALUE, got {text!r}")
        changes[name.strip()] = value.strip()
    return click_model_with(changes)


def click_logit(
    *,
    distance_km: ArrayLike,
    local_preference: ArrayLike,
    quality: ArrayLike,
    same_language: ArrayLike,
    category_match: ArrayLike,
    avg_viewers: ArrayLike,
    page_position: ArrayLike,
    english_fallback: ArrayLike = False,
    partnered: ArrayLike = False,
    mature: ArrayLike = False,
    affinity: ArrayLike = 0.0,
    favourite: ArrayLike = False,
    usual_device: ArrayLike = False,
    usual_hour: ArrayLike = False,
    device: ArrayLike = 0,
    user_bias: ArrayLike = 0.0,
    noise: ArrayLike = 0.0,
    model: ClickModel = CLICK_MODEL,
) -> FloatArray:
    """Log-odds of a click, element-wise over broadcastable arrays (see `ClickModel`).

    Args:
        distance_km: user-stream great-circle distance.
        local_preference: the user's `local_preference_strength`, 0..1.
        quality: the stream's quality score, 0..10.
        same_language: the stream speaks the user's language.
        category_match: the stream's category is one of the user's preferred ones.
        avg_viewers: the stream's average viewer count.
        page_position: slot on the page, 1 = top.
        english_fallback: the stream is in English and the user's language is not.
        partnered: partner-programme stream.
        mature: adults-only stream.
        affinity: the user-stream community affinity a(u, s), 0..1.
        favourite: the stream is one of the user's favourite channels.
        usual_device: the session is on the user's habitual device.
        usual_hour: the session starts near the user's peak hour (local time).
        device: index into `DEVICES`.
        user_bias: the user's latent click propensity.
        noise: per-impression noise.
        model: the coefficients.

    Returns:
        The logit, as float64, shaped like the broadcast inputs.
    """
    m = model
    near = np.exp(-np.asarray(distance_km, dtype=np.float64) / m.distance_scale_km)
    pref = np.asarray(local_preference, dtype=np.float64)
    log_quality = np.log1p(np.asarray(quality, dtype=np.float64))
    cat = np.asarray(category_match, dtype=np.float64)
    devices = np.asarray(m.device_effect, dtype=np.float64)[np.asarray(device, dtype=np.int64)]
    logit = (
        m.intercept
        + (m.near_base + m.near_per_preference * pref) * near
        + (m.quality + m.category_quality * cat) * log_quality
        + m.same_language * np.asarray(same_language, dtype=np.float64)
        + m.english_fallback * np.asarray(english_fallback, dtype=np.float64)
        + m.category_match * cat
        + m.popularity * np.log1p(np.asarray(avg_viewers, dtype=np.float64))
        + m.position * np.log(np.asarray(page_position, dtype=np.float64))
        + m.partnered * np.asarray(partnered, dtype=np.float64)
        + m.mature * np.asarray(mature, dtype=np.float64)
        + m.affinity * np.asarray(affinity, dtype=np.float64)
        + m.favourite * np.asarray(favourite, dtype=np.float64)
        + m.usual_device * np.asarray(usual_device, dtype=np.float64)
        + m.usual_hour * np.asarray(usual_hour, dtype=np.float64)
        + devices
        + np.asarray(user_bias, dtype=np.float64)
        + np.asarray(noise, dtype=np.float64)
    )
    return np.asarray(logit, dtype=np.float64)


def click_probability(**features: Any) -> FloatArray:
    """P(click) = sigmoid(`click_logit(**features)`); same keyword arguments."""
    return np.asarray(1.0 / (1.0 + np.exp(-click_logit(**features))), dtype=np.float64)


@dataclass(frozen=True)
class WatchModel:
    """Minutes watched after a click: a brief look, or a stay of graded length.

    `P(brief) = sigmoid(brief_intercept + brief_affinity * a(u, s)
                        + brief_favourite * [favourite] + brief_language * [same language])`;
    a brief look lasts U(0.5, 2) minutes. A stay is lognormal:

    `ln(median) = ln(stay_median) + quality * ln(1 + q) + category * [category match]
                  + language * [same language] + affinity * a(u, s) + favourite * [favourite]`

    with sigma `stay_sigma`, clipped to 2 minutes .. the stream's typical duration.
    Watch time, not the click, is the signal: it grows with taste and loyalty far
    more than the click does.
    """

    brief_intercept: float = 0.2
    brief_affinity: float = -2.0
    brief_favourite: float = -1.5
    brief_language: float = -0.5
    stay_median: float = 6.0
    quality: float = 0.35
    category: float = 0.3
    language: float = 0.3
    affinity: float = 1.0
    favourite: float = 0.8
    stay_sigma: float = 0.9


WATCH_MODEL = WatchModel()


def watch_minutes(
    rng: np.random.Generator,
    clicked: BoolArray,
    *,
    quality: FloatArray,
    category_match: BoolArray,
    same_language: BoolArray,
    affinity: FloatArray,
    favourite: BoolArray,
    duration: FloatArray,
    model: WatchModel = WATCH_MODEL,
) -> FloatArray:
    """Minutes watched (see `WatchModel`): 0 without a click, else at least 0.5 (one decimal)."""
    m = model
    n = len(clicked)
    fav = favourite.astype(np.float64)
    lang = same_language.astype(np.float64)
    brief_logit = (
        m.brief_intercept
        + m.brief_affinity * affinity
        + m.brief_favourite * fav
        + m.brief_language * lang
    )
    brief = rng.random(n) < 1.0 / (1.0 + np.exp(-brief_logit))
    log_median = (
        np.log(m.stay_median)
        + m.quality * np.log1p(quality)
        + m.category * category_match.astype(np.float64)
        + m.language * lang
        + m.affinity * affinity
        + m.favourite * fav
    )
    stay = np.clip(np.exp(log_median + m.stay_sigma * rng.standard_normal(n)), 2.0, duration)
    glance = rng.uniform(0.5, 2.0, size=n)
    minutes = np.round(np.minimum(np.where(brief, glance, stay), duration), 1)
    return np.where(clicked, np.maximum(minutes, 0.5), 0.0)


@dataclass(frozen=True)
class Audience:
    """What the behaviour model needs about users, one array entry (or row) per user.

    Only the first fields have columns in the users table; the latent ones (from
    `bias` on) never leave the generator.
    """

    latitude: FloatArray
    longitude: FloatArray
    language: IntArray  # codes into PlaceTable.languages; ENGLISH = 0
    category_mask: IntArray  # bit c set = category c preferred
    local_preference: FloatArray
    place: IntArray
    region: IntArray
    utc_offset: FloatArray
    activity: FloatArray  # relative number of sessions
    bias: FloatArray  # latent click propensity (logit shift), not in the users table
    community: IntArray  # (users, 3) taste communities, -1 where unused
    community_weight: FloatArray  # (users, 3) their weights, summing to 1, largest first
    device: IntArray  # habitual device, index into DEVICES
    device_habit: FloatArray  # share of sessions on the habitual device
    peak_hour: FloatArray  # local hour the user mostly starts watching, 0..24
    hour_habit: FloatArray  # share of sessions started around the peak hour
    hour_spread: FloatArray  # sd (hours) of those start times around the peak
    loyalty: FloatArray  # share of front-page slots given to favourite channels
    favourites: IntArray  # (users, MAX_FAVOURITES) stream indices, -1 past n_favourites
    n_favourites: IntArray  # 1..MAX_FAVOURITES (0 until `with_favourites`)


@dataclass(frozen=True)
class Catalogue:
    """What the behaviour model needs about streams, one array entry per stream."""

    latitude: FloatArray
    longitude: FloatArray
    language: IntArray
    category: IntArray
    quality: FloatArray
    avg_viewers: FloatArray
    partnered: BoolArray
    mature: BoolArray
    duration: FloatArray
    place: IntArray
    region: IntArray
    community: IntArray  # main taste community (membership 1 - second_weight)
    second_community: IntArray  # a second, weaker community, or -1
    second_weight: FloatArray  # membership in the second community (0 if none)


@dataclass(frozen=True)
class Response:
    """What viewers did with the streams shown to them, one entry per impression."""

    probability: FloatArray  # P(click), the noise of this impression included
    clicked: BoolArray
    minutes: FloatArray  # 0 without a click


def respond(
    rng: np.random.Generator,
    audience: Audience,
    catalogue: Catalogue,
    user: IntArray,
    stream: IntArray,
    *,
    position: ArrayLike,
    usual_device: ArrayLike,
    usual_hour: ArrayLike,
    device: ArrayLike,
    model: ClickModel = CLICK_MODEL,
) -> Response:
    """Clicks (`ClickModel`) and minutes (`WatchModel`) of `user[i]` shown `stream[i]`.

    The impression log and the closed-loop simulator's viewers (ml/closed_loop.py)
    both react through this one function, so the simulated viewers behave as the
    log they were trained on. Draws from `rng`: the noise, the clicks, the minutes.
    """
    user_language = audience.language[user]
    stream_language = catalogue.language[stream]
    same_language = user_language == stream_language
    category_match = ((audience.category_mask[user] >> catalogue.category[stream]) & 1).astype(
        np.bool_
    )
    taste = affinity(
        audience.community[user],
        audience.community_weight[user],
        catalogue.community[stream],
        catalogue.second_community[stream],
        catalogue.second_weight[stream],
    )
    favourite = (audience.favourites[user] == stream[:, None]).any(axis=1)
    probability = click_probability(
        distance_km=haversine_km(
            audience.latitude[user],
            audience.longitude[user],
            catalogue.latitude[stream],
            catalogue.longitude[stream],
        ),
        local_preference=audience.local_preference[user],
        quality=catalogue.quality[stream],
        same_language=same_language,
        english_fallback=(stream_language == ENGLISH) & (user_language != ENGLISH),
        category_match=category_match,
        avg_viewers=catalogue.avg_viewers[stream],
        page_position=position,
        partnered=catalogue.partnered[stream],
        mature=catalogue.mature[stream],
        affinity=taste,
        favourite=favourite,
        usual_device=usual_device,
        usual_hour=usual_hour,
        device=device,
        user_bias=audience.bias[user],
        noise=rng.normal(0.0, model.noise_sd, size=len(stream)),
        model=model,
    )
    clicked = rng.random(len(stream)) < probability
    minutes = watch_minutes(
        rng,
        clicked,
        quality=catalogue.quality[stream],
        category_match=category_match,
        same_language=same_language,
        affinity=taste,
        favourite=favourite,
        duration=catalogue.duration[stream],
    )
    return Response(probability, clicked, minutes)


@dataclass(frozen=True)
class GroupSampler:
    """Weighted sampling of one stream within a group (place, region), for many rows at once.

    Streams are sorted by group and their weights summed cumulatively; a draw in
    group g is a uniform target inside g's slice of the cumulative sum, found with
    one `searchsorted` for all rows together.
    """

    order: IntArray
    cumulative: FloatArray
    start: FloatArray
    total: FloatArray
    first: IntArray
    last: IntArray

    @classmethod
    def build(cls, groups: IntArray, weights: FloatArray, n_groups: int) -> GroupSampler:
        """Index `weights` (all > 0) by `groups` (codes 0..n_groups-1)."""
        order = np.argsort(groups, kind="stable")
        cumulative = np.cumsum(weights[order])
        counts = np.bincount(groups, minlength=n_groups)
        ends = np.cumsum(counts)
        first = ends - counts
        padded = np.concatenate([[0.0], cumulative])
        start = padded[first]
        total = padded[ends] - start
        return cls(order, cumulative, start, total, first, ends - 1)

    def sample(self, uniform: FloatArray, group: IntArray) -> IntArray:
        """One stream index per row from `group`, or -1 where that group is empty."""
        target = self.start[group] + uniform * self.total[group]
        pos = np.searchsorted(self.cumulative, target, side="right")
        empty = self.last[group] < self.first[group]
        pos = np.clip(pos, self.first[group], np.maximum(self.last[group], self.first[group]))
        picked = self.order[np.minimum(pos, len(self.order) - 1)]
        return np.where(empty, -1, picked).astype(np.int64)


@dataclass(frozen=True)
class Exposure:
    """Which streams the front page shows: favourites, place, region, world or taste."""

    by_place: GroupSampler
    by_region: GroupSampler
    worldwide: GroupSampler
    by_community: GroupSampler
    by_community_language: GroupSampler  # group = community * n_languages + language
    n_languages: int

    @classmethod
    def build(
        cls,
        catalogue: Catalogue,
        *,
        n_places: int,
        n_regions: int,
        n_languages: int,
        n_communities: int,
    ) -> Exposure:
        """Precompute the samplers from the streams' popularity."""
        viewers = 1.0 + catalogue.avg_viewers
        local = viewers**LOCAL_POPULARITY_EXPONENT
        world = viewers**GLOBAL_POPULARITY_EXPONENT
        taste = viewers**TASTE_POPULARITY_EXPONENT
        spoken = catalogue.community * n_languages + catalogue.language
        return cls(
            by_place=GroupSampler.build(catalogue.place, local, n_places),
            by_region=GroupSampler.build(catalogue.region, local, n_regions),
            worldwide=GroupSampler.build(np.zeros(len(world), dtype=np.int64), world, 1),
            by_community=GroupSampler.build(catalogue.community, taste, n_communities),
            by_community_language=GroupSampler.build(spoken, taste, n_communities * n_languages),
            n_languages=n_languages,
        )

    def _world(self, uniform: FloatArray) -> IntArray:
        return self.worldwide.sample(uniform, np.zeros(len(uniform), dtype=np.int64))

    def local(
        self, rng: np.random.Generator, place: IntArray, region: IntArray, regional: BoolArray
    ) -> IntArray:
        """A stream per row from the user's place (or region where `regional`).

        An empty place falls back to the region, an empty region to the world.
        """
        uniform = rng.random(len(place))
        stream = np.full(len(place), -1, dtype=np.int64)
        # Each row searches only the sampler it needs (searchsorted dominates the cost).
        rows = np.flatnonzero(~regional)
        stream[rows] = self.by_place.sample(uniform[rows], place[rows])
        rows = np.flatnonzero(stream < 0)
        stream[rows] = self.by_region.sample(uniform[rows], region[rows])
        rows = np.flatnonzero(stream < 0)
        stream[rows] = self._world(uniform[rows])
        return stream

    def taste(
        self,
        rng: np.random.Generator,
        community: IntArray,
        weight: FloatArray,
        language: IntArray,
    ) -> IntArray:
        """A stream per row from one of the user's communities (picked by their weights).

        With probability `TASTE_OWN_LANGUAGE` only among the community's streams in
        the user's language (the whole community if it has none there).
        """
        n = len(language)
        chosen = community[np.arange(n), pick_slot(rng.random(n), weight)]
        own = rng.random(n) < TASTE_OWN_LANGUAGE
        uniform = rng.random(n)
        stream = np.full(n, -1, dtype=np.int64)
        rows = np.flatnonzero(own)
        group = chosen[rows] * self.n_languages + language[rows]
        stream[rows] = self.by_community_language.sample(uniform[rows], group)
        rows = np.flatnonzero(stream < 0)
        stream[rows] = self.by_community.sample(uniform[rows], chosen[rows])
        rows = np.flatnonzero(stream < 0)
        stream[rows] = self._world(uniform[rows])
        return stream

    def choose(
        self, rng: np.random.Generator, audience: Audience, user: IntArray
    ) -> tuple[IntArray, IntArray]:
        """A stream per row (user), and its source: an index into `SOURCES`."""
        n = len(user)
        loyal = rng.random(n) < audience.loyalty[user]
        source = np.where(loyal, 4, rng.choice(4, size=n, p=SOURCE_SHARES))
        stream = np.full(n, -1, dtype=np.int64)
        rows = np.flatnonzero(source <= 1)
        stream[rows] = self.local(
            rng, audience.place[user[rows]], audience.region[user[rows]], source[rows] == 1
        )
        rows = np.flatnonzero(source == 2)
        stream[rows] = self._world(rng.random(len(rows)))
        rows = np.flatnonzero(source == 3)
        who = user[rows]
        stream[rows] = self.taste(
            rng, audience.community[who], audience.community_weight[who], audience.language[who]
        )
        rows = np.flatnonzero(source == 4)
        who = user[rows]
        count = audience.n_favourites[who]
        skewed = count * rng.random(len(rows)) ** FAVOURITE_SKEW
        pick = np.minimum(skewed.astype(np.int64), count - 1)
        stream[rows] = audience.favourites[who, pick]
        return stream, source.astype(np.int64)


def with_favourites(rng: np.random.Generator, audience: Audience, exposure: Exposure) -> Audience:
    """The audience with its favourite channels drawn, once, up front.

    Each user gets 1 + Poisson(2) favourites (at most `MAX_FAVOURITES`); each is drawn
    like a taste slot (from the user's communities, by popularity) with probability
    `FAVOURITE_FROM_COMMUNITY`, otherwise like a place slot. Drawing them here, from
    their own RNG, keeps every impression chunk independent of the others.
    """
    n = len(audience.place)
    count = favourite_counts(rng, n)
    owner = np.repeat(np.arange(n), count)
    slot = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
    stream = np.full(len(owner), -1, dtype=np.int64)
    from_taste = rng.random(len(owner)) < FAVOURITE_FROM_COMMUNITY
    rows = np.flatnonzero(from_taste)
    who = owner[rows]
    stream[rows] = exposure.taste(
        rng, audience.community[who], audience.community_weight[who], audience.language[who]
    )
    rows = np.flatnonzero(~from_taste)
    who = owner[rows]
    stream[rows] = exposure.local(
        rng, audience.place[who], audience.region[who], np.zeros(len(rows), dtype=np.bool_)
    )
    favourites = np.full((n, MAX_FAVOURITES), -1, dtype=np.int64)
    favourites[owner, slot] = stream
    return replace(audience, favourites=favourites, n_favourites=count)


def _sessions(rng: np.random.Generator, rows: int) -> tuple[IntArray, IntArray, int]:
    """Split `rows` impressions into sessions of 1..20 consecutive page slots.

    Returns the session of each row, its page position (1..20), and the session count.
    Page lengths are geometric (p = 0.1, capped at 20): most people stop scrolling early.
    """
    lengths = np.minimum(rng.geometric(0.1, size=rows), PAGE_SLOTS)
    ends = np.cumsum(lengths)
    n_sessions = int(np.searchsorted(ends, rows)) + 1
    lengths = lengths[:n_sessions].copy()
    lengths[-1] -= int(ends[n_sessions - 1]) - rows
    session = np.repeat(np.arange(n_sessions), lengths)
    starts = np.cumsum(lengths) - lengths
    position = np.arange(rows) - starts[session] + 1
    return session, position, n_sessions


def day_weights(as_of: datetime) -> FloatArray:
    """P(session on day d of the window), d = 0..29: weekends weigh `WEEKEND_WEIGHT`."""
    first = (as_of - timedelta(days=WINDOW_DAYS)).weekday()
    weekday = (first + np.arange(WINDOW_DAYS)) % 7
    weight = np.where(weekday >= 5, WEEKEND_WEIGHT, 1.0)
    return np.asarray(weight / weight.sum(), dtype=np.float64)


def hour_gap(hour: FloatArray, peak: FloatArray) -> FloatArray:
    """Hours between two times of day, around the clock: 0..12."""
    gap = np.abs(np.mod(hour - peak, 24.0))
    return np.asarray(np.minimum(gap, 24.0 - gap), dtype=np.float64)


def format_ids(prefix: str, numbers: IntArray, width: int) -> pd.Series:
    """Ids like `user_000042`, built column-wise (`width` digits, more only if needed)."""
    return prefix + pd.Series(numbers, dtype=np.int64).astype("str").str.zfill(width)


def epoch_microseconds(moment: datetime) -> int:
    """Microseconds since 1970-01-01 UTC, exactly (no float rounding)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def impression_chunk(
    audience: Audience,
    catalogue: Catalogue,
    exposure: Exposure,
    user_ids: pd.Series,
    stream_ids: pd.Series,
    *,
    rows: int,
    chunk_index: int,
    seed: int,
    as_of: datetime,
    model: ClickModel = CLICK_MODEL,
) -> pd.DataFrame:
    """One chunk of the impression log, from its own RNG (seed, chunk_index).

    Sessions: a user (drawn by activity), a device (mostly their habitual one), a
    start time within the last 30 days (weekends busier) at a local hour near the
    user's peak or following the diurnal curve, and a run of page slots 1..n. Each
    slot shows a stream chosen by `Exposure`; clicks follow `ClickModel`, minutes
    watched `WatchModel`.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3, chunk_index]))
    session, position, n_sessions = _sessions(rng, rows)

    activity = np.cumsum(audience.activity)
    who = np.searchsorted(activity, rng.random(n_sessions) * activity[-1], side="right")
    who = np.minimum(who, len(activity) - 1)
    habitual = rng.random(n_sessions) < audience.device_habit[who]
    other_device = rng.choice(len(DEVICES), size=n_sessions, p=DEVICE_SHARES)
    device = np.where(habitual, audience.device[who], other_device)
    day = rng.choice(WINDOW_DAYS, size=n_sessions, p=day_weights(as_of))
    at_peak = rng.random(n_sessions) < audience.hour_habit[who]
    around_peak = audience.peak_hour[who] + audience.hour_spread[who] * rng.standard_normal(
        n_sessions
    )
    diurnal = rng.choice(24, size=n_sessions, p=DIURNAL_P) + rng.random(n_sessions)
    local_hour = np.mod(np.where(at_peak, around_peak, diurnal), 24.0)
    usual_hour = hour_gap(local_hour, audience.peak_hour[who]) <= USUAL_HOUR_HOURS
    utc_seconds = np.round((day * 24 + local_hour - audience.utc_offset[who]) * 3600.0)
    span = WINDOW_DAYS * 86_400 - PAGE_SLOTS * MAX_GAP_SECONDS
    start = np.mod(utc_seconds, span).astype(np.int64)
    gap = rng.integers(2, MAX_GAP_SECONDS + 1, size=n_sessions)

    user = who[session]
    stream, _ = exposure.choose(rng, audience, user)

    response = respond(
        rng,
        audience,
        catalogue,
        user,
        stream,
        position=position,
        usual_device=(device == audience.device[who])[session],
        usual_hour=usual_hour[session],
        device=device[session],
        model=model,
    )
    clicked, minutes = response.clicked, response.minutes

    window_start = epoch_microseconds(as_of) - WINDOW_DAYS * 86_400 * 1_000_000
    at_us = window_start + (start[session] + (position - 1) * gap[session]) * 1_000_000
    session_numbers = chunk_index * CHUNK_ROWS + session
    devices = pd.Series(
        pd.Categorical.from_codes(device[session], categories=pd.Index(DEVICES, dtype="str"))
    )
    return pd.DataFrame(
        {
            "user_id": user_ids.array.take(user),
            "stream_id": stream_ids.array.take(stream),
            "impression_at": pd.to_datetime(at_us, unit="us", utc=True),
            "clicked": clicked,
            "watch_time_minutes": minutes,
            "device_type": devices.astype("str").array,
            "page_position": position.astype(np.int64),
            "session_id": format_ids("session_", session_numbers, 9).array,
        }
    )


def impression_chunks(
    audience: Audience,
    catalogue: Catalogue,
    exposure: Exposure,
    user_ids: pd.Series,
    stream_ids: pd.Series,
    n_impressions: int,
    *,
    seed: int,
    as_of: datetime,
    chunk_rows: int = CHUNK_ROWS,
    model: ClickModel = CLICK_MODEL,
) -> Iterator[pd.DataFrame]:
    """Yield the impression log lazily, `chunk_rows` rows at a time (the last may be short).

    Chunk i always comes from RNG (seed, 3, i), so the log is deterministic whatever
    consumes it, and only one chunk is ever in memory. Per-user state (favourites,
    habits) is in `audience`, drawn once up front, so chunks stay independent.
    """
    if chunk_rows > CHUNK_ROWS:
        raise ValueError(f"chunk_rows must be at most {CHUNK_ROWS} (session ids rely on it)")
    if n_impressions > 0 and (len(user_ids) == 0 or len(stream_ids) == 0):
        raise ValueError("impressions need at least one user and one stream")
    if n_impressions == 0:
        return
    for index, first in enumerate(range(0, n_impressions, chunk_rows)):
        yield impression_chunk(
            audience,
            catalogue,
            exposure,
            user_ids,
            stream_ids,
            rows=min(chunk_rows, n_impressions - first),
            chunk_index=index,
            seed=seed,
            as_of=as_of,
            model=model,
        )

"""Synthetic users, streams and impressions for Hometown, deterministic per seed.

`generate()` returns a `seed.loader.Dataset`: the users and streams frames in
full, and the impression log as a lazy iterator of chunks, so ten million rows
never sit in memory at once. Every column is built with whole-array numpy/pandas
operations (no per-row Python), which is what makes a million users and a million
streams take seconds rather than minutes.

Randomness: users come from RNG (seed, 1), streams from (seed, 2), impression
chunk i from (seed, 3, i), the taste communities from (seed, 4) and the users'
favourite channels from (seed, 5). Changing the number of streams therefore leaves
the users (and their communities and habits) unchanged, and every chunk can be
regenerated on its own.
"""

from __future__ import annotations

import sys
import time
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from app.db.limits import STREAM_COLUMNS, USER_COLUMNS
from seed.behaviour import (
    CHUNK_ROWS,
    CLICK_MODEL,
    DEVICE_SHARES,
    DIURNAL_P,
    Audience,
    Catalogue,
    ClickModel,
    Exposure,
    epoch_microseconds,
    format_ids,
    impression_chunks,
    with_favourites,
)
from seed.cities import ENGLISH, PLACES, IntArray, choose_places, scatter
from seed.loader import Dataset
from seed.tastes import (
    MAX_FAVOURITES,
    Communities,
    habitual_devices,
    loyalty_shares,
    peak_hours,
    stream_communities,
    user_communities,
)

DEFAULT_AS_OF = datetime(2026, 11, 1, tzinfo=UTC)

# fmt: off
CATEGORIES: tuple[str, ...] = (
    "just_chatting", "gaming", "music", "esports", "irl", "art", "sports", "cooking",
    "travel", "science_tech", "education", "fitness", "asmr", "talk_shows", "retro_gaming",
    "speedrunning", "creative", "outdoors", "podcasts", "makers",
)
CATEGORY_LABELS: tuple[str, ...] = (
    "Just Chatting", "Gaming", "Music", "Esports", "IRL", "Art", "Sports", "Cooking",
    "Travel", "Science & Tech", "Education", "Fitness", "ASMR", "Talk Shows", "Retro Gaming",
    "Speedrunning", "Creative", "Outdoors", "Podcasts", "Makers",
)
# Relative popularity, for both streamers' categories and viewers' preferences.
CATEGORY_WEIGHTS = np.array(
    [14, 22, 8, 7, 6, 4, 6, 3, 3, 3, 2, 2, 2, 3, 3, 2, 3, 2, 3, 2], dtype=np.float64
)
ADJECTIVES = (
    "Chill", "Late-night", "Cozy", "Chaotic", "Daily", "Sunday", "Pro", "Casual",
    "Epic", "Lazy", "Wholesome", "Ranked", "Midnight", "Morning", "Weekend", "Marathon",
)
HOOKS = (
    "", " with friends", " and chat", " | come hang out", " | new schedule",
    " for beginners", " | road to 1k", " all day",
)
SCHEDULES = (
    "Live most evenings.", "Weekends only.", "Every day at noon.", "Random schedule!",
    "Mon/Wed/Fri.", "Late nights, every night.",
)
GREETINGS = {
    "en": "Hey!", "es": "¡Hola!", "pt": "Olá!", "fr": "Salut !", "de": "Servus!",
    "it": "Ciao!", "nl": "Hoi!", "sv": "Hej!", "pl": "Cześć!", "tr": "Merhaba!",
    "ru": "Привет!", "ar": "مرحبا!", "hi": "नमस्ते!", "th": "สวัสดี!", "id": "Halo!",
    "ko": "안녕하세요!", "ja": "こんにちは!", "no": "Hei!", "da": "Hej!",
}
TAG_POOL = (
    "chill", "competitive", "family_friendly", "beginner_friendly", "ranked", "cozy",
    "community", "variety", "speedrun", "educational", "high_energy", "no_backseating",
    "new_streamer", "subathon", "drops_enabled",
)
# fmt: on

USER_SPARSE_SHARE = 0.02  # users living in one of the remote towns
STREAM_SPARSE_SHARE = 0.03
USER_ENGLISH_SHARE = 0.10  # users outside English-speaking places who use English
STREAM_ENGLISH_SHARE = 0.20  # streamers do so more: English reaches a bigger audience
USER_FOREIGN_SHARE = 0.05  # in English-speaking places: another city's language
STREAM_FOREIGN_SHARE = 0.06
USER_SPREAD = 0.35  # 2-D normal sigma, as a share of the metro radius (98% inside)
STREAM_SPREAD = 0.5  # wider: 86% inside the radius
MIN_PREFERRED, MAX_PREFERRED = 2, 5
QUALITY_ALPHA = 2.0  # Pareto tail index of stream quality: P(q > x) = x^-2 for 1 <= x < 10
QUALITY_CAP = 10.0
PARTNERED_SHARE = 0.30
MATURE_SHARE = 0.20
LIVE_SHARE = 0.20
REGISTRATION_YEARS = 5


def say(message: str) -> None:
    """Progress on stderr, one line per step."""
    print(f"[generate] {message}", file=sys.stderr, flush=True)


def id_width(n: int) -> int:
    """Digits in ids: 6, or more once `n` ids no longer fit (`user_1000000`)."""
    return max(6, len(str(max(n - 1, 0))))


def _arrow(values: Sequence[str]) -> pa.Array:
    return pa.array(list(values), type=pa.large_string())


def _series(values: pa.Array) -> pd.Series:
    return pd.Series(pd.array(values, dtype="str"))


def take_strings(table: Sequence[str], codes: IntArray) -> pd.Series:
    """`table[codes]` as a string column: one Arrow `take`, no Python string objects."""
    return _series(_arrow(table).take(pa.array(codes, type=pa.int64())))


Part = str | tuple[Sequence[str], IntArray]


def compose(*parts: Part) -> pd.Series:
    """Row-wise concatenation of constant strings and `table[codes]` lookups.

    Every combination of the (small) tables is built once, then each row picks its
    combination with one `take`: a single pass over the rows however many parts
    there are, instead of one string concatenation over the rows per part.
    """
    tables = [(part,) if isinstance(part, str) else tuple(part[0]) for part in parts]
    sizes = tuple(len(table) for table in tables)
    grid = np.unravel_index(np.arange(int(np.prod(sizes))), sizes)
    columns = [_arrow(table).take(pa.array(g)) for table, g in zip(tables, grid, strict=True)]
    combinations = pc.binary_join_element_wise(*columns, pa.scalar("", pa.large_string()))
    codes = [np.int64(0) if isinstance(part, str) else part[1] for part in parts]
    n = max((len(c) for c in codes if isinstance(c, np.ndarray)), default=1)
    rows = np.ravel_multi_index([np.broadcast_to(c, (n,)) for c in codes], sizes)
    return _series(combinations.take(pa.array(rows, type=pa.int64())))


def slug(text: str) -> str:
    """ASCII tag form of a place name: `São Paulo` -> `sao_paulo`."""
    folded = unicodedata.normalize("NFKD", text.replace("ø", "o")).encode("ascii", "ignore")
    return folded.decode().lower().replace(" ", "_").replace("-", "_")


def timestamps(microseconds: IntArray, valid: np.ndarray | None = None) -> pd.Series:
    """UTC timestamps from microseconds since the epoch; NaT where `valid` is False."""
    values = microseconds.astype("datetime64[us]")
    if valid is not None:
        values[~valid] = np.datetime64("NaT")
    return pd.Series(pd.to_datetime(values, utc=True))


def _languages(
    rng: np.random.Generator, place: IntArray, english_share: float, foreign_share: float
) -> IntArray:
    """The place's language; English for some; in English places, some speak another one."""
    local = PLACES.language[place]
    draw = rng.random(len(place))
    city_p = PLACES.user_weight[: PLACES.n_cities] / PLACES.user_weight[: PLACES.n_cities].sum()
    other = PLACES.language[rng.choice(PLACES.n_cities, size=len(place), p=city_p)]
    english_place = local == ENGLISH
    language = np.where(~english_place & (draw < english_share), ENGLISH, local)
    return np.where(english_place & (draw < foreign_share), other, language).astype(np.int64)


def _preferred_categories(rng: np.random.Generator, n: int) -> tuple[IntArray, pd.Series]:
    """2-5 distinct categories per user, drawn by popularity without replacement.

    Pick j (j = 1..5) is drawn for all users at once from the category weights;
    users whose draw repeats an earlier pick redraw (only they, in a few short
    rounds), which is exactly sampling without replacement. Returns a bitmask per
    user (bit c = category c) and the PostgreSQL array literal, built once per
    distinct set rather than once per user.
    """
    cdf = np.cumsum(CATEGORY_WEIGHTS) / CATEGORY_WEIGHTS.sum()
    count = rng.integers(MIN_PREFERRED, MAX_PREFERRED + 1, size=n)
    mask = np.zeros(n, dtype=np.int64)
    for pick in range(MAX_PREFERRED):  # five passes over all users, not a loop over users
        todo = np.flatnonzero(count > pick)
        while todo.size:  # redraw rounds; each keeps only the users who hit a repeat
            drawn = np.searchsorted(cdf, rng.random(todo.size), side="right")
            drawn = np.minimum(drawn, len(CATEGORIES) - 1)
            fresh = (mask[todo] >> drawn) & 1 == 0
            mask[todo[fresh]] |= np.left_shift(1, drawn[fresh])
            todo = todo[~fresh]

    uniques, inverse = np.unique(mask, return_inverse=True)
    literal = pd.Series("", index=range(len(uniques)), dtype="str")
    for bit, name in enumerate(CATEGORIES):  # 20 passes over the distinct sets, not rows
        literal = literal + np.where((uniques >> bit) & 1 == 1, name + ",", "")
    literal = "{" + literal.str.rstrip(",") + "}"
    return mask, take_strings(literal.tolist(), inverse)


def make_users(
    rng: np.random.Generator, n: int, as_of: datetime, communities: Communities
) -> tuple[pd.DataFrame, Audience]:
    """The users frame and the hidden traits the behaviour model needs.

    The latent traits (click propensity, communities, habits, loyalty) are drawn
    after every column of the frame, so they leave the frame as it was without them.
    Favourite channels need the streams: `with_favourites` draws them later.
    """
    place = choose_places(
        rng, n, PLACES.user_weight, PLACES.n_cities, sparse_share=USER_SPARSE_SHARE
    )
    lat, lon = scatter(
        rng, PLACES.latitude[place], PLACES.longitude[place], USER_SPREAD * PLACES.radius_km[place]
    )
    language = _languages(rng, place, USER_ENGLISH_SHARE, USER_FOREIGN_SHARE)
    mask, preferred = _preferred_categories(rng, n)
    local_preference = np.round(rng.beta(2.0, 3.0, size=n), 4)
    # Newer accounts are more common (the service grows): age = 5 years * u^1.3.
    age_days = 1.0 + (REGISTRATION_YEARS * 365.0 - 1.0) * rng.random(n) ** 1.3
    registered_us = (
        epoch_microseconds(as_of) - np.round(age_days * 86_400).astype(np.int64) * 1_000_000
    )
    hours = np.exp(np.log(30.0) + 1.5 * rng.standard_normal(n)) * np.sqrt(age_days / 900.0)
    hours = np.round(hours, 1)

    frame = pd.DataFrame(
        {
            "user_id": format_ids("user_", np.arange(n), id_width(n)),
            "city": take_strings(PLACES.names, place),
            "latitude": np.round(lat, 5),
            "longitude": np.round(lon, 5),
            "language": take_strings(PLACES.languages, language),
            "timezone_offset": PLACES.utc_offset[place],
            "preferred_categories": preferred,
            "local_preference_strength": local_preference,
            "total_watch_hours": hours,
            "registration_date": timestamps(registered_us),
        }
    )
    # The latent traits, drawn after every column above (so they leave the frame alone).
    bias = rng.normal(0.0, CLICK_MODEL.user_sd, size=n)
    community, weight = user_communities(rng, communities, mask)
    device, device_habit = habitual_devices(rng, communities, community[:, 0])
    peak, hour_habit, hour_spread = peak_hours(rng, DIURNAL_P, n)
    audience = Audience(
        latitude=frame["latitude"].to_numpy(),
        longitude=frame["longitude"].to_numpy(),
        language=language,
        category_mask=mask,
        local_preference=local_preference,
        place=place,
        region=PLACES.region[place],
        utc_offset=PLACES.utc_offset[place],
        activity=(1.0 + hours) ** 0.35,
        bias=bias,
        community=community,
        community_weight=weight,
        device=device,
        device_habit=device_habit,
        peak_hour=peak,
        hour_habit=hour_habit,
        hour_spread=hour_spread,
        loyalty=loyalty_shares(rng, n),
        favourites=np.full((n, MAX_FAVOURITES), -1, dtype=np.int64),  # `with_favourites`
        n_favourites=np.zeros(n, dtype=np.int64),
    )
    return frame.loc[:, list(USER_COLUMNS)], audience


def _texts(
    rng: np.random.Generator, place: IntArray, language: IntArray, category: IntArray
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Titles, descriptions and tag literals (without the closing brace) from templates."""
    n = len(place)
    hooks = HOOKS + tuple(" live from " + name for name in PLACES.names)
    hook = np.where(rng.random(n) < 0.3, len(HOOKS) + place, rng.integers(0, len(HOOKS), size=n))
    title = compose(
        (ADJECTIVES, rng.integers(0, len(ADJECTIVES), size=n)),
        " ",
        (CATEGORY_LABELS, category),
        (hooks, hook),
    )
    description = compose(
        ([GREETINGS.get(code, "Hi!") for code in PLACES.languages], language),
        " Streaming ",
        ([label.lower() for label in CATEGORY_LABELS], category),
        " from ",
        (
            [
                f"{name}, {country}"
                for name, country in zip(PLACES.names, PLACES.countries, strict=True)
            ],
            place,
        ),
        ". ",
        (SCHEDULES, rng.integers(0, len(SCHEDULES), size=n)),
    )
    extra = rng.integers(0, 3, size=n)
    first = rng.integers(0, len(TAG_POOL), size=n)
    second = (first + rng.integers(1, len(TAG_POOL), size=n)) % len(TAG_POOL)
    pool = ("", *("," + tag for tag in TAG_POOL))
    tags = compose(
        "{",
        (CATEGORIES, category),
        ",",
        ([slug(name) for name in PLACES.names], place),
        ",",
        (PLACES.languages, language),
    ) + compose(
        (pool, np.where(extra >= 1, first + 1, 0)), (pool, np.where(extra >= 2, second + 1, 0))
    )
    return title, description, tags


def make_streams(
    rng: np.random.Generator,
    n: int,
    as_of: datetime,
    live_share: float,
    communities: Communities,
) -> tuple[pd.DataFrame, Catalogue]:
    """The streams frame and the arrays the behaviour model needs.

    The taste communities are drawn after every column of the frame (they are not
    in the streams table).
    """
    place = choose_places(
        rng, n, PLACES.streamer_weight, PLACES.n_cities, sparse_share=STREAM_SPARSE_SHARE
    )
    lat, lon = scatter(
        rng,
        PLACES.latitude[place],
        PLACES.longitude[place],
        STREAM_SPREAD * PLACES.radius_km[place],
    )
    language = _languages(rng, place, STREAM_ENGLISH_SHARE, STREAM_FOREIGN_SHARE)
    category = rng.choice(len(CATEGORIES), size=n, p=CATEGORY_WEIGHTS / CATEGORY_WEIGHTS.sum())

    # Pareto by inverse CDF, so `percentile` is each stream's quality rank for free.
    percentile = rng.random(n)
    pareto = (1.0 - percentile) ** (-1.0 / QUALITY_ALPHA)
    quality = np.round(np.minimum(pareto, QUALITY_CAP), 2).astype(np.float64)
    viewers = np.floor(np.exp(np.log(6.0) + 2.0 * np.log(quality) + 1.1 * rng.standard_normal(n)))
    followers = np.round(
        np.exp(np.log(40.0) + np.log1p(viewers) + 0.9 * rng.standard_normal(n))
    ).astype(np.int64)
    partnered = rng.random(n) < PARTNERED_SHARE * (0.5 + percentile)
    mature = rng.random(n) < MATURE_SHARE
    duration = np.exp(np.log(150.0) + 0.45 * rng.standard_normal(n))
    duration = np.clip(np.round(duration / 15.0) * 15.0, 30, 720).astype(np.int64)

    # More streams are live where it is evening at `as_of`, and fewer where it is night.
    local_hour = (as_of.hour + as_of.minute / 60.0 + PLACES.utc_offset[place]) % 24.0
    diurnal = DIURNAL_P[local_hour.astype(np.int64)]
    if live_share >= 1.0:  # benchmarks ask for every stream live
        live_p = np.ones(n)
    else:
        live_p = np.minimum(live_share * diurnal / diurnal.mean(), 1.0) if n else diurnal
    live = rng.random(n) < live_p
    current = np.where(live, np.round(viewers * np.exp(0.35 * rng.standard_normal(n))), 0).astype(
        np.int64
    )
    elapsed_s = np.round(rng.uniform(0.02, 0.95, size=n) * duration * 60.0).astype(np.int64)
    since_us = epoch_microseconds(as_of) - np.maximum(elapsed_s, 60) * 1_000_000
    title, description, tags = _texts(rng, place, language, category)

    ids = np.arange(n)
    frame = pd.DataFrame(
        {
            "stream_id": format_ids("stream_", ids, id_width(n)),
            "creator_id": format_ids("creator_", ids, id_width(n)),
            "city": take_strings(PLACES.names, place),
            "latitude": np.round(lat, 5),
            "longitude": np.round(lon, 5),
            "language": take_strings(PLACES.languages, language),
            "category_id": take_strings(CATEGORIES, category),
            "title": title,
            "description": description,
            "tags": tags + take_strings(("}", ",18plus}"), mature.astype(np.int64)),
            "avg_viewer_count": viewers.astype(np.int64),
            "creator_followers": followers,
            "stream_quality_score": quality,
            "typical_duration_minutes": duration,
            "is_partnered": partnered,
            "mature_content": mature,
            "is_live": live,
            "current_viewer_count": current,
            "live_since": timestamps(since_us, live),
            "updated_at": timestamps(np.full(n, epoch_microseconds(as_of), dtype=np.int64)),
        }
    )
    main, second, second_weight = stream_communities(rng, communities, category)
    catalogue = Catalogue(
        latitude=frame["latitude"].to_numpy(),
        longitude=frame["longitude"].to_numpy(),
        language=language,
        category=category.astype(np.int64),
        quality=quality,
        avg_viewers=viewers,
        partnered=partnered,
        mature=mature,
        duration=duration.astype(np.float64),
        place=place,
        region=PLACES.region[place],
        community=main,
        second_community=second,
        second_weight=second_weight,
    )
    return frame.loc[:, list(STREAM_COLUMNS)], catalogue


@dataclass
class _Tally:
    rows: int = 0
    clicks: int = 0
    seconds: float = 0.0


def _reported(chunks: Iterator[pd.DataFrame], n_impressions: int) -> Iterator[pd.DataFrame]:
    """Pass chunks through, with a progress line now and then and a summary at the end."""
    tally = _Tally()
    every = max(1, n_impressions // 10)
    while True:
        started = time.perf_counter()
        chunk = next(chunks, None)
        tally.seconds += time.perf_counter() - started
        if chunk is None:
            break
        before = tally.rows
        tally.rows += len(chunk)
        tally.clicks += int(chunk["clicked"].sum())
        if tally.rows // every != before // every and tally.rows < n_impressions:
            say(f"impressions: {tally.rows:,} / {n_impressions:,}")
        yield chunk
    rate = tally.clicks / tally.rows if tally.rows else 0.0
    say(
        f"impressions {tally.rows:,} generated in {tally.seconds:.1f}s"
        f" (click rate {rate:.1%}, {tally.clicks:,} clicks)"
    )


class World(NamedTuple):
    """The two tables and the behaviour model's view of them (latent traits included)."""

    users: pd.DataFrame
    streams: pd.DataFrame
    audience: Audience
    catalogue: Catalogue
    exposure: Exposure
    communities: Communities
    seconds: float


def make_world(
    n_users: int,
    n_streams: int,
    *,
    seed: int = 42,
    as_of: datetime = DEFAULT_AS_OF,
    live_share: float = LIVE_SHARE,
) -> World:
    """Users, streams, communities and favourites: everything but the impression log.

    `generate` calls it; tests call it to check the log against the latent traits.
    """
    started = time.perf_counter()
    communities = Communities.draw(
        np.random.default_rng([seed, 4]), CATEGORY_WEIGHTS, np.asarray(DEVICE_SHARES)
    )
    users, audience = make_users(np.random.default_rng([seed, 1]), n_users, as_of, communities)
    users_s = time.perf_counter() - started
    say(f"users: {n_users:,} in {users_s:.1f}s")

    started = time.perf_counter()
    streams, catalogue = make_streams(
        np.random.default_rng([seed, 2]), n_streams, as_of, live_share, communities
    )
    streams_s = time.perf_counter() - started
    live = float(streams["is_live"].mean()) if n_streams else 0.0
    say(f"streams: {n_streams:,} in {streams_s:.1f}s ({live:.1%} live)")

    started = time.perf_counter()
    exposure = Exposure.build(
        catalogue,
        n_places=PLACES.size,
        n_regions=len(PLACES.regions),
        n_languages=len(PLACES.languages),
        n_communities=communities.n,
    )
    if n_streams:
        audience = with_favourites(np.random.default_rng([seed, 5]), audience, exposure)
    tastes_s = time.perf_counter() - started
    say(f"favourite channels and samplers in {tastes_s:.1f}s")
    return World(
        users, streams, audience, catalogue, exposure, communities, users_s + streams_s + tastes_s
    )


def generate(
    n_users: int = 1000,
    n_streams: int = 500,
    n_impressions: int = 10_000,
    *,
    seed: int = 42,
    as_of: datetime = DEFAULT_AS_OF,
    live_share: float = LIVE_SHARE,
    chunk_rows: int = CHUNK_ROWS,
    click_model: ClickModel = CLICK_MODEL,
) -> Dataset:
    """Build a synthetic dataset; the same arguments always give the same data.

    Args:
        n_users: number of users.
        n_streams: number of streams (one per creator).
        n_impressions: rows of the impression log, generated lazily in chunks.
        seed: RNG seed (>= 0).
        as_of: the "now" of the dataset: live streams started before it,
            impressions fall in the 30 days before it. Must be timezone-aware.
        live_share: expected share of streams live at `as_of` (1.0: every stream).
        chunk_rows: impressions per chunk (at most the default, 500,000); chunk i
            does not depend on the total when full, so a longer log extends a shorter one.
        click_model: the coefficients clicks follow (seed/behaviour.py); another
            setting gives another world to check that a model generalises.

    Returns:
        A `Dataset` whose `interactions` is a one-shot iterator of DataFrame chunks;
        call `generate` again to get the same log once more.
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    if min(n_users, n_streams, n_impressions) < 0:
        raise ValueError("counts must be >= 0")
    if n_impressions > 0 and min(n_users, n_streams) == 0:
        raise ValueError("impressions need at least one user and one stream")
    if not 0 < chunk_rows <= CHUNK_ROWS:
        raise ValueError(f"chunk_rows must be in 1..{CHUNK_ROWS}")
    as_of = as_of.astimezone(UTC)
    world = make_world(n_users, n_streams, seed=seed, as_of=as_of, live_share=live_share)
    chunks = impression_chunks(
        world.audience,
        world.catalogue,
        world.exposure,
        world.users["user_id"],
        world.streams["stream_id"],
        n_impressions,
        seed=seed,
        as_of=as_of,
        chunk_rows=chunk_rows,
        model=click_model,
    )
    users, streams = world.users, world.streams
    live = float(streams["is_live"].mean()) if n_streams else 0.0
    say(
        f"users {n_users:,}, streams {n_streams:,} ({live:.1%} live) ready in"
        f" {world.seconds:.1f}s; {n_impressions:,} impressions follow lazily"
    )
    return Dataset(users=users, streams=streams, interactions=_reported(chunks, n_impressions))

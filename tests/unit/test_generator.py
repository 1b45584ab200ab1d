"""The synthetic generator: shape, determinism, distributions and the click model's direction."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from app.db.limits import DEVICES, INTERACTION_COLUMNS, STREAM_COLUMNS, USER_COLUMNS
from app.geo import haversine_km
from seed.behaviour import PAGE_SLOTS, click_probability
from seed.cities import CITIES, PLACES, SPARSE_TOWNS, scatter
from seed.generate import CATEGORIES, DEFAULT_AS_OF, generate, id_width
from seed.loader import Dataset

N_USERS, N_STREAMS, N_IMPRESSIONS = 20_000, 20_000, 300_000
CITY = {place.name: place for place in CITIES + SPARSE_TOWNS}


@pytest.fixture(scope="module")
def data() -> Dataset:
    """One mid-sized dataset, impressions materialised into a single frame."""
    dataset = generate(N_USERS, N_STREAMS, N_IMPRESSIONS, seed=7)
    dataset.interactions = pd.concat(list(dataset.interactions), ignore_index=True)
    return dataset


@pytest.fixture(scope="module")
def pairs(data: Dataset) -> pd.DataFrame:
    """Impressions joined with the user and stream features the click model uses."""
    log = data.interactions
    assert isinstance(log, pd.DataFrame)
    users = data.users.set_index("user_id")
    streams = data.streams.set_index("stream_id")
    user = users.loc[log["user_id"]]
    stream = streams.loc[log["stream_id"]]
    preferred = user["preferred_categories"].str.strip("{}").str.split(",")
    category = stream["category_id"].to_numpy()
    return pd.DataFrame(
        {
            "clicked": log["clicked"].to_numpy(),
            "distance_km": haversine_km(
                user["latitude"].to_numpy(),
                user["longitude"].to_numpy(),
                stream["latitude"].to_numpy(),
                stream["longitude"].to_numpy(),
            ),
            "same_language": user["language"].to_numpy() == stream["language"].to_numpy(),
            "category_match": [c in p for c, p in zip(category, preferred, strict=True)],
        }
    )


def _centre_km(frame: pd.DataFrame, city: str) -> np.ndarray:
    rows = frame[frame["city"] == city]
    place = CITY[city]
    return haversine_km(
        rows["latitude"].to_numpy(),
        rows["longitude"].to_numpy(),
        np.full(len(rows), place.latitude),
        np.full(len(rows), place.longitude),
    )


# --- shape and determinism -------------------------------------------------------------


def test_columns_are_the_loaders(data: Dataset) -> None:
    assert tuple(data.users.columns) == USER_COLUMNS
    assert tuple(data.streams.columns) == STREAM_COLUMNS
    assert isinstance(data.interactions, pd.DataFrame)
    assert tuple(data.interactions.columns) == INTERACTION_COLUMNS
    assert (len(data.users), len(data.streams), len(data.interactions)) == (
        N_USERS,
        N_STREAMS,
        N_IMPRESSIONS,
    )


def _materialise(dataset: Dataset) -> list[pd.DataFrame]:
    assert isinstance(dataset.interactions, Iterator)
    return list(dataset.interactions)


def test_same_seed_gives_identical_frames_and_chunks() -> None:
    first = generate(800, 400, 25_000, seed=3, chunk_rows=7_000)
    second = generate(800, 400, 25_000, seed=3, chunk_rows=7_000)
    pd.testing.assert_frame_equal(first.users, second.users)
    pd.testing.assert_frame_equal(first.streams, second.streams)
    chunks_a, chunks_b = _materialise(first), _materialise(second)
    assert [len(c) for c in chunks_a] == [7_000, 7_000, 7_000, 4_000]
    for a, b in zip(chunks_a, chunks_b, strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_other_seed_gives_other_data() -> None:
    first = generate(300, 200, 2_000, seed=1)
    second = generate(300, 200, 2_000, seed=2)
    assert not first.users.equals(second.users)
    assert not first.streams.equals(second.streams)
    assert not _materialise(first)[0].equals(_materialise(second)[0])


def test_impressions_are_lazy() -> None:
    started = time.perf_counter()
    dataset = generate(100, 100, 10**9, chunk_rows=1_000)
    assert time.perf_counter() - started < 5
    assert isinstance(dataset.interactions, Iterator)
    assert len(next(dataset.interactions)) == 1_000


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        generate(10, 10, 10, as_of=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="at least one"):
        generate(10, 0, 10)


def test_ids_are_zero_padded_and_unique(data: Dataset) -> None:
    assert data.users["user_id"].iloc[0] == "user_000000"
    assert data.users["user_id"].iloc[-1] == f"user_{N_USERS - 1:06d}"
    assert data.streams["stream_id"].iloc[42] == "stream_000042"
    assert data.streams["creator_id"].iloc[42] == "creator_000042"
    assert data.users["user_id"].is_unique and data.streams["stream_id"].is_unique
    assert (id_width(1), id_width(1_000_000), id_width(1_000_001)) == (6, 6, 7)


def test_array_columns_are_postgres_literals(data: Dataset) -> None:
    literal = re.compile(r"^\{[a-z0-9_]+(,[a-z0-9_]+)*\}$")
    assert data.users["preferred_categories"].str.match(literal).all()
    assert data.streams["tags"].str.match(literal).all()


# --- places ----------------------------------------------------------------------------


def test_thirty_two_cities_with_plausible_attributes() -> None:
    assert len(CITIES) == 32 and len({c.name for c in CITIES}) == 32
    for city in ("Sydney", "Melbourne", "São Paulo", "Buenos Aires", "Johannesburg", "Auckland"):
        assert CITY[city].latitude < 0, city
    for city in ("Tokyo", "London", "New York", "Moscow"):
        assert CITY[city].latitude > 0, city
    assert CITY["Auckland"].longitude > 170
    assert CITY["New York"].longitude < 0 and CITY["São Paulo"].longitude < 0
    languages = {"Paris": "fr", "Tokyo": "ja", "Berlin": "de", "São Paulo": "pt", "Seoul": "ko"}
    assert {name: CITY[name].language for name in languages} == languages
    assert CITY["Mumbai"].utc_offset == 5.5
    assert all(-12 <= p.utc_offset <= 14 for p in CITIES + SPARSE_TOWNS)
    assert not np.allclose(
        PLACES.user_weight / PLACES.user_weight.sum(),
        PLACES.streamer_weight / PLACES.streamer_weight.sum(),
    )


@pytest.mark.parametrize(
    ("a", "b", "km"),
    [("Sydney", "Melbourne", 714), ("London", "Paris", 344), ("New York", "Los Angeles", 3936)],
)
def test_city_coordinates_give_known_distances(a: str, b: str, km: float) -> None:
    one, two = CITY[a], CITY[b]
    coordinates = (one.latitude, one.longitude, two.latitude, two.longitude)
    got = haversine_km(*(np.array([value]) for value in coordinates))
    assert got[0] == pytest.approx(km, rel=0.01)


def test_scatter_wraps_longitude_and_corrects_for_latitude() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    lat, lon = scatter(rng, np.full(n, -18.0), np.full(n, 179.9), np.full(n, 50.0))
    assert lon.min() >= -180 and lon.max() < 180
    assert (lon < 0).any() and (lon > 0).any()  # both sides of the antimeridian
    lat, lon = scatter(rng, np.full(n, 60.0), np.full(n, 10.0), np.full(n, 20.0))
    # At 60°N a degree of longitude is half a degree of latitude in km.
    assert np.std(lon) / np.std(lat) == pytest.approx(2.0, rel=0.05)
    lat, _ = scatter(rng, np.full(n, 89.9), np.zeros(n), np.full(n, 50.0))
    assert lat.max() <= 90


# --- users -----------------------------------------------------------------------------


def test_users_follow_city_weights(data: Dataset) -> None:
    shares = data.users["city"].value_counts(normalize=True)
    weights = PLACES.user_weight[: PLACES.n_cities]
    expected = 0.98 * weights / weights.sum()  # 2% live in remote towns
    for name, share in zip(PLACES.names[: PLACES.n_cities], expected, strict=True):
        tolerance = 4 * np.sqrt(share * (1 - share) / N_USERS)
        assert abs(shares.get(name, 0.0) - share) < tolerance, name
    towns = data.users["city"].isin([t.name for t in SPARSE_TOWNS]).mean()
    assert 0.01 < towns < 0.03


def test_users_mostly_speak_their_city_language(data: Dataset) -> None:
    users = data.users
    for city, language in [("Paris", "fr"), ("Tokyo", "ja"), ("São Paulo", "pt")]:
        spoken = users.loc[users["city"] == city, "language"].value_counts(normalize=True)
        assert spoken[language] > 0.85, city
        assert spoken.get("en", 0.0) > 0.05, city  # some English mixed in
    assert users.loc[users["city"] == "London", "language"].eq("en").mean() > 0.9


def test_users_live_around_their_city(data: Dataset) -> None:
    users = data.users
    for city in ("Sydney", "Melbourne", "São Paulo", "Buenos Aires", "Johannesburg"):
        assert (users.loc[users["city"] == city, "latitude"] < 0).all(), city
    for city in ("Paris", "Tokyo", "New York"):
        distance = _centre_km(users, city)
        assert np.mean(distance < CITY[city].radius_km) > 0.95, city
        assert distance.std() > 3, city
    assert users["latitude"].between(-90, 90).all()
    assert users["longitude"].between(-180, 180).all()


def test_user_preferences_and_traits(data: Dataset) -> None:
    users = data.users
    preferred = users["preferred_categories"].str.strip("{}").str.split(",")
    sizes = preferred.map(len)
    distinct = preferred.map(lambda c: len(set(c)))
    assert sizes.between(2, 5).all() and (sizes == distinct).all()
    assert set(sizes.unique()) == {2, 3, 4, 5}
    assert set(preferred.explode().unique()) <= set(CATEGORIES)
    assert len(CATEGORIES) == 20

    strength = users["local_preference_strength"]
    assert strength.between(0, 1).all()
    assert strength.mean() == pytest.approx(0.4, abs=0.01)  # Beta(2, 3)
    assert strength.var() == pytest.approx(0.04, abs=0.004)

    hours = users["total_watch_hours"]
    assert (hours >= 0).all() and hours.mean() > 1.5 * hours.median()
    assert users["timezone_offset"].between(-12, 14).all()
    registered = users["registration_date"]
    assert str(registered.dt.tz) == "UTC"
    assert (registered < DEFAULT_AS_OF).all()
    assert (registered > DEFAULT_AS_OF - timedelta(days=5 * 366)).all()


# --- streams ---------------------------------------------------------------------------


def test_streams_spread_across_the_metro_area(data: Dataset) -> None:
    streams, users = data.streams, data.users
    for city in ("Los Angeles", "Seoul", "Paris", "Sydney"):
        distance = _centre_km(streams, city)
        assert distance.std() > 5, city
        assert np.mean(distance < CITY[city].radius_km) > 0.8, city
        assert np.median(distance) > np.median(_centre_km(users, city)), city
    at = streams[["latitude", "longitude"]].drop_duplicates()
    assert len(at) > 0.99 * len(streams)
    assert streams["city"].isin([t.name for t in SPARSE_TOWNS]).mean() > 0.01


def test_quality_is_a_capped_power_law(data: Dataset) -> None:
    quality = data.streams["stream_quality_score"]
    assert quality.min() >= 0 and quality.max() <= 10
    assert quality.median() < 0.8 * quality.mean()
    # Survival P(q > x) = x^-2: the log-log slope between 2 and 8 is about -2.
    survival = [np.mean(quality > x) for x in (2.0, 8.0)]
    slope = np.log(survival[1] / survival[0]) / np.log(8.0 / 2.0)
    assert slope == pytest.approx(-2.0, abs=0.25)


def test_audience_grows_with_quality_and_is_heavy_tailed(data: Dataset) -> None:
    streams = data.streams
    viewers = streams["avg_viewer_count"]
    assert (viewers >= 0).all() and viewers.max() > 50 * viewers.median()
    assert streams["stream_quality_score"].corr(viewers, method="spearman") > 0.4
    assert viewers.corr(streams["creator_followers"], method="spearman") > 0.5
    assert (streams["creator_followers"] >= 0).all()


def test_stream_shares_and_live_state(data: Dataset) -> None:
    streams = data.streams
    assert streams["is_partnered"].mean() == pytest.approx(0.30, abs=0.02)
    assert streams["mature_content"].mean() == pytest.approx(0.20, abs=0.02)
    assert streams["is_live"].mean() == pytest.approx(0.20, abs=0.02)
    offline = streams[~streams["is_live"]]
    live = streams[streams["is_live"]]
    assert offline["live_since"].isna().all()
    assert (offline["current_viewer_count"] == 0).all()
    assert live["live_since"].notna().all()
    assert (live["live_since"] < DEFAULT_AS_OF).all()
    assert (live["live_since"] > DEFAULT_AS_OF - timedelta(hours=12)).all()
    ratio = (live["current_viewer_count"] + 1) / (live["avg_viewer_count"] + 1)
    assert ratio.median() == pytest.approx(1.0, abs=0.2)
    assert (streams["updated_at"] == DEFAULT_AS_OF).all()
    assert streams["typical_duration_minutes"].between(30, 720).all()
    assert set(streams["category_id"]) == set(CATEGORIES)
    paris = streams.loc[streams["city"] == "Paris", "language"].value_counts(normalize=True)
    assert paris["fr"] > 0.7 and paris["en"] > 0.1


def test_live_share_is_adjustable() -> None:
    streams = generate(10, 5_000, 0, live_share=0.5).streams
    assert streams["is_live"].mean() == pytest.approx(0.5, abs=0.04)
    assert generate(10, 2_000, 0, live_share=1.0).streams["is_live"].all()


# --- impressions and clicks ------------------------------------------------------------


def test_impression_log_is_consistent(data: Dataset) -> None:
    log = data.interactions
    assert isinstance(log, pd.DataFrame)
    assert ((log["watch_time_minutes"] > 0) == log["clicked"]).all()
    assert log["page_position"].between(1, PAGE_SLOTS).all()
    assert set(log["page_position"]) == set(range(1, PAGE_SLOTS + 1))
    assert set(log["device_type"]) == set(DEVICES)
    assert (log["impression_at"] < DEFAULT_AS_OF).all()
    assert (log["impression_at"] >= DEFAULT_AS_OF - timedelta(days=30)).all()
    assert str(log["impression_at"].dt.tz) == "UTC"
    sessions = log.groupby("session_id")
    assert (sessions["user_id"].nunique() == 1).all()
    assert (sessions["device_type"].nunique() == 1).all()
    assert 0.12 <= log["clicked"].mean() <= 0.20


def test_impressions_mix_near_and_far(pairs: pd.DataFrame) -> None:
    near = np.mean(pairs["distance_km"] < 100)
    far = np.mean(pairs["distance_km"] > 1000)
    assert near > 0.25 and far > 0.25


FIXED = {
    "distance_km": 20.0,
    "local_preference": 0.5,
    "quality": 3.0,
    "same_language": True,
    "category_match": True,
    "avg_viewers": 100.0,
    "page_position": 3,
}


@pytest.mark.parametrize(
    ("feature", "better", "worse"),
    [
        ("distance_km", 5.0, 500.0),
        ("same_language", True, False),
        ("category_match", True, False),
        ("quality", 8.0, 1.0),
        ("avg_viewers", 5_000.0, 5.0),
        ("page_position", 1, 15),
    ],
)
def test_click_probability_direction(feature: str, better: object, worse: object) -> None:
    high = click_probability(**{**FIXED, feature: better})
    low = click_probability(**{**FIXED, feature: worse})
    assert high > low


def test_local_preference_strengthens_the_pull_of_nearby_streams() -> None:
    def gain(preference: float) -> float:
        near = click_probability(**{**FIXED, "local_preference": preference, "distance_km": 1.0})
        far = click_probability(**{**FIXED, "local_preference": preference, "distance_km": 3e3})
        return float(near - far)

    assert gain(0.9) > gain(0.1) > 0


def test_click_probability_is_vectorised() -> None:
    distance = np.array([1.0, 10.0, 100.0, 1000.0])
    p = click_probability(**{**FIXED, "distance_km": distance})
    assert p.shape == (4,) and np.all(np.diff(p) < 0) and np.all((p > 0) & (p < 1))


def test_empirical_clicks_fall_with_distance(pairs: pd.DataFrame) -> None:
    bands = pd.cut(pairs["distance_km"], [-1, 50, 500, np.inf], labels=["near", "mid", "far"])
    rate = pairs.groupby(bands, observed=True)["clicked"].mean()
    assert rate["near"] > rate["mid"] > rate["far"]


def test_empirical_clicks_favour_language_and_category(pairs: pd.DataFrame) -> None:
    by_language = pairs.groupby("same_language")["clicked"].mean()
    by_category = pairs.groupby("category_match")["clicked"].mean()
    assert by_language[True] > 1.5 * by_language[False]
    assert by_category[True] > 1.5 * by_category[False]


def test_as_of_moves_the_whole_dataset() -> None:
    as_of = datetime(2030, 6, 1, 12, tzinfo=UTC)
    dataset = generate(200, 200, 1_000, as_of=as_of)
    assert (dataset.streams["updated_at"] == as_of).all()
    log = _materialise(dataset)[0]
    assert log["impression_at"].max() < as_of
    assert log["impression_at"].min() >= as_of - timedelta(days=30)

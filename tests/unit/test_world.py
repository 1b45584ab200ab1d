"""The behaviour model's collaborative structure: communities, loyalty, habits, time.

Each test checks the impression log against the latent traits that made it
(`seed.generate.make_world` returns them), or against the same log with those
traits shuffled across users, so it fails if the effect disappears.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import pytest

from app.db.limits import DEVICES
from app.geo import haversine_km
from seed.behaviour import click_probability, hour_gap
from seed.generate import World, generate, make_world
from seed.tastes import (
    MAX_USER_COMMUNITIES,
    N_COMMUNITIES,
    affinity,
    categorical_rows,
    pick_slot,
)

N_USERS, N_STREAMS, N_IMPRESSIONS = 5_000, 20_000, 300_000
SEED = 9
DEVICE_CODE = {name: code for code, name in enumerate(DEVICES)}


@dataclass
class Log:
    """The impression log with user and stream indices and the latent pair traits."""

    world: World
    rows: pd.DataFrame  # one row per impression

    @property
    def positives(self) -> pd.DataFrame:
        return self.rows[self.rows["watch_time_minutes"] > 0]

    @property
    def sessions(self) -> pd.DataFrame:
        return self.rows[self.rows["page_position"] == 1]


@pytest.fixture(scope="module")
def log() -> Log:
    world = make_world(N_USERS, N_STREAMS, seed=SEED)
    data = generate(N_USERS, N_STREAMS, N_IMPRESSIONS, seed=SEED)
    rows = pd.concat(list(data.interactions), ignore_index=True)
    user = rows["user_id"].str.removeprefix("user_").astype(np.int64).to_numpy()
    stream = rows["stream_id"].str.removeprefix("stream_").astype(np.int64).to_numpy()
    a, c = world.audience, world.catalogue
    rows["user"], rows["stream"] = user, stream
    rows["affinity"] = affinity(
        a.community[user],
        a.community_weight[user],
        c.community[stream],
        c.second_community[stream],
        c.second_weight[stream],
    )
    rows["favourite"] = (a.favourites[user] == stream[:, None]).any(axis=1)
    rows["distance_km"] = haversine_km(
        a.latitude[user], a.longitude[user], c.latitude[stream], c.longitude[stream]
    )
    rows["same_language"] = a.language[user] == c.language[stream]
    return Log(world, rows)


def _shuffled(values: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(values)


# --- determinism ---------------------------------------------------------------------


def test_latent_world_is_deterministic() -> None:
    first, second = make_world(500, 800, seed=3), make_world(500, 800, seed=3)
    for part in ("audience", "catalogue"):
        one, two = getattr(first, part), getattr(second, part)
        for field in fields(one):
            np.testing.assert_array_equal(getattr(one, field.name), getattr(two, field.name))
    other = make_world(500, 800, seed=4)
    assert not np.array_equal(first.audience.favourites, other.audience.favourites)
    assert not np.array_equal(first.catalogue.community, other.catalogue.community)


def test_users_and_their_tastes_do_not_depend_on_the_streams() -> None:
    small, large = make_world(400, 300, seed=5), make_world(400, 3_000, seed=5)
    pd.testing.assert_frame_equal(small.users, large.users)
    for name in ("community", "community_weight", "device", "peak_hour", "loyalty"):
        np.testing.assert_array_equal(getattr(small.audience, name), getattr(large.audience, name))


def test_chunks_do_not_depend_on_how_many_follow() -> None:
    short = list(generate(300, 400, 8_000, seed=2, chunk_rows=4_000).interactions)
    long = list(generate(300, 400, 12_000, seed=2, chunk_rows=4_000).interactions)
    for a, b in zip(short, long[:2], strict=True):
        pd.testing.assert_frame_equal(a, b)


# --- building blocks -----------------------------------------------------------------


def test_affinity_is_the_weights_dot_the_membership() -> None:
    user_community = np.array([[3, 7, -1], [3, 7, -1], [5, -1, -1]])
    user_weight = np.array([[0.6, 0.4, 0.0], [0.6, 0.4, 0.0], [1.0, 0.0, 0.0]])
    got = affinity(
        user_community,
        user_weight,
        main=np.array([3, 7, 2]),
        second=np.array([7, -1, -1]),
        second_weight=np.array([0.3, 0.0, 0.0]),
    )
    np.testing.assert_allclose(got, [0.6 * 0.7 + 0.4 * 0.3, 0.4, 0.0])


def test_categorical_rows_follow_each_rows_distribution() -> None:
    p = np.array([[0.5, 0.5, 0.0], [0.0, 0.1, 0.9]])
    row = np.repeat([0, 1], 50_000)
    drawn = categorical_rows(np.random.default_rng(1), np.cumsum(p, axis=1), row)
    for r in (0, 1):
        share = np.bincount(drawn[row == r], minlength=3) / 50_000
        np.testing.assert_allclose(share, p[r], atol=0.01)


def test_users_have_one_to_three_weighted_communities(log: Log) -> None:
    a = log.world.audience
    used = a.community >= 0
    assert a.community.shape == (N_USERS, MAX_USER_COMMUNITIES)
    assert set(used.sum(axis=1)) == {1, 2, 3}
    assert (used[:, 0]).all() and (np.diff(used.astype(int), axis=1) <= 0).all()
    np.testing.assert_allclose(a.community_weight.sum(axis=1), 1.0)
    assert (a.community_weight[~used] == 0).all()
    assert (np.diff(a.community_weight, axis=1) <= 1e-12).all()  # largest first
    distinct = [len(set(row[row >= 0])) == (row >= 0).sum() for row in a.community]
    assert all(distinct)
    assert set(a.community[used]) == set(range(N_COMMUNITIES))


def test_communities_lean_on_a_category_but_span_several(log: Log) -> None:
    c = log.world.catalogue
    for community in range(N_COMMUNITIES):
        shares = pd.Series(c.category[c.community == community]).value_counts(normalize=True)
        assert shares.iloc[0] < 0.85, community
        assert (shares >= 0.03).sum() >= 2, community
    profile = log.world.communities.category_profile
    np.testing.assert_allclose(profile.sum(axis=1), 1.0)
    assert c.second_community[c.second_community >= 0].size > 0.3 * N_STREAMS
    assert (c.second_community != c.community).all()


# --- communities ---------------------------------------------------------------------


def _jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b)


def test_users_sharing_a_community_co_watch_more(log: Log) -> None:
    watched = log.positives.groupby("user")["stream"].agg(set)
    users = watched.index.to_numpy()
    main = log.world.audience.community[users, 0]
    rng = np.random.default_rng(0)
    random_pairs = [rng.choice(len(users), 2, replace=False) for _ in range(4_000)]
    groups = [g for g in pd.Series(np.arange(len(users))).groupby(main).indices.values()]
    groups = [g for g in groups if len(g) > 1]
    same_pairs = [
        rng.choice(groups[rng.integers(len(groups))], 2, replace=False) for _ in range(4_000)
    ]
    sets = watched.to_numpy()
    same = np.mean([_jaccard(sets[i], sets[j]) for i, j in same_pairs])
    random = np.mean([_jaccard(sets[i], sets[j]) for i, j in random_pairs])
    assert same > 3 * random


def test_a_streams_positives_come_from_its_community(log: Log) -> None:
    a, c = log.world.audience, log.world.catalogue
    positives, rows = log.positives, log.rows

    def in_community(user: np.ndarray, stream: np.ndarray) -> float:
        return float((a.community[user] == c.community[stream][:, None]).any(axis=1).mean())

    from_members = in_community(positives["user"].to_numpy(), positives["stream"].to_numpy())
    shown_members = in_community(rows["user"].to_numpy(), rows["stream"].to_numpy())
    chance = in_community(_shuffled(positives["user"].to_numpy()), positives["stream"].to_numpy())
    assert from_members > 0.6
    assert from_members > 1.4 * shown_members  # clicks, not only exposure, follow taste
    assert chance < 0.25


# --- loyalty -------------------------------------------------------------------------


def test_loyalty_gives_repeat_watches_with_a_heavy_tail(log: Log) -> None:
    per_pair = log.positives.groupby(["user", "stream"]).size()
    per_user = per_pair.groupby(level="user").agg(["max", "sum"])
    per_user = per_user[per_user["sum"] >= 5]
    top_share = per_user["max"] / per_user["sum"]
    assert (per_user["max"] >= 2).mean() > 0.5  # most users come back to some channel
    assert top_share.quantile(0.9) > 2 * top_share.median()  # heavy tail
    regulars = (top_share > 0.5).mean()
    assert 0.03 < regulars < 0.35  # a few mostly watch one channel
    loyalty = pd.Series(log.world.audience.loyalty[per_user.index], index=per_user.index)
    assert loyalty.corr(top_share, method="spearman") > 0.3


def test_favourites_are_clicked_more_and_watched_longer(log: Log) -> None:
    rows = log.rows
    rate = rows.groupby("favourite")["clicked"].mean()
    assert rate[True] > 2.5 * rate[False]
    watch = log.positives.groupby("favourite")["watch_time_minutes"].median()
    assert watch[True] > 2 * watch[False]


def test_taste_and_loyalty_persist_over_time(log: Log) -> None:
    positives = log.positives.sort_values(["user", "impression_at"])
    rank = positives.groupby("user").cumcount()
    size = positives.groupby("user")["stream"].transform("size")
    late_mask = rank >= np.ceil(0.8 * size)
    early, late = positives[~late_mask], positives[late_mask]
    community = log.world.catalogue.community
    early_communities = early.groupby("user")["stream"].agg(lambda s: set(community[s]))
    early_streams = early.groupby("user")["stream"].agg(set)

    def share(streams: np.ndarray, known: pd.Series, key: np.ndarray | None = None) -> float:
        values = streams if key is None else key[streams]
        users = late["user"].to_numpy()
        return float(
            np.mean([v in known.get(u, set()) for u, v in zip(users, values, strict=True)])
        )

    late_streams = late["stream"].to_numpy()
    same_community = share(late_streams, early_communities, community)
    chance = share(_shuffled(late_streams), early_communities, community)
    assert same_community > 0.6 and same_community > 2.5 * chance
    assert share(late_streams, early_streams) > 0.25


def test_the_log_spans_weeks_with_busier_weekends(log: Log) -> None:
    rows = log.rows
    assert (rows["impression_at"].max() - rows["impression_at"].min()).days >= 28
    sessions = log.sessions
    offset = log.world.users["timezone_offset"].to_numpy()[sessions["user"]]
    local = sessions["impression_at"] + pd.to_timedelta(offset, unit="h")
    per_day = local.dt.floor("D").value_counts().sort_index().iloc[2:-2]  # whole days
    weekend = per_day.index.day_of_week >= 5
    assert per_day[weekend].mean() > 1.15 * per_day[~weekend].mean()


# --- habits --------------------------------------------------------------------------


def test_sessions_concentrate_on_the_habitual_device(log: Log) -> None:
    sessions = log.sessions
    device = sessions["device_type"].map(DEVICE_CODE).to_numpy()
    habitual = log.world.audience.device[sessions["user"].to_numpy()]
    assert np.mean(device == habitual) > 0.8
    assert np.mean(device == _shuffled(habitual)) < 0.5
    counts = sessions.groupby("user").size()
    modal = sessions.groupby("user")["device_type"].agg(lambda d: d.value_counts().index[0])
    regular = counts[counts >= 5].index
    assert np.mean(modal[regular].map(DEVICE_CODE) == log.world.audience.device[regular]) > 0.9


def test_streamers_audiences_have_dominant_devices(log: Log) -> None:
    positives = log.positives
    counts = positives.groupby("stream").size()
    watched = positives[positives["stream"].isin(counts[counts >= 20].index)]

    def spread(device: np.ndarray) -> float:
        mobile = pd.Series(device == "mobile").groupby(watched["stream"].to_numpy()).mean()
        return float(mobile.std())

    device = watched["device_type"].to_numpy()
    assert spread(device) > 1.5 * spread(_shuffled(device))


def test_sessions_start_near_the_users_peak_hour(log: Log) -> None:
    sessions = log.sessions
    user = sessions["user"].to_numpy()
    offset = log.world.users["timezone_offset"].to_numpy()[user]
    at = sessions["impression_at"]
    local_hour = (at.dt.hour + at.dt.minute / 60 + offset).to_numpy() % 24
    peak = log.world.audience.peak_hour
    near = np.mean(hour_gap(local_hour, peak[user]) <= 2)
    chance = np.mean(hour_gap(local_hour, peak[_shuffled(user)]) <= 2)
    assert near > 2 * chance


# --- clicks and watch time -------------------------------------------------------------


def test_click_rate_and_positives_at_the_default_feed_size() -> None:
    data = generate(10_000, 50_000, 500_000)
    clicks = positives = 0
    users: set[str] = set()
    for chunk in data.interactions:
        clicks += int(chunk["clicked"].sum())
        positive = chunk[chunk["watch_time_minutes"] > 0]
        positives += len(positive)
        users.update(positive["user_id"].unique())
    assert 0.12 <= clicks / 500_000 <= 0.20
    assert 60_000 <= positives <= 100_000
    assert 6 <= positives / 10_000 <= 10
    assert len(users) > 0.85 * 10_000


def test_affinity_and_favourites_raise_the_click_probability() -> None:
    base = {
        "distance_km": 800.0,
        "local_preference": 0.4,
        "quality": 2.0,
        "same_language": True,
        "category_match": False,
        "avg_viewers": 30.0,
        "page_position": 4,
    }
    none = click_probability(**base)
    taste = click_probability(**base, affinity=1.0)
    loyal = click_probability(**base, favourite=True)
    assert taste > 3 * none and loyal > 2 * none
    assert click_probability(**base, affinity=0.5) < taste


def test_clicks_still_fall_with_distance_and_favour_the_language(log: Log) -> None:
    rows = log.rows
    plain = rows[(rows["affinity"] == 0) & ~rows["favourite"]]  # no taste, no loyalty
    for frame in (rows, plain):
        bands = pd.cut(frame["distance_km"], [-1, 50, 500, np.inf], labels=["near", "mid", "far"])
        rate = frame.groupby(bands, observed=True)["clicked"].mean()
        assert rate["near"] > rate["mid"] > rate["far"]
        assert rate["near"] > 1.4 * rate["far"]
        by_language = frame.groupby("same_language")["clicked"].mean()
        assert by_language[True] > 1.5 * by_language[False]


def test_watch_time_is_graded_by_taste(log: Log) -> None:
    positives = log.positives
    minutes = positives["watch_time_minutes"]
    assert minutes.nunique() > 500 and minutes.quantile(0.75) > 4 * minutes.quantile(0.25)
    assert (minutes <= log.world.catalogue.duration[positives["stream"]]).all()
    bands = pd.cut(positives["affinity"], [-0.01, 0.0, 0.5, 1.0])
    median = positives.groupby(bands, observed=True)["watch_time_minutes"].median().to_numpy()
    assert np.all(np.diff(median) > 0) and median[-1] > 2 * median[0]


def test_pick_slot_never_picks_a_zero_weight_column() -> None:
    weights = np.array([[0.3, 0.4, 1 - 0.3 - 0.4, 0.0], [0.7, 0.3, 0.0, 0.0]])  # row 0: cumsum < 1
    rows = np.repeat([0, 1], 20_000)
    uniform = np.random.default_rng(2).random(len(rows))
    uniform[:2] = 1 - 1e-16  # at least the sum of row 0's weights
    slot = pick_slot(uniform, weights[rows])
    assert slot[rows == 0].max() == 2 and slot[rows == 1].max() == 1
    assert np.mean(slot[rows == 1] == 0) == pytest.approx(0.7, abs=0.01)

"""Training's features and serving's features are the same numbers for the same pairs.

Training computes every fact from the interaction log at once (ml/feed/history.py);
serving reads the feature tables that `refresh_features` aggregated in SQL,
through the feature store (app/feed/store.py). Both feed the one
`pair_features`; here both paths run on the same database and must agree, on a
cache miss (read from PostgreSQL) and on the hit that follows (decoded from the
cache).
"""

from __future__ import annotations

import asyncio

import asyncpg
import numpy as np

from app.feed import store as feature_store
from app.feed.cache import MemoryCache
from app.feed.features import FEATURE_NAMES, Context, pair_features
from app.feed.refresh import refresh_features
from app.feed.store import FeatureStore
from ml.feed import candidates, history
from ml.feed.data import from_database
from seed.generate import generate
from seed.loader import load

CREATOR_MINUTES = FEATURE_NAMES.index("log_creator_minutes")


def test_training_and_serving_build_the_same_features(db_url: str) -> None:
    load(db_url, generate(300, 400, 30_000, seed=4))
    data = from_database(db_url)
    log, tables = data.log, data.tables
    past = history.build(log, np.ones(len(log), dtype=bool), tables)
    catalogue = candidates.Catalogue.of(log, tables)
    rng = np.random.default_rng(0)
    watched = np.bincount(log.user[log.positive], minlength=log.n_users)
    users = [int(u) for u in np.flatnonzero(watched >= 3)[:8]] + [int(np.argmin(watched))]
    store = FeatureStore(MemoryCache())
    checked = 0
    creator_minutes = 0.0

    async def serving(user_id: str, ids: list[str], ranks: dict[str, dict[str, int]]):
        conn = await asyncpg.connect(db_url)
        try:
            out = []
            for _ in range(2):  # a miss, then a hit
                user = await store.user(conn, user_id, None)
                assert user is not None
                found = await store.streams(conn, ids)
                facts = feature_store.candidates(user, list(found.values()), ranks, {})
                out.append((user, facts))
            return out
        finally:
            await conn.close()

    async def refresh() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            await refresh_features(conn)
        finally:
            await conn.close()

    asyncio.run(refresh())  # the loader refreshed already; once more changes nothing
    for u in users:
        own = past.minutes[u].indices[:30]
        items = np.unique(np.concatenate([own, rng.choice(log.n_items, 40, replace=False)]))
        ids = [str(log.stream_ids[i]) for i in items]
        # Each source ranks a random part of the candidates.
        ranks_by_source = {}
        offline_ranks = {}
        for source in feature_store.SOURCES:
            chosen = rng.permutation(len(items))[: len(items) // 2]
            ranks_by_source[source] = {ids[c]: r for r, c in enumerate(chosen, start=1)}
            column = np.full(len(items), np.nan)
            column[chosen] = np.arange(1, len(chosen) + 1)
            offline_ranks[source] = column
        context = Context(hour_utc=float(rng.uniform(0, 24)), device="mobile", locale_language="en")

        offline_viewer = candidates.viewer_of(past, tables, u)
        offline = pair_features(
            offline_viewer,
            candidates.candidates_of(catalogue, past, u, items, offline_ranks, None),
            context,
        )
        for user, found in asyncio.run(serving(str(log.user_ids[u]), ids, ranks_by_source)):
            assert list(found.stream_id) == ids
            online = pair_features(user.viewer, found, context)
            for j, name in enumerate(FEATURE_NAMES):
                np.testing.assert_allclose(
                    online[:, j], offline[:, j], rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=name
                )
        checked += len(items)
        creator_minutes = max(creator_minutes, float(np.nanmax(offline[:, CREATOR_MINUTES])))
    assert checked > 300
    assert store.hits > 0 and store.misses > 0
    # The cases differ where they should: some creators watched, some devices known.
    assert np.nanmax(offline[:, FEATURE_NAMES.index("device_match")]) == 1.0
    assert creator_minutes > 0

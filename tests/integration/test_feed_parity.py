"""Training's features and serving's features are the same numbers for the same pairs.

Training computes every fact from the interaction log at once (ml/feed/history.py);
serving asks PostgreSQL for one viewer (app/feed/facts.py). Both feed the one
`pair_features`; here both paths run on the same database and must agree.
"""

from __future__ import annotations

import asyncio

import asyncpg
import numpy as np

from app.feed import facts
from app.feed.features import FEATURE_NAMES, Context, pair_features
from ml.feed import candidates, history
from ml.feed.data import from_database
from seed.generate import generate
from seed.loader import load


def test_training_and_serving_build_the_same_features(db_url: str) -> None:
    load(db_url, generate(300, 400, 30_000, seed=4))
    data = from_database(db_url)
    log, tables = data.log, data.tables
    past = history.build(log, np.ones(len(log), dtype=bool), tables)
    catalogue = candidates.Catalogue.of(log, tables)
    rng = np.random.default_rng(0)
    watched = np.bincount(log.user[log.positive], minlength=log.n_users)
    users = [int(u) for u in np.flatnonzero(watched >= 3)[:8]] + [int(np.argmin(watched))]
    checked = 0

    async def serving(user_id: str, ids: list[str], ranks: dict[str, dict[str, int]]):
        conn = await asyncpg.connect(db_url)
        try:
            return await facts.viewer(conn, user_id), await facts.candidates(
                conn, user_id, ids, ranks, {}
            )
        finally:
            await conn.close()

    for u in users:
        own = past.minutes[u].indices[:30]
        items = np.unique(np.concatenate([own, rng.choice(log.n_items, 40, replace=False)]))
        ids = [str(log.stream_ids[i]) for i in items]
        # Each source ranks a random part of the candidates.
        ranks_by_source = {}
        offline_ranks = {}
        for source in facts.SOURCE_COLUMNS:
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
        viewer, found = asyncio.run(serving(str(log.user_ids[u]), ids, ranks_by_source))
        assert viewer is not None
        assert list(found.stream_id) == ids
        online = pair_features(viewer, found, context)
        for j, name in enumerate(FEATURE_NAMES):
            np.testing.assert_allclose(
                online[:, j], offline[:, j], rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=name
            )
        checked += len(items)
    assert checked > 300
    # The cases differ where they should: some creators watched, some devices known.
    assert np.nanmax(offline[:, FEATURE_NAMES.index("device_match")]) == 1.0

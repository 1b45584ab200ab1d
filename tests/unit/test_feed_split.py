"""The home feed's split in time: per user, fit < tune < test, nothing held out reaches history."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.feed import history
from ml.feed.data import Log
from ml.feed.split import split, warm_users


def make_log(rows: list[tuple[int, int, int, float]], n_users: int, n_items: int) -> Log:
    user, item, at, minutes = (np.array(c) for c in zip(*rows, strict=True))
    return Log(
        user_ids=pd.Index([f"user_{i}" for i in range(n_users)]),
        stream_ids=pd.Index([f"stream_{i:02d}" for i in range(n_items)]),
        user=user.astype(np.int64),
        item=item.astype(np.int64),
        at_us=at.astype(np.int64),
        minutes=minutes.astype(np.float64),
        device=np.zeros(len(user), dtype=np.int64),
        source="test",
    )


def random_log(seed: int, n_users: int = 300, n_items: int = 50, rows: int = 6000) -> Log:
    rng = np.random.default_rng(seed)
    data = list(
        zip(
            rng.integers(0, n_users, rows).tolist(),
            rng.integers(0, n_items, rows).tolist(),
            rng.integers(0, 10**9, rows).tolist(),
            np.where(rng.random(rows) < 0.3, rng.exponential(10, rows), 0.0).tolist(),
            strict=True,
        )
    )
    return make_log(data, n_users, n_items)


def test_each_users_latest_fifth_is_held_out_and_the_slices_never_overlap() -> None:
    log = random_log(1)
    cut = split(log, test_ratio=0.2, tune_ratio=0.2)
    assert (cut.fit.astype(int) + cut.tune + cut.test == 1).all()
    for u in range(log.n_users):
        mine = log.user == u
        n = int(mine.sum())
        if n == 0:
            continue
        n_test = min(int(np.floor(n * 0.2 + 0.5)), n - 1)
        assert int((cut.test & mine).sum()) == n_test
        rest = n - n_test
        assert int((cut.tune & mine).sum()) == min(int(np.floor(rest * 0.2 + 0.5)), rest - 1)
        # In time: every fit row precedes every tune row, which precedes every test row.
        at = log.at_us
        if (cut.test & mine).any():
            assert at[cut.history & mine].max() <= at[cut.test & mine].min()
        if (cut.tune & mine).any():
            assert at[cut.fit & mine].max() <= at[cut.tune & mine].min()


def test_a_user_with_one_interaction_keeps_it_for_training() -> None:
    rows = [(0, 0, 10, 1.0), (1, 1, 5, 2.0), (1, 2, 7, 3.0), (2, 0, 1, 1.0), (2, 1, 3, 0.0)]
    log = make_log([*rows, (2, 2, 2, 4.0)], 3, 3)
    cut = split(log)
    # One row, or two (0.2 * 2 rounds to 0): nothing held out. Three: the latest one.
    assert cut.test.tolist() == [False, False, False, False, True, False]
    assert warm_users(log, cut.history, min_history=2).tolist() == [False, True, True]


def test_ties_in_time_are_cut_by_log_order_deterministically() -> None:
    log = make_log([(0, i, 100, 1.0) for i in range(10)], 1, 10)
    first, again = split(log), split(log)
    assert first.test.tolist() == again.test.tolist()
    assert first.test.tolist() == [False] * 8 + [True] * 2


def test_history_from_the_fit_slice_holds_no_trace_of_the_held_out_rows() -> None:
    log = random_log(2)
    cut = split(log)
    seen = history.build(log, cut.fit, None)
    # Change everything outside the fit slice: the fit slice's history must not move.
    changed = Log(
        **{
            **log.__dict__,
            "minutes": np.where(cut.fit, log.minutes, 999.0),
            "item": np.where(cut.fit, log.item, 0),
        }
    )
    again = history.build(changed, cut.fit, None)
    for name in ("minutes", "watches", "creator_minutes"):
        assert (getattr(seen, name) != getattr(again, name)).nnz == 0
    for name in ("popularity", "recent", "user_hours", "stream_hours"):
        np.testing.assert_array_equal(getattr(seen, name), getattr(again, name))
    # And the history counts exactly the watched fit rows.
    watched = cut.fit & log.positive
    assert seen.watches.sum() == watched.sum()
    assert seen.minutes.sum() == pytest.approx(log.minutes[watched].sum())


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1])
def test_ratios_outside_zero_one_are_refused(ratio: float) -> None:
    with pytest.raises(ValueError, match="test_ratio"):
        split(random_log(3), test_ratio=ratio)

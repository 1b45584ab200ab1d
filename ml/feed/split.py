"""The home feed's split in time, per user: fit, tune, test.

Each user's interactions are ordered by time (ties by their order in the log)
and cut twice:

- **test**: the user's latest `test_ratio` (default 20%) of interactions. Nothing
  from it reaches a model, a feature or a popularity count; it is only ever
  compared with what the models propose.
- **tune**: the latest `tune_ratio` (default 20%) of what is left. LightGCN stops
  early on it, and the reranker learns from it: its candidates and features are
  built from the fit slice alone, and its labels are the tune slice's watch
  time, exactly as the test is later built from fit + tune and labelled by test.
- **fit**: the rest. The collaborative models and popularity are fitted on it.

The counts are rounded half up and a user always keeps at least one row before
the cut, so a user with one interaction has no test row at all. Users with fewer
than `min_history` watched interactions before a cut are *cold-start* for that
cut: they are evaluated apart, because a collaborative model cannot know them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ml.feed.data import Log

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

#: Watched interactions a user needs before a cut to count as warm.
MIN_HISTORY = 3


@dataclass(frozen=True)
class Split:
    """Row masks over the log (each row in exactly one) and the ratios used."""

    fit: BoolArray
    tune: BoolArray
    test: BoolArray
    test_ratio: float
    tune_ratio: float

    @property
    def history(self) -> BoolArray:
        """What precedes the test: fit and tune."""
        return self.fit | self.tune


def _held_out(n: IntArray, ratio: float) -> IntArray:
    """Rows to cut from groups of n: round half up, never all of a group."""
    cut = np.floor(n * ratio + 0.5).astype(np.int64)
    return np.asarray(np.minimum(cut, np.maximum(n - 1, 0)), dtype=np.int64)


def _latest(user: IntArray, at_us: IntArray, eligible: BoolArray, ratio: float) -> BoolArray:
    """Mark each user's latest `ratio` of the eligible rows."""
    rows = np.flatnonzero(eligible)
    order = rows[np.lexsort((rows, at_us[rows], user[rows]))]  # by user, time, row
    users = user[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, len(order)])
    position = np.arange(len(order)) - np.repeat(starts, counts)
    from_end = np.repeat(counts, counts) - position  # 1 = the user's latest row
    marked = np.zeros(len(user), dtype=bool)
    marked[order] = from_end <= np.repeat(_held_out(counts, ratio), counts)
    return marked


def split(log: Log, test_ratio: float = 0.2, tune_ratio: float = 0.2) -> Split:
    """Cut every user's interactions into fit, tune and test by time."""
    for name, ratio in (("test_ratio", test_ratio), ("tune_ratio", tune_ratio)):
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"{name} must be between 0 and 1 (exclusive), got {ratio}")
    everything = np.ones(len(log), dtype=bool)
    test = _latest(log.user, log.at_us, everything, test_ratio)
    tune = _latest(log.user, log.at_us, ~test, tune_ratio)
    return Split(
        fit=~test & ~tune, tune=tune, test=test, test_ratio=test_ratio, tune_ratio=tune_ratio
    )


def warm_users(log: Log, before: BoolArray, min_history: int = MIN_HISTORY) -> BoolArray:
    """Per user: whether the rows in `before` hold at least `min_history` watched ones."""
    watched = np.bincount(log.user[before & log.positive], minlength=log.n_users)
    return np.asarray(watched >= min_history)

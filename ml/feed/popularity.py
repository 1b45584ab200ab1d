"""Popularity: the last-resort stage-1 model, and the floor every other model must beat.

An item's score is the number of distinct users with a positive for it in the training
matrix. Counting users rather than summing interaction values keeps one heavy viewer
from making a channel look popular, and matches what a new user can expect: how many
people like them watched it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def popularity_scores(train: sp.csr_matrix | sp.csr_array) -> np.ndarray:
    """Distinct users with a positive (a stored value above 0) per item.

    Ties are not broken here: equal counts stay equal, and the ranking functions of
    `ml.feed.retrieval` (`top_k_scores`) order them by ascending item index, so the
    popularity ranking is deterministic.

    Args:
        train: users × items matrix; entries above 0 are positives, their values are
            ignored, and duplicate entries of one (user, item) pair count once.

    Returns:
        float64 array (n_items,) of user counts.
    """
    positives = sp.csr_matrix(train > 0)  # canonical: sums duplicates, drops zeros
    counts = np.bincount(positives.indices, minlength=positives.shape[1])
    return counts.astype(np.float64)

"""Which users are held out: a stable hash of the user id, the same in every run.

The split is by user, never by impression: a user's clicks share a hidden
propensity (the generator's `user_bias`), so impressions of one user on both
sides would let the model score its own training data. Training and the later
ranking evaluation both call `is_test_user`, so they hold out the same users
without passing a list around. Python's `hash()` is salted per process and
would give a different split each run; blake2b is not.

The hash maps each user to a fixed number u in [0, 1) and a user is held out
when u < test_share, so growing the share only adds users to the test side.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt
import pandas as pd

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

#: Part of the hash key: changing it would reshuffle every user.
_PERSON = b"hometown-split"


def user_fraction(user_id: str) -> float:
    """The user's fixed position in [0, 1): the first 8 bytes of blake2b(user_id)."""
    digest = hashlib.blake2b(str(user_id).encode(), digest_size=8, person=_PERSON).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def is_test_user(user_ids: npt.ArrayLike, test_share: float = 0.2) -> BoolArray:
    """True for the rows whose user is held out for testing.

    Args:
        user_ids: one user id per row; repeats are hashed once.
        test_share: the expected share of users held out, 0..1.

    Returns:
        A boolean array with one entry per row of `user_ids`.
    """
    if not 0.0 <= test_share <= 1.0:
        raise ValueError(f"test_share must be between 0 and 1, got {test_share}")
    fractions = _fractions(user_ids)
    held_out: BoolArray = fractions < test_share
    return held_out


def is_validation_user(
    user_ids: npt.ArrayLike, test_share: float = 0.2, validation_share: float = 0.0
) -> BoolArray:
    """True for the rows whose user is set aside to tune choices made after fitting.

    The slice of the hash just above the test users': `test_share <= u <
    test_share + validation_share`. The click model is fitted without them and
    the ML term (ml/term.py) is chosen on them, so the test users judge a model
    and a term that neither saw.
    """
    if not 0.0 <= validation_share <= 1.0 - test_share:
        raise ValueError(
            f"validation_share must be between 0 and 1 - test_share, got {validation_share}"
        )
    fractions = _fractions(user_ids)
    chosen: BoolArray = (fractions >= test_share) & (fractions < test_share + validation_share)
    return chosen


def _fractions(user_ids: npt.ArrayLike) -> FloatArray:
    """`user_fraction` of every row's user, each distinct user hashed once."""
    ids = np.asarray(user_ids, dtype=object).ravel()
    codes, uniques = pd.factorize(ids)
    if (codes < 0).any():
        raise ValueError("user_ids must not contain missing values")
    fractions = np.fromiter((user_fraction(u) for u in uniques), np.float64, count=len(uniques))
    return fractions[codes]

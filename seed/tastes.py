"""Latent tastes: taste communities, favourite channels, and device and hour habits.

None of this is stored in the users or streams tables (like the click propensity
`bias`): it lives in `seed.behaviour.Audience` and `Catalogue` only, and shapes who
is shown what and who watches what. It is what gives collaborative filtering
something to learn beyond distance, language and the 20 categories.

- **Communities** (`N_COMMUNITIES`): each has a size, a category profile (a tilt
  towards one category but spread over several, so a community is not a category)
  and a device profile.
- **Streams** belong mainly to one community, drawn given their category; some also
  to a second, weaker one.
- **Users** have weights over 1-3 communities (Dirichlet), drawn with a pull towards
  the communities whose profile covers their preferred categories.
- **Favourite channels**: a few per user, drawn once from their communities and their
  place by popularity, plus a per-user loyalty share with a heavy tail.
- **Habits**: a habitual device (from the main community's device profile) and a
  personal peak hour in local time, each with a per-user strength.

Everything is drawn with whole-array numpy operations; users are processed in blocks
only to bound the (users x communities) scratch matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seed.cities import FloatArray, IntArray

N_COMMUNITIES = 32
MAX_USER_COMMUNITIES = 3
USER_COMMUNITY_COUNT_P = (0.35, 0.40, 0.25)  # users with 1, 2 and 3 communities
USER_COMMUNITY_CONCENTRATION = 1.5  # Dirichlet parameter of the user's weights
# P(community | user) is proportional to size x (PREFERENCE_BASE + the community's
# share of the user's preferred categories): tastes lean on declared categories.
PREFERENCE_BASE = 0.1
# A community's category profile: this much on its tilt category, TILT_SPREAD over
# three other categories, the rest spread like the categories' popularity.
CATEGORY_TILT = 0.5
TILT_SPREAD = 0.3
COMMUNITY_SIZE_SIGMA = 0.6  # sizes are lognormal
DEVICE_CONCENTRATION = 4.0  # device profiles: Dirichlet(4 x the global device shares)
SECOND_COMMUNITY_SHARE = 0.4  # streams that also belong to a second community
SECOND_COMMUNITY_WEIGHT = 0.3  # its membership weight (the main one gets 0.7)

MAX_FAVOURITES = 8
FAVOURITES_POISSON = 2.0  # 1 + Poisson(2) favourite channels, at most 8
FAVOURITE_FROM_COMMUNITY = 0.65  # the rest come from the user's own place
LOYALTY_BETA = (0.5, 3.0)  # share of front-page slots given to favourites: mean 14%
DEVICE_HABIT_BETA = (8.0, 2.0)  # share of sessions on the habitual device: mean 0.8
HOUR_HABIT_BETA = (3.0, 2.0)  # share of sessions started around the peak hour: mean 0.6
HOUR_SPREAD_HOURS = (1.0, 2.5)  # sd of the start hour around the peak, uniform in this

_BLOCK = 100_000  # users per block of the (users x communities) scratch matrices


@dataclass(frozen=True)
class Communities:
    """The taste communities, one row per community."""

    size: FloatArray  # relative size (how many users and streams lean on it)
    category_profile: FloatArray  # (K, categories): P(category | community); rows sum to 1
    device_profile: FloatArray  # (K, devices): habitual device of the community's users

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        category_weights: FloatArray,
        device_shares: FloatArray,
        n: int = N_COMMUNITIES,
    ) -> Communities:
        """Draw `n` communities: sizes, category tilts (by category popularity), devices."""
        n_categories = len(category_weights)
        popularity = category_weights / category_weights.sum()
        size = np.exp(COMMUNITY_SIZE_SIGMA * rng.standard_normal(n))
        tilt = rng.choice(n_categories, size=n, p=popularity)
        # Three other categories per community, uniformly, plus Dirichlet shares of them.
        others = np.argsort(rng.random((n, n_categories)), axis=1)[:, :4]
        others = np.where(others == tilt[:, None], others[:, 3:4], others)[:, :3]
        spread = rng.dirichlet(np.ones(3), size=n)
        profile = np.tile((1.0 - CATEGORY_TILT - TILT_SPREAD) * popularity, (n, 1))
        rows = np.arange(n)
        profile[rows, tilt] += CATEGORY_TILT
        np.add.at(profile, (np.repeat(rows, 3), others.ravel()), TILT_SPREAD * spread.ravel())
        devices = rng.dirichlet(DEVICE_CONCENTRATION * device_shares, size=n)
        return cls(size=size / size.sum(), category_profile=profile, device_profile=devices)

    @property
    def n(self) -> int:
        """Number of communities."""
        return len(self.size)


def categorical_rows(rng: np.random.Generator, cdf: FloatArray, row: IntArray) -> IntArray:
    """One draw per entry of `row` from the distribution `cdf[row]` (rows of a CDF matrix).

    Row r's CDF is shifted by r so all rows live in one increasing array: a single
    `searchsorted` draws for every entry at once.
    """
    n_rows, width = cdf.shape
    flat = (cdf / cdf[:, -1:] + np.arange(n_rows)[:, None]).ravel()
    target = row + rng.random(len(row)) * (1.0 - 1e-12)
    picked = np.searchsorted(flat, target, side="right") - row * width
    return np.asarray(np.minimum(picked, width - 1), dtype=np.int64)


def stream_communities(
    rng: np.random.Generator, communities: Communities, category: IntArray
) -> tuple[IntArray, IntArray, FloatArray]:
    """Each stream's main community (given its category), optional second one, its weight.

    P(community | category) is proportional to size x P(category | community). The
    second community (for `SECOND_COMMUNITY_SHARE` of streams) is drawn the same way
    and gets weight `SECOND_COMMUNITY_WEIGHT`; the others get -1 and 0.
    """
    joint = communities.size[None, :] * communities.category_profile.T  # (categories, K)
    cdf = np.cumsum(joint, axis=1)
    main = categorical_rows(rng, cdf, category)
    second = categorical_rows(rng, cdf, category)
    has_second = (rng.random(len(category)) < SECOND_COMMUNITY_SHARE) & (second != main)
    return (
        main,
        np.where(has_second, second, -1).astype(np.int64),
        np.where(has_second, SECOND_COMMUNITY_WEIGHT, 0.0),
    )


def user_communities(
    rng: np.random.Generator, communities: Communities, category_mask: IntArray
) -> tuple[IntArray, FloatArray]:
    """Each user's 1-3 communities (-1 where unused) and Dirichlet weights, largest first.

    Communities are drawn without replacement with weight size x (PREFERENCE_BASE +
    sum of P(category | community) over the user's preferred categories), by the
    Gumbel top-k trick: the k largest of log(weight) + Gumbel noise.
    """
    n = len(category_mask)
    k_max = MAX_USER_COMMUNITIES
    count = rng.choice(np.arange(1, k_max + 1), size=n, p=USER_COMMUNITY_COUNT_P)
    bits = np.arange(communities.category_profile.shape[1])
    chosen = np.empty((n, k_max), dtype=np.int64)
    for first in range(0, n, _BLOCK):  # blocks of users, to bound the n x K scratch
        mask = category_mask[first : first + _BLOCK]
        preferred = ((mask[:, None] >> bits) & 1).astype(np.float64)
        weight = communities.size * (PREFERENCE_BASE + preferred @ communities.category_profile.T)
        keys = np.log(weight) + rng.gumbel(size=weight.shape)
        top = np.argpartition(-keys, k_max - 1, axis=1)[:, :k_max]  # the k largest keys...
        order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1)  # ...largest first
        chosen[first : first + _BLOCK] = np.take_along_axis(top, order, axis=1)
    raw = rng.gamma(USER_COMMUNITY_CONCENTRATION, size=(n, k_max))
    used = np.arange(k_max) < count[:, None]
    raw = np.where(used, raw, 0.0)
    raw = -np.sort(-raw, axis=1)  # largest weight first: slot 0 is the main community
    weights = raw / raw.sum(axis=1, keepdims=True)
    return np.where(used, chosen, -1), weights


def affinity(
    user_community: IntArray,
    user_weight: FloatArray,
    main: IntArray,
    second: IntArray,
    second_weight: FloatArray,
) -> FloatArray:
    """a(u, s) = the user's community weights . the stream's membership, row by row, in 0..1.

    Args:
        user_community: (rows, 3) the user's communities, -1 where unused.
        user_weight: (rows, 3) their weights (sum 1).
        main: (rows,) the stream's main community (membership 1 - second_weight).
        second: (rows,) its second community, -1 if none.
        second_weight: (rows,) the second membership weight.
    """
    on_main = (user_weight * (user_community == main[:, None])).sum(axis=1)
    on_second = (user_weight * (user_community == second[:, None])).sum(axis=1)
    return np.asarray(on_main * (1.0 - second_weight) + on_second * second_weight)


def habitual_devices(
    rng: np.random.Generator, communities: Communities, main_community: IntArray
) -> tuple[IntArray, FloatArray]:
    """Each user's habitual device (from their main community's profile) and its strength."""
    cdf = np.cumsum(communities.device_profile, axis=1)
    device = categorical_rows(rng, cdf, main_community)
    return device, rng.beta(*DEVICE_HABIT_BETA, size=len(main_community))


def peak_hours(
    rng: np.random.Generator, diurnal_p: FloatArray, n: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Each user's peak local hour (from the diurnal curve), habit strength and spread (h)."""
    peak = rng.choice(len(diurnal_p), size=n, p=diurnal_p) + rng.random(n)
    strength = rng.beta(*HOUR_HABIT_BETA, size=n)
    spread = rng.uniform(*HOUR_SPREAD_HOURS, size=n)
    return peak, strength, spread


def pick_slot(uniform: FloatArray, weights: FloatArray) -> IntArray:
    """Column index per row, drawn with probability proportional to `weights[row]`.

    The CDF is normalised so its last used entry is exactly 1: a column of weight 0
    after it is never picked, whatever the rounding of the weights' sum.
    """
    cdf = np.cumsum(weights, axis=1)
    cdf = cdf / cdf[:, -1:]
    slot = (uniform[:, None] >= cdf).sum(axis=1)
    return np.asarray(np.minimum(slot, weights.shape[1] - 1), dtype=np.int64)


def favourite_counts(rng: np.random.Generator, n: int) -> IntArray:
    """1 + Poisson(2) favourite channels per user, at most `MAX_FAVOURITES`."""
    return np.minimum(1 + rng.poisson(FAVOURITES_POISSON, size=n), MAX_FAVOURITES).astype(np.int64)


def loyalty_shares(rng: np.random.Generator, n: int) -> FloatArray:
    """Share of a user's front-page slots that are their favourites: Beta(0.5, 3).

    Mean 14%, median 8%; a quarter of users under 2%, and 5% are "regulars" above
    50% who mostly come back to the same few channels.
    """
    return np.asarray(rng.beta(*LOYALTY_BETA, size=n), dtype=np.float64)

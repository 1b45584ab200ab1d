"""Where synthetic users and streamers live: 32 world cities, some remote towns, geo maths.

The cities carry two different popularity weights because audiences and creators
are not spread alike (Los Angeles and Seoul host more streamers than their share
of viewers). The remote towns are the "sparse places": few users, fewer streams,
far from everything, so the recommender's behaviour where the radius is almost
empty can be tested. Several of them sit on awkward spots on purpose: Longyearbyen
at 78°N (a degree of longitude is only 23 km there), Waitangi and Apia just east
of the antimeridian, Suva just west of it.

Offsets are standard time (no daylight saving), in hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from app.geo import EARTH_RADIUS_KM

KM_PER_DEGREE = np.pi * EARTH_RADIUS_KM / 180.0  # along a meridian: about 111.2 km

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Place(NamedTuple):
    """One city or town: identity, position, and how many users/streamers it draws."""

    name: str
    country: str  # ISO 3166-1 alpha-2
    language: str  # ISO 639-1, the main language of the place
    region: str
    latitude: float
    longitude: float
    utc_offset: float  # standard time, hours
    user_weight: float
    streamer_weight: float
    radius_km: float  # metro radius: most people live within it


# fmt: off
CITIES: tuple[Place, ...] = (
    Place("New York", "US", "en", "north_america", 40.7128, -74.0060, -5, 6.0, 5.0, 50),
    Place("Los Angeles", "US", "en", "north_america", 34.0522, -118.2437, -8, 5.0, 8.0, 60),
    Place("Chicago", "US", "en", "north_america", 41.8781, -87.6298, -6, 3.0, 2.0, 45),
    Place("Toronto", "CA", "en", "north_america", 43.6532, -79.3832, -5, 3.0, 3.0, 40),
    Place("Mexico City", "MX", "es", "latin_america", 19.4326, -99.1332, -6, 5.0, 3.0, 45),
    Place("Bogotá", "CO", "es", "latin_america", 4.7110, -74.0721, -5, 2.5, 1.5, 30),
    Place("São Paulo", "BR", "pt", "latin_america", -23.5505, -46.6333, -3, 6.0, 6.0, 50),
    Place("Rio de Janeiro", "BR", "pt", "latin_america", -22.9068, -43.1729, -3, 3.5, 2.0, 40),
    Place("Buenos Aires", "AR", "es", "latin_america", -34.6037, -58.3816, -3, 3.5, 3.0, 45),
    Place("London", "GB", "en", "europe", 51.5074, -0.1278, 0, 5.0, 5.0, 45),
    Place("Paris", "FR", "fr", "europe", 48.8566, 2.3522, 1, 4.5, 4.0, 40),
    Place("Berlin", "DE", "de", "europe", 52.5200, 13.4050, 1, 3.5, 3.5, 35),
    Place("Madrid", "ES", "es", "europe", 40.4168, -3.7038, 1, 3.0, 3.5, 35),
    Place("Rome", "IT", "it", "europe", 41.9028, 12.4964, 1, 2.5, 1.5, 30),
    Place("Amsterdam", "NL", "nl", "europe", 52.3676, 4.9041, 1, 1.5, 2.0, 25),
    Place("Stockholm", "SE", "sv", "europe", 59.3293, 18.0686, 1, 1.2, 2.0, 30),
    Place("Warsaw", "PL", "pl", "europe", 52.2297, 21.0122, 1, 2.0, 2.5, 30),
    Place("Istanbul", "TR", "tr", "europe", 41.0082, 28.9784, 3, 4.0, 2.5, 50),
    Place("Moscow", "RU", "ru", "europe", 55.7558, 37.6173, 3, 4.5, 3.5, 45),
    Place("Cairo", "EG", "ar", "africa_middle_east", 30.0444, 31.2357, 2, 3.0, 1.0, 40),
    Place("Dubai", "AE", "ar", "africa_middle_east", 25.2048, 55.2708, 4, 1.5, 1.5, 35),
    Place("Lagos", "NG", "en", "africa_middle_east", 6.5244, 3.3792, 1, 2.5, 1.0, 40),
    Place("Johannesburg", "ZA", "en", "africa_middle_east", -26.2041, 28.0473, 2, 2.0, 1.0, 45),
    Place("Mumbai", "IN", "hi", "asia", 19.0760, 72.8777, 5.5, 5.0, 2.0, 40),
    Place("Bangkok", "TH", "th", "asia", 13.7563, 100.5018, 7, 3.0, 1.5, 40),
    Place("Jakarta", "ID", "id", "asia", -6.2088, 106.8456, 7, 4.0, 2.0, 45),
    Place("Singapore", "SG", "en", "asia", 1.3521, 103.8198, 8, 1.5, 1.5, 20),
    Place("Seoul", "KR", "ko", "asia", 37.5665, 126.9780, 9, 4.5, 6.0, 40),
    Place("Tokyo", "JP", "ja", "asia", 35.6762, 139.6503, 9, 6.0, 5.0, 60),
    Place("Sydney", "AU", "en", "oceania", -33.8688, 151.2093, 10, 2.5, 2.0, 50),
    Place("Melbourne", "AU", "en", "oceania", -37.8136, 144.9631, 10, 2.0, 1.5, 45),
    Place("Auckland", "NZ", "en", "oceania", -36.8485, 174.7633, 12, 1.0, 0.8, 30),
)

SPARSE_TOWNS: tuple[Place, ...] = (
    Place("Longyearbyen", "NO", "no", "europe", 78.2232, 15.6267, 1, 1.0, 1.0, 8),
    Place("Tromsø", "NO", "no", "europe", 69.6492, 18.9553, 1, 1.0, 1.0, 10),
    Place("Kiruna", "SE", "sv", "europe", 67.8558, 20.2253, 1, 1.0, 1.0, 10),
    Place("Nuuk", "GL", "da", "north_america", 64.1814, -51.6941, -2, 1.0, 1.0, 8),
    Place("Yellowknife", "CA", "en", "north_america", 62.4540, -114.3718, -7, 1.0, 1.0, 10),
    Place("Fairbanks", "US", "en", "north_america", 64.8378, -147.7164, -9, 1.0, 1.0, 12),
    Place("Hilo", "US", "en", "north_america", 19.7241, -155.0868, -10, 1.0, 1.0, 12),
    Place("Iquitos", "PE", "es", "latin_america", -3.7437, -73.2516, -5, 1.0, 1.0, 10),
    Place("Ushuaia", "AR", "es", "latin_america", -54.8019, -68.3030, -3, 1.0, 1.0, 8),
    Place("Punta Arenas", "CL", "es", "latin_america", -53.1638, -70.9171, -3, 1.0, 1.0, 10),
    Place("Timbuktu", "ML", "fr", "africa_middle_east", 16.7666, -3.0026, 0, 1.0, 1.0, 8),
    Place("Ouarzazate", "MA", "ar", "africa_middle_east", 30.9189, -6.8934, 1, 1.0, 1.0, 10),
    Place("Swakopmund", "NA", "en", "africa_middle_east", -22.6784, 14.5266, 2, 1.0, 1.0, 10),
    Place("Leh", "IN", "hi", "asia", 34.1526, 77.5771, 5.5, 1.0, 1.0, 8),
    Place("Yakutsk", "RU", "ru", "asia", 62.0355, 129.6755, 9, 1.0, 1.0, 12),
    Place("Darwin", "AU", "en", "oceania", -12.4634, 130.8456, 9.5, 1.0, 1.0, 15),
    Place("Alice Springs", "AU", "en", "oceania", -23.6980, 133.8807, 9.5, 1.0, 1.0, 10),
    Place("Queenstown", "NZ", "en", "oceania", -45.0312, 168.6626, 12, 1.0, 1.0, 10),
    Place("Suva", "FJ", "en", "oceania", -18.1416, 178.4419, 12, 1.0, 1.0, 10),
    Place("Waitangi", "NZ", "en", "oceania", -43.9535, -176.5597, 12.75, 1.0, 1.0, 8),
    Place("Apia", "WS", "en", "oceania", -13.8333, -171.7500, 13, 1.0, 1.0, 10),
)
# fmt: on


@dataclass(frozen=True)
class PlaceTable:
    """The places as parallel numpy arrays, so per-row lookups are one fancy index.

    Rows `0 .. n_cities-1` are the world cities, the rest the sparse towns.
    Languages and regions are integer codes into `languages` / `regions`.
    """

    names: tuple[str, ...]
    countries: tuple[str, ...]
    languages: tuple[str, ...]
    regions: tuple[str, ...]
    language: IntArray
    region: IntArray
    latitude: FloatArray
    longitude: FloatArray
    utc_offset: FloatArray
    user_weight: FloatArray
    streamer_weight: FloatArray
    radius_km: FloatArray
    n_cities: int

    @classmethod
    def build(cls, cities: tuple[Place, ...], towns: tuple[Place, ...]) -> PlaceTable:
        """Index the places; English is always language code 0 (the lingua franca)."""
        places = cities + towns
        languages = tuple(dict.fromkeys(("en", *(p.language for p in places))))
        regions = tuple(dict.fromkeys(p.region for p in places))

        def column(values: list[float]) -> FloatArray:
            return np.asarray(values, dtype=np.float64)

        return cls(
            names=tuple(p.name for p in places),
            countries=tuple(p.country for p in places),
            languages=languages,
            regions=regions,
            language=np.asarray([languages.index(p.language) for p in places], dtype=np.int64),
            region=np.asarray([regions.index(p.region) for p in places], dtype=np.int64),
            latitude=column([p.latitude for p in places]),
            longitude=column([p.longitude for p in places]),
            utc_offset=column([p.utc_offset for p in places]),
            user_weight=column([p.user_weight for p in places]),
            streamer_weight=column([p.streamer_weight for p in places]),
            radius_km=column([p.radius_km for p in places]),
            n_cities=len(cities),
        )

    @property
    def size(self) -> int:
        """Number of places, cities and towns together."""
        return len(self.names)


PLACES = PlaceTable.build(CITIES, SPARSE_TOWNS)
ENGLISH = 0  # language code of "en" in every PlaceTable


def choose_places(
    rng: np.random.Generator, n: int, weights: FloatArray, n_cities: int, sparse_share: float
) -> IntArray:
    """Draw a place per person: a city by `weights`, or a uniform town with `sparse_share`."""
    city_p = weights[:n_cities] / weights[:n_cities].sum()
    cities = rng.choice(n_cities, size=n, p=city_p)
    n_towns = len(weights) - n_cities
    if n_towns == 0:
        return cities.astype(np.int64)
    towns = n_cities + rng.integers(0, n_towns, size=n)
    return np.where(rng.random(n) < sparse_share, towns, cities).astype(np.int64)


def scatter(
    rng: np.random.Generator, latitude: FloatArray, longitude: FloatArray, sigma_km: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Move each centre by a 2-D normal offset of `sigma_km` per axis, in kilometres.

    The east offset is divided by cos(latitude) because meridians converge: 10 km
    east is 0.09° in Singapore but 0.45° in Longyearbyen. Longitudes are wrapped
    into [-180, 180) (Suva's neighbours may cross the antimeridian), latitudes
    clipped to the poles.
    """
    north_km = rng.normal(0.0, 1.0, size=latitude.shape) * sigma_km
    east_km = rng.normal(0.0, 1.0, size=latitude.shape) * sigma_km
    cos_lat = np.maximum(np.cos(np.radians(latitude)), 0.01)
    lat = np.clip(latitude + north_km / KM_PER_DEGREE, -90.0, 90.0)
    lon = longitude + east_km / (KM_PER_DEGREE * cos_lat)
    lon = (lon + 180.0) % 360.0 - 180.0
    return lat, lon

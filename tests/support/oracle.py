"""An independent brute-force oracle for `POST /v1/scenarios/hometown`.

It is written from the contract alone and never imports the service's ranking code:
every live stream is scored with numpy, the rings are filled by their definition, and
`check()` compares a response with the result, naming every difference.

Why a verifier and not just "expected list == got list": the service measures distances
in PostGIS and the oracle in numpy, so the two agree only to the last few bits. The
check stays strict where the order is decided by a real score difference and relaxes
only where last-bit noise could flip it:

* a may precede b when the oracle scores a higher, or when the two scores are within
  `SCORE_TOL` and a's id sorts first (a tie, broken by stream_id). So two streams whose
  scores differ by less than the tolerance may come in either order only when score and
  id disagree; when they agree, or when the scores differ by more, the order is fixed.
* a ring's selection is checked the same way: every stream it returns must be allowed
  to precede every stream of the ring it left out.
* ring membership cannot be relaxed like that, so `Expectation.boundary_ids` lists the
  candidates within `DISTANCE_TOL_KM` of an inner ring boundary; tests refuse (or skip)
  requests that have any. The outer edge, half the circumference, is no boundary: a
  stream measured a hair beyond it (an antipode) still belongs to the last ring.

When no scores are near-equal the check is plain equality of the id lists.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: PostGIS's sphere (`ST_Distance(a, b, false)`, `<->` on geography): the WGS84 mean
#: radius (2a + b) / 3, in metres.
EARTH_RADIUS_M = 6371008.771415
#: Half the sphere's circumference: no two points are farther apart.
HALF_CIRCUMFERENCE_KM = math.pi * EARTH_RADIUS_M / 1000.0
SCORE_TOL = 1e-9
DISTANCE_TOL_KM = 1e-6

DEFAULT_MAX_RESULTS = 20
DEFAULT_RADIUS_KM = 250.0
DEFAULT_LOCAL_PREFERENCE = 0.5

#: Columns the oracle reads; plain `SELECT`s of these build its frames.
USER_FIELDS = (
    "user_id",
    "latitude",
    "longitude",
    "language",
    "preferred_categories",
    "local_preference_strength",
)
STREAM_FIELDS = (
    "stream_id",
    "latitude",
    "longitude",
    "is_live",
    "mature_content",
    "language",
    "category_id",
    "stream_quality_score",
    "avg_viewer_count",
    "city",
    "title",
    "current_viewer_count",
)
#: Fields of each returned stream that are copied verbatim from the streams table.
COPIED_FIELDS = ("city", "title", "language", "category_id", "current_viewer_count")
COMPONENTS = ("proximity", "quality", "language", "category", "popularity", "base", "ml")


@dataclass(frozen=True)
class Weights:
    """The contract's default weights, written down here on purpose (not imported)."""

    proximity_weight: float = 1.5
    base_weight: float = 1.0
    ml_weight: float = 0.5
    quality_weight: float = 1.0
    language_bonus: float = 1.0
    category_bonus: float = 0.5
    popularity_divisor: float = 1000.0
    popularity_cap: float = 2.0


class UnknownUser(LookupError):
    """The request names a user_id that is not in the users table (the API says 404)."""


@dataclass(frozen=True)
class Viewer:
    """Who the ranking is for: a stored user or a signed-out location."""

    latitude: float
    longitude: float
    language: str | None
    preferred_categories: frozenset[str]
    local_preference_strength: float


@dataclass
class RingExpectation:
    """One searched ring: its bounds, every candidate in it (best first) and how many count."""

    index: int
    min_km: float
    max_km: float
    candidates: pd.DataFrame
    take: int


@dataclass
class Expectation:
    """What the endpoint must answer for one request."""

    request: dict[str, Any]
    viewer: Viewer
    streams: pd.DataFrame
    rings: list[RingExpectation]
    n_candidates: int
    boundary_ids: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        """Expected stream ids, in order."""
        return list(self.streams["stream_id"])


def great_circle_km(
    lat: float, lon: float, lats: np.ndarray | Sequence[float], lons: np.ndarray | Sequence[float]
) -> np.ndarray:
    """Distances in km on PostGIS's sphere from one point to many.

    The atan2 form of the great-circle formula (Vincenty's, for a sphere) rather than
    haversine's asin: it is well conditioned at every distance, antipodes included
    (the poles test those), where asin(sqrt(h)) loses half its digits.
    """
    phi1, lam1 = math.radians(lat), math.radians(lon)
    phi2 = np.radians(np.asarray(lats, dtype=np.float64))
    lam2 = np.radians(np.asarray(lons, dtype=np.float64))
    dlam = lam2 - lam1
    cos2, sin2 = np.cos(phi2), np.sin(phi2)
    cos1, sin1 = math.cos(phi1), math.sin(phi1)
    y = np.hypot(cos2 * np.sin(dlam), cos1 * sin2 - sin1 * cos2 * np.cos(dlam))
    x = sin1 * sin2 + cos1 * cos2 * np.cos(dlam)
    return np.arctan2(y, x) * (EARTH_RADIUS_M / 1000.0)


def haversine_km(
    lat: float, lon: float, lats: np.ndarray | Sequence[float], lons: np.ndarray | Sequence[float]
) -> np.ndarray:
    """The textbook haversine, kept only to cross-check `great_circle_km` away from antipodes."""
    phi1, phi2 = math.radians(lat), np.radians(np.asarray(lats, dtype=np.float64))
    dphi = phi2 - phi1
    dlam = np.radians(np.asarray(lons, dtype=np.float64)) - math.radians(lon)
    h = np.sin(dphi / 2) ** 2 + math.cos(phi1) * np.cos(phi2) * np.sin(dlam / 2) ** 2
    return 2 * np.arcsin(np.sqrt(np.minimum(h, 1.0))) * (EARTH_RADIUS_M / 1000.0)


def ring_bounds(radius_km: float) -> list[tuple[float, float]]:
    """(min_km, max_km) of every ring for `radius_km`, the last one ending at the antipode.

    Ring 0 is the radius; ring j >= 1 ends at 4^j times the radius or 1 km,
    whichever is larger (README, "Widening").
    """
    bounds = [(0.0, min(radius_km, HALF_CIRCUMFERENCE_KM))]
    base = max(radius_km, 1.0)
    j = 1
    while bounds[-1][1] < HALF_CIRCUMFERENCE_KM:
        bounds.append((bounds[-1][1], min(base * 4.0**j, HALF_CIRCUMFERENCE_KM)))
        j += 1
    return bounds


def ring_of(distance_km: np.ndarray, radius_km: float) -> np.ndarray:
    """Ring index of each distance (beyond the last bound: the last ring, see module doc)."""
    bounds = ring_bounds(radius_km)
    inner = np.array([hi for _, hi in bounds[:-1]])
    # Ring j is the first whose upper bound is >= d (upper bounds are inclusive).
    return np.searchsorted(inner, np.asarray(distance_km), side="left")


def resolve_viewer(
    users: pd.DataFrame,
    request: Mapping[str, Any],
    default_local_preference: float = DEFAULT_LOCAL_PREFERENCE,
) -> Viewer:
    """The viewer a (valid) request describes; `UnknownUser` for an id not in `users`."""
    user_id = request.get("user_id")
    if user_id is not None:
        rows = users.loc[users["user_id"] == user_id]
        if rows.empty:
            raise UnknownUser(user_id)
        row = rows.iloc[0]
        return Viewer(
            latitude=float(row["latitude"]),
            longitude=float(row["longitude"]),
            language=str(row["language"]),
            preferred_categories=frozenset(row["preferred_categories"] or ()),
            local_preference_strength=float(row["local_preference_strength"]),
        )
    strength = request.get("local_preference_strength")
    return Viewer(
        latitude=float(request["latitude"]),
        longitude=float(request["longitude"]),
        language=request.get("language"),
        preferred_categories=frozenset(request.get("preferred_categories") or ()),
        local_preference_strength=(
            default_local_preference if strength is None else float(strength)
        ),
    )


#: An ML term for the oracle: P(click) for each row of a streams frame, for one viewer.
MlProbability = Callable[[pd.DataFrame, Viewer], np.ndarray]
#: How P(click) enters the score, written out here, not taken from the service.
MlTerm = Callable[[np.ndarray], np.ndarray]


def score_streams(
    streams: pd.DataFrame,
    viewer: Viewer,
    weights: Weights,
    ml_probability: MlProbability | None = None,
    ml_term: MlTerm | None = None,
) -> pd.DataFrame:
    """Every stream of `streams` with its distance, boost, score components and score.

    The ML term is `ml_term(P)` when given, else the contract's `ml_weight · P`.
    """
    w = weights
    distance = great_circle_km(
        viewer.latitude, viewer.longitude, streams["latitude"], streams["longitude"]
    )
    boost = 1.0 / (1.0 + distance)
    same_language = (
        (streams["language"] == viewer.language).to_numpy()
        if viewer.language is not None
        else np.zeros(len(streams), dtype=bool)
    )
    liked = streams["category_id"].isin(viewer.preferred_categories).to_numpy()
    quality = w.quality_weight * streams["stream_quality_score"].to_numpy(dtype=np.float64)
    language = w.language_bonus * same_language.astype(np.float64)
    category = w.category_bonus * liked.astype(np.float64)
    popularity = np.minimum(
        streams["avg_viewer_count"].to_numpy(dtype=np.float64) / w.popularity_divisor,
        w.popularity_cap,
    )
    base = quality + language + category + popularity
    proximity = w.proximity_weight * boost * (1.0 + viewer.local_preference_strength)
    ml = (
        np.asarray(ml_probability(streams, viewer), dtype=np.float64)
        if ml_probability is not None
        else np.zeros(len(streams))
    )
    term = ml_term(ml) if ml_term is not None else w.ml_weight * ml
    return streams.assign(
        distance_km=distance,
        proximity_boost=boost,
        c_proximity=proximity,
        c_quality=quality,
        c_language=language,
        c_category=category,
        c_popularity=popularity,
        c_base=base,
        c_ml=term,
        score=proximity + w.base_weight * base + term,
    )


def candidates(streams: pd.DataFrame, request: Mapping[str, Any]) -> pd.DataFrame:
    """Live streams that pass the request's filters."""
    keep = streams["is_live"].to_numpy(dtype=bool).copy()
    if request.get("languages") is not None:
        keep &= streams["language"].isin(request["languages"]).to_numpy()
    if request.get("category_ids") is not None:
        keep &= streams["category_id"].isin(request["category_ids"]).to_numpy()
    if request.get("include_mature", True) is False:
        keep &= ~streams["mature_content"].to_numpy(dtype=bool)
    return streams.loc[keep]


def expect(
    users: pd.DataFrame,
    streams: pd.DataFrame,
    request: Mapping[str, Any],
    weights: Weights | None = None,
    default_local_preference: float = DEFAULT_LOCAL_PREFERENCE,
    ml_probability: MlProbability | None = None,
    ml_term: MlTerm | None = None,
) -> Expectation:
    """The exact answer to a valid request, by brute force over all of `streams`.

    Args:
        users: the users table (at least `USER_FIELDS`).
        streams: the streams table (at least `STREAM_FIELDS`).
        request: the request body as JSON-ready data.
        weights: score weights (the contract's defaults when None).
        default_local_preference: a signed-out viewer's strength when unset.
        ml_probability: the ML term's P(click) per stream (0 for all when None).
        ml_term: how P(click) enters the score (`ml_weight · P` when None).

    Raises:
        UnknownUser: `user_id` is not in `users`.
    """
    weights = weights or Weights()
    viewer = resolve_viewer(users, request, default_local_preference)
    max_results = int(request.get("max_results", DEFAULT_MAX_RESULTS))
    radius_km = float(request.get("radius_km", DEFAULT_RADIUS_KM))

    scored = score_streams(candidates(streams, request), viewer, weights, ml_probability, ml_term)
    scored = scored.assign(ring=ring_of(scored["distance_km"].to_numpy(), radius_km))
    bounds = ring_bounds(radius_km)
    inner = np.array([hi for _, hi in bounds[:-1]])
    near_boundary = (
        np.abs(scored["distance_km"].to_numpy()[:, None] - inner[None, :]) <= DISTANCE_TOL_KM
    ).any(axis=1)
    # Best first, ties by stream_id (code-point order, as PostgreSQL's C collation).
    ordered = scored.sort_values(["score", "stream_id"], ascending=[False, True], kind="mergesort")

    rings: list[RingExpectation] = []
    picked: list[pd.DataFrame] = []
    found = 0
    for index, (lo, hi) in enumerate(bounds):
        if found >= max_results:
            break
        members = ordered.loc[ordered["ring"] == index].reset_index(drop=True)
        take = min(max_results - found, len(members))
        rings.append(RingExpectation(index, lo, hi, members, take))
        picked.append(members.iloc[:take])
        found += take
    chosen = pd.concat(picked, ignore_index=True) if picked else scored.iloc[:0]
    return Expectation(
        request=dict(request),
        viewer=viewer,
        streams=chosen,
        rings=rings,
        n_candidates=len(scored),
        boundary_ids=list(scored.loc[near_boundary, "stream_id"]),
    )


def _may_precede(
    score_a: np.ndarray, id_a: np.ndarray, score_b: np.ndarray, id_b: np.ndarray
) -> np.ndarray:
    """Whether a may rank before b: higher oracle score, or a near-tie that a's id wins."""
    return (score_a > score_b) | ((np.abs(score_a - score_b) <= SCORE_TOL) & (id_a < id_b))


def _close(got: object, want: float, tol: float) -> bool:
    return _is_number(got) and abs(got - want) <= tol  # type: ignore[operator]


def check(
    expectation: Expectation, body: Mapping[str, Any], streams: pd.DataFrame | None = None
) -> list[str]:
    """Every way `body` (a 200 response's JSON) breaks the expectation; [] if none.

    An id list that differs from `expectation.ids` only by near-ties is accepted; when
    anything is wrong, both lists head the problems.

    Args:
        expectation: what `expect()` computed for the same request.
        body: the decoded response.
        streams: the full streams table, only to say *why* an unexpected id is wrong.
    """
    problems: list[str] = []
    got = body.get("streams")
    if not isinstance(got, list):
        return [f"`streams` is not a list: {got!r}"]
    got_ids = [s.get("stream_id") for s in got]
    if len(set(got_ids)) != len(got_ids):
        problems.append("duplicate stream ids in the response")
    rings_got = [s.get("ring") for s in got]
    if rings_got != sorted(r for r in rings_got if isinstance(r, int)):
        problems.append(f"streams are not grouped by ascending ring: {rings_got}")

    # The rings searched, with their bounds and counts.
    want_rings = [(r.index, r.min_km, r.max_km, r.take) for r in expectation.rings]
    body_rings = body.get("rings")
    if not isinstance(body_rings, list) or len(body_rings) != len(want_rings):
        problems.append(f"rings: expected {want_rings}, got {body_rings}")
    else:
        for want, ring in zip(want_rings, body_rings, strict=True):
            ok = (
                ring.get("index") == want[0]
                and _close(ring.get("min_km"), want[1], DISTANCE_TOL_KM)
                and _close(ring.get("max_km"), want[2], DISTANCE_TOL_KM)
                and ring.get("streams") == want[3]
            )
            if not ok:
                problems.append(
                    f"ring {want[0]}: expected (index, min, max, streams) {want}, got {ring}"
                )
    counted = {r.get("index"): r.get("streams") for r in body_rings or [] if isinstance(r, dict)}
    for index in set(rings_got):
        if counted.get(index) != rings_got.count(index):
            problems.append(
                f"ring {index}: `rings` says {counted.get(index)} streams,"
                f" the list holds {rings_got.count(index)}"
            )

    # Each ring: the right number, only its candidates, a valid order and selection.
    explain = bool(expectation.request.get("explain", False))
    for ring in expectation.rings:
        members = ring.candidates
        items = [s for s in got if s.get("ring") == ring.index]
        if len(items) != ring.take:
            problems.append(f"ring {ring.index}: expected {ring.take} streams, got {len(items)}")
        by_id = members.set_index("stream_id")
        known = [s for s in items if s.get("stream_id") in by_id.index]
        for s in items:
            if s.get("stream_id") not in by_id.index:
                problems.append(
                    f"ring {ring.index}: {s.get('stream_id')} is not a candidate of this ring"
                    f" ({_why_not(expectation, s.get('stream_id'), streams)})"
                )
        for s in known:
            problems.extend(_check_fields(s, by_id.loc[s["stream_id"]], explain))
        if not known:
            continue
        ids = np.array([s["stream_id"] for s in known], dtype=object)
        scores = by_id.loc[ids, "score"].to_numpy()
        # Order: every earlier stream may precede every later one.
        i, j = np.triu_indices(len(ids), k=1)
        bad = ~_may_precede(scores[i], ids[i], scores[j], ids[j])
        for a, b in list(zip(i[bad], j[bad], strict=True))[:5]:
            problems.append(
                f"ring {ring.index}: {ids[a]} (score {scores[a]!r}) ranked above"
                f" {ids[b]} (score {scores[b]!r})"
            )
        # Selection: every returned stream may precede every one left out.
        left = members.loc[~members["stream_id"].isin(set(ids))]
        if len(left):
            l_ids = left["stream_id"].to_numpy(dtype=object)
            l_scores = left["score"].to_numpy()
            ok = _may_precede(scores[:, None], ids[:, None], l_scores[None, :], l_ids[None, :])
            for a, b in list(zip(*np.nonzero(~ok), strict=True))[:5]:
                problems.append(
                    f"ring {ring.index}: returned {ids[a]} (score {scores[a]!r}) but left out"
                    f" {l_ids[b]} (score {l_scores[b]!r}, {left['distance_km'].iloc[b]!r} km)"
                )
    searched = {r.index for r in expectation.rings}
    for s in got:
        if s.get("ring") not in searched:
            problems.append(
                f"{s.get('stream_id')} has ring {s.get('ring')}, which was not searched"
            )
    if problems and got_ids != expectation.ids:
        # Context for the reader; a differing list alone is no failure (see module doc).
        problems.insert(0, f"ids:\n  expected {expectation.ids}\n  got      {got_ids}")
    return problems


def _check_fields(item: Mapping[str, Any], want: pd.Series, explain: bool) -> list[str]:
    sid = item.get("stream_id")
    problems = []
    if not _close(item.get("distance_km"), float(want["distance_km"]), DISTANCE_TOL_KM):
        problems.append(
            f"{sid}: distance_km {item.get('distance_km')!r}, expected {want['distance_km']!r}"
        )
    if not _close(item.get("score"), float(want["score"]), SCORE_TOL):
        problems.append(f"{sid}: score {item.get('score')!r}, expected {want['score']!r}")
    if not _close(item.get("proximity_boost"), float(want["proximity_boost"]), SCORE_TOL):
        problems.append(
            f"{sid}: proximity_boost {item.get('proximity_boost')!r},"
            f" expected {want['proximity_boost']!r}"
        )
    for name in COPIED_FIELDS:
        value = want[name]
        value = int(value) if name == "current_viewer_count" else str(value)
        if item.get(name) != value:
            problems.append(f"{sid}: {name} {item.get(name)!r}, expected {value!r}")
    components = item.get("components")
    if not explain:
        if components is not None:
            problems.append(f"{sid}: `components` present without `explain`")
        return problems
    if not isinstance(components, dict):
        return [*problems, f"{sid}: `components` missing with `explain`: {components!r}"]
    for name in COMPONENTS:
        if not _close(components.get(name), float(want[f"c_{name}"]), SCORE_TOL):
            problems.append(
                f"{sid}: components.{name} {components.get(name)!r}, expected {want[f'c_{name}']!r}"
            )
    if all(_is_number(components.get(name)) for name in COMPONENTS):
        # The parts must add up by themselves, whatever the oracle thinks of them.
        parts = sum(components[n] for n in ("quality", "language", "category", "popularity"))
        if not _close(components["base"], parts, SCORE_TOL):
            problems.append(f"{sid}: components.base {components['base']!r} != its parts {parts!r}")
        added = (
            components["proximity"] + Weights().base_weight * components["base"] + components["ml"]
        )
        if not _close(item.get("score"), added, SCORE_TOL):
            problems.append(f"{sid}: score {item.get('score')!r} != its components' sum {added!r}")
    return problems


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _why_not(expectation: Expectation, stream_id: object, streams: pd.DataFrame | None) -> str:
    """A short reason a returned id should not be there, for the failure message."""
    if streams is None:
        return "unknown reason"
    row = streams.loc[streams["stream_id"] == stream_id]
    if row.empty:
        return "no such stream"
    if not bool(row["is_live"].iloc[0]):
        return "offline"
    if candidates(row, expectation.request).empty:
        return "filtered out by the request"
    for ring in expectation.rings:
        if stream_id in set(ring.candidates["stream_id"]):
            return f"it belongs to ring {ring.index}"
    return "its ring was not searched"

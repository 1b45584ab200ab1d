"""Response bodies, as typed structures so `/docs` documents them exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from app.db.limits import (
    CODE_MAX_LENGTH,
    ID_MAX_LENGTH,
    LATITUDE,
    LIST_MAX_LENGTH,
    LOCAL_PREFERENCE,
    LONGITUDE,
)


@dataclass
class ReplicaStatus:
    """One read replica (`DATABASE_REPLICA_URLS`) as this process last checked it.

    `state`: "up" (serves reads), "lagging" (more than `REPLICA_MAX_LAG` behind),
    "down", "not_standby" (not in recovery: serves nothing), or "unknown" (not
    checked yet). `lag_s`: seconds of the primary's commits it may lack right now.
    """

    name: str
    url: str
    state: str
    lag_s: float | None = None
    reads: int = 0
    error: str | None = None


@dataclass
class DatabaseStatus:
    """Reachability and size of the database (the primary), and the read replicas.

    `primary_reads` and each replica's `reads` count the recommendation reads this
    process sent there.
    """

    reachable: bool
    postgis_version: str | None = None
    rows: dict[str, int] | None = None
    rows_estimated: bool | None = None
    error: str | None = None
    primary_reads: int | None = None
    replicas: list[ReplicaStatus] = field(default_factory=list)


@dataclass
class ModelStatus:
    """The click model behind `/v1/scenarios/hometown-ml`: loaded or why not."""

    loaded: bool
    path: str
    kind: str | None = None
    created_at: str | None = None
    training_rows: int | None = None
    sha256: str | None = None
    loaded_at: str | None = None
    error: str | None = None


@dataclass
class RankerStatus:
    """The feed reranker behind `/home_feed` and `/category_feed`: loaded or why not.

    Without one the feed endpoints still answer, in their fallback order.
    """

    loaded: bool
    path: str
    version: str | None = None
    trained_at: str | None = None
    candidate_models: dict[str, str] | None = None
    loaded_at: str | None = None
    error: str | None = None


@dataclass
class FeedStatus:
    """Every model and store the feed endpoints use, and the state of each."""

    reranker: RankerStatus
    #: The live set in memory: live streams, those with embeddings, the candidate
    #: model's version, when it last synced, whether it follows the database.
    live_set: dict[str, Any] | None = None
    #: The feature cache: backend (redis or memory), reachable, hits, misses, fallbacks.
    feature_store: dict[str, Any] | None = None
    #: The rerankers experiment variants name (`feed_reranker`), by that name.
    variant_rerankers: dict[str, RankerStatus] | None = None


@dataclass
class ProcessStatus:
    """Which server process answered, and how many serve the port (`WORKERS`).

    Each process holds its own models, live set and caches (app/workers.py), so
    the rest of the answer describes this one.
    """

    pid: int
    workers: int


@dataclass
class HealthResponse:
    """`GET /`: overall status ("ok" or "unavailable"), app version, database status.

    The status follows the database only: without a click model `/hometown` still
    works, so the service is up; `model` says whether `/hometown-ml` can answer.
    `endpoints` lists what the app serves ("POST /v1/scenarios/hometown", ...), read
    from its route table, in the 503 answer too.
    """

    status: str
    version: str
    database: DatabaseStatus
    model: ModelStatus | None = None
    feed: FeedStatus | None = None
    endpoints: list[str] = field(default_factory=list)
    process: ProcessStatus | None = None
    #: The exposure writer: rows waiting, written, dropped, failures, the last error.
    exposures: dict[str, Any] | None = None


# --- HOMETOWN -----------------------------------------------------------------------

#: No control character but tab (C0, DEL, C1: a CR or an ESC breaks CSV round trips
#: and terminals, and PostgreSQL text cannot hold NUL), as the importer refuses
#: (seed/parsing.py). Lone surrogates never get this far: the JSON decoder refuses
#: them. The pattern is one every JSON Schema engine reads (no surrogate range, which
#: the generators behind schemathesis reject as "not a regex" and then ignore).
_TEXT = r"^[^\x00-\x08\x0a-\x1f\x7f-\x9f]*$"
#: Long free text (a description): line breaks (LF, CR: CRLF too) allowed as well.
_LONG_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
Id = Annotated[str, Meta(min_length=1, max_length=ID_MAX_LENGTH, pattern=_TEXT)]
Code = Annotated[str, Meta(min_length=1, max_length=CODE_MAX_LENGTH, pattern=_TEXT)]
Codes = Annotated[list[Code], Meta(max_length=LIST_MAX_LENGTH)]
Latitude = Annotated[float, Meta(ge=LATITUDE.low, le=LATITUDE.high)]
Longitude = Annotated[float, Meta(ge=LONGITUDE.low, le=LONGITUDE.high)]


class HometownRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Who to recommend for, how many, how far, and which streams qualify.

    Give either `user_id` (a known viewer) or `latitude` + `longitude` (a signed-out
    viewer, who may add `language`, `preferred_categories` and
    `local_preference_strength`; unset, they mean "no language", "no preferences"
    and the `DEFAULT_LOCAL_PREFERENCE` setting, 0.5).
    """

    user_id: Id | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    language: Code | None = None
    preferred_categories: Codes | None = None
    local_preference_strength: (
        Annotated[float, Meta(ge=LOCAL_PREFERENCE.low, le=LOCAL_PREFERENCE.high)] | None
    ) = None
    max_results: Annotated[int, Meta(ge=1, le=100)] = 20
    radius_km: Annotated[
        float,
        Meta(
            gt=0,
            le=20000,
            description="Ring 0: only streams within this distance (km, on the sphere)."
            " When it holds fewer than `max_results`, the search widens ×4 per ring from"
            " `radius_km`, or from 1 km if that is larger, up to the whole globe: at most"
            " 9 rings.",
        ),
    ] = 250.0
    languages: Codes | None = None
    category_ids: Codes | None = None
    include_mature: bool = True
    explain: bool = False

    def __post_init__(self) -> None:
        """Cross-field rules msgspec cannot express; raised as a 400 naming the fields."""
        located = (self.latitude is not None, self.longitude is not None)
        if self.user_id is not None:
            extras = [
                name
                for name in (
                    "latitude",
                    "longitude",
                    "language",
                    "preferred_categories",
                    "local_preference_strength",
                )
                if getattr(self, name) is not None
            ]
            if extras:
                raise ValueError(
                    f"give either `user_id` or a location, not both (got {', '.join(extras)})"
                )
        elif located == (False, False):
            raise ValueError("give `user_id`, or `latitude` and `longitude`")
        elif located != (True, True):
            missing = "longitude" if located[0] else "latitude"
            raise ValueError(
                f"`{missing}` is required with `{'latitude' if located[0] else 'longitude'}`"
            )


class ScoreComponents(msgspec.Struct):
    """The score taken apart (with `explain`): score = proximity + base_weight·base + ml."""

    proximity: float
    quality: float
    language: float
    category: float
    popularity: float
    base: float
    ml: float


class RecommendedStream(msgspec.Struct, omit_defaults=True):
    """One recommended live stream, in ranking order."""

    stream_id: str
    city: str
    score: float
    distance_km: float
    proximity_boost: float
    ring: int
    title: str
    language: str
    category_id: str
    current_viewer_count: int
    components: ScoreComponents | None = None


class Ring(msgspec.Struct):
    """One distance band searched: ring 0 is `radius_km`, each wider one ×4, up to the globe."""

    index: int
    min_km: float
    max_km: float
    streams: int


class ExperimentArm(msgspec.Struct):
    """The experiment the user is in for this scenario (`EXPERIMENTS`) and their variant."""

    name: str
    variant: str


class HometownResponse(msgspec.Struct):
    """Ranked live streams: ring 0 first (best first, ties by `stream_id`), then wider rings."""

    request_id: str
    streams: list[RecommendedStream]
    rings: list[Ring]
    #: Set when the user is in an experiment over this scenario.
    experiment: ExperimentArm | None = None


class CityStats(msgspec.Struct):
    """Live streams in one city right now, and their current viewers."""

    city: str
    live_streams: int
    viewers: int


class Algorithm(msgspec.Struct):
    """How HOMETOWN ranks, with the weights in force."""

    name: str
    distance_model: str
    formula: str
    widening_factor: float
    weights: dict[str, float]
    #: How `/hometown-ml` adds P(click) now, e.g. "38·min(P(click), 0.25) (fitted)".
    ml_term: str


class StatsResponse(msgspec.Struct):
    """What the scenario draws on.

    The first five fields are the seed project's contract, with its names and types
    (`total_streams`, `total_users`, `cities_covered`, `top_cities` as
    `{city: streams}`, `algorithm` as the formula text); the rest add the live
    picture and the ranking's parameters.
    """

    total_streams: Annotated[int, Meta(description="All streams, live or not.")]
    total_users: Annotated[int, Meta(description="All users.")]
    cities_covered: Annotated[
        int, Meta(description="Distinct cities with at least one stream (live or not).")
    ]
    top_cities: Annotated[
        dict[str, int],
        Meta(
            description="All streams (live or not) per city: the 10 cities with the most,"
            " ordered by that count descending, then by city name.",
            examples=[{"Los Angeles": 60, "London": 41}],
        ),
    ]
    algorithm: Annotated[str, Meta(description="The score formula the ranking uses.")]
    live_streams: Annotated[int, Meta(description="Streams live right now.")]
    live_cities: Annotated[int, Meta(description="Distinct cities with a live stream.")]
    top_live_cities: Annotated[
        list[CityStats],
        Meta(
            description="The 10 cities with the most live streams (with their current"
            " viewers), ordered by live streams descending, then by city name."
        ),
    ]
    algorithm_details: Annotated[
        Algorithm,
        Meta(description="The ranking's name, distance model, widening factor and weights."),
    ]

"""HTTP for the HOMETOWN scenario: parse, call the service, shape the answer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK

from app.api import responses
from app.api.body import strict_json
from app.api.rate_limit import rate_limited
from app.api.schemas import (
    Algorithm,
    CityStats,
    ExperimentArm,
    HometownRequest,
    HometownResponse,
    RecommendedStream,
    Ring,
    StatsResponse,
)
from app.errors import ModelUnavailable
from app.events.exposures import answered
from app.experiments import Experiment, Variant, for_scenario
from app.hometown import service
from app.hometown.click_model import ModelSlot, probability_of
from app.hometown.ml_term import MLTerm
from app.hometown.search import Probability
from app.hometown.weights import FORMULA
from app.observability.context import current_request_id

ALGORITHM = "hometown-exact-threshold"
STATS_DESCRIPTION = (
    "`total_streams`, `total_users`, `cities_covered`, `top_cities` and `algorithm` keep"
    " the seed project's names and types. `top_cities` counts all streams (live or not)"
    " per city: the 10 cities with the most, as `{city: streams}`, ordered by count"
    " descending, then by city name. `algorithm` is the score formula. The other fields"
    " add the live picture (`live_streams`, `live_cities`, and `top_live_cities`: the 10"
    " cities with the most live streams, with their current viewers) and"
    " `algorithm_details` (name, distance model, widening factor, weights in force, and"
    " `ml_term`: how `/hometown-ml` adds P(click), fitted by training or the formula's)."
    " Computed in SQL and cached for `STATS_CACHE_SECONDS` (default 5)."
)


class HometownController(Controller):
    """`/v1/scenarios/hometown`: live streams near the viewer, best first."""

    path = "/v1/scenarios/hometown"
    tags = ("hometown",)
    guards = (rate_limited,)

    @post(
        "/",
        status_code=HTTP_200_OK,
        summary="Recommend live streams near a viewer",
        before_request=strict_json(HometownRequest),
        responses=responses.RECOMMEND,
    )
    async def recommend(self, state: State, data: JSONBody[HometownRequest]) -> HometownResponse:
        """Exact top `max_results` live streams by the seed score, widening when needed.

        Unknown `user_id`: 404. Bad input: 400 naming the field. In an experiment
        over HOMETOWN (`EXPERIMENTS`), the user's variant decides whether the click
        model's term is added, and `experiment` names it.
        """
        assigned = for_scenario(state.settings.experiments, "hometown", data.user_id)
        served = None
        if assigned is not None and assigned[1].hometown == "ml":
            served = _click_model(state)  # without one, the variant gets the formula
        return await _recommend(state, data, "hometown", served, assigned)

    @get(
        "/stats",
        summary="What the scenario draws on",
        description=STATS_DESCRIPTION,
        responses={**responses.LIMITED, **responses.UNAVAILABLE},
    )
    async def stats(self, state: State) -> StatsResponse:
        """Totals, the top 10 cities, the live picture, and the algorithm (`STATS_DESCRIPTION`)."""
        settings = state.settings
        async with state.reads.connection(settings.db_connect_timeout_s) as conn:
            totals = await state.stats_cache.get(conn)
        return StatsResponse(
            total_streams=totals.streams,
            total_users=totals.users,
            cities_covered=totals.cities,
            top_cities=totals.top_cities,
            algorithm=FORMULA,
            live_streams=totals.live_streams,
            live_cities=totals.live_cities,
            top_live_cities=[
                CityStats(c.city, c.live_streams, c.viewers) for c in totals.top_live_cities
            ],
            algorithm_details=Algorithm(
                name=ALGORITHM,
                distance_model="sphere (radius 6371008.77 m) for filter, order and distance_km",
                formula=FORMULA,
                widening_factor=service.WIDENING_FACTOR,
                weights=settings.weights.model_dump(),
                ml_term=_describe(ml_term_of(state)),
            ),
        )


class HometownMlController(Controller):
    """`/v1/scenarios/hometown-ml`: the same list with the click model's term added."""

    path = "/v1/scenarios/hometown-ml"
    tags = ("hometown",)
    guards = (rate_limited,)

    @post(
        "/",
        status_code=HTTP_200_OK,
        summary="Recommend live streams near a viewer, with the click model",
        before_request=strict_json(HometownRequest),
        responses=responses.RECOMMEND,
    )
    async def recommend(self, state: State, data: JSONBody[HometownRequest]) -> HometownResponse:
        """Exact top `max_results` by the seed score plus the click model's term.

        The term is the one training fitted into the model (`weight · min(P(click),
        cap)`), or the seed's `0.5 · P(click)` (`ML_TERM=formula`, or a model
        without one). Same request, response and exactness as
        `/v1/scenarios/hometown`. Without a usable click model: 503, saying why and
        how to train one.
        """
        served = _click_model(state)
        if served is None:
            slot: ModelSlot = state.model
            raise ModelUnavailable(slot.error or "no click model is loaded")
        return await _recommend(state, data, "hometown-ml", served, None)


@dataclass(frozen=True)
class Served:
    """The click model a request uses: P(click), how it enters the score, a label."""

    probability: Probability
    term: MLTerm
    label: str


def _click_model(state: State) -> Served | None:
    """The loaded click model, its term and a label (kind and training time), if any."""
    model = state.model.model
    if model is None:
        return None
    return Served(probability_of(model), ml_term_of(state), _label(model.metadata))


def ml_term_of(state: State) -> MLTerm:
    """The term in force: the model's fitted one unless `ML_TERM=formula`."""
    settings = state.settings
    model = state.model.model
    if model is None:
        return MLTerm.formula(settings.weights.ml_weight)
    return MLTerm.in_force(model.metadata, settings.ml_term, settings.weights.ml_weight)


def _describe(term: MLTerm) -> str:
    return f"{term.describe()} ({term.source})"


def _label(meta: dict[str, Any]) -> str:
    return f"{meta.get('model_kind', 'click model')} {meta.get('created_at', '')}".strip()


async def _recommend(
    state: State,
    data: HometownRequest,
    scenario: str,
    served: Served | None,
    assigned: tuple[Experiment, Variant] | None,
) -> HometownResponse:
    """Both endpoints: a read connection, the settings' weights, the service.

    The read goes to a fresh replica when there is one, else the primary
    (app/db/replicas.py).
    """
    settings = state.settings
    query = service.Query(**msgspec.structs.asdict(data))
    async with state.reads.connection(settings.db_connect_timeout_s) as conn:
        found = await service.recommend(
            conn,
            query,
            settings.weights,
            default_local_preference=settings.default_local_preference,
            probability=served.probability if served else None,
            term=served.term if served else None,
        )
    # The id the response's X-Request-ID header carries, so a body and a log line match.
    request_id = current_request_id() or uuid.uuid4().hex
    shown = [stream.stream_id for stream in found.streams]
    model = served.label if served else "formula"
    state.exposures.add(answered(request_id, scenario, data.user_id, shown, model, assigned))
    return to_response(request_id, found, assigned)


def to_response(
    request_id: str,
    found: service.Recommendation,
    assigned: tuple[Experiment, Variant] | None = None,
) -> HometownResponse:
    """The service's result as the HTTP body (the same fields, as msgspec structs)."""
    return HometownResponse(
        request_id=request_id,
        streams=msgspec.convert(found.streams, list[RecommendedStream], from_attributes=True),
        rings=msgspec.convert(found.rings, list[Ring], from_attributes=True),
        experiment=None
        if assigned is None
        else ExperimentArm(name=assigned[0].name, variant=assigned[1].name),
    )

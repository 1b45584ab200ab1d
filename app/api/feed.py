"""HTTP for HOME_FEED and CATEGORY_FEED: parse, call the service, shape the answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
from litestar import Controller, post
from litestar.datastructures import State
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK

from app.api import responses
from app.api.body import strict_json
from app.api.feed_schemas import (
    DEVICE_ALIASES,
    CategoryFeedRequest,
    FeedModels,
    FeedResponse,
    FeedStream,
    HomeFeedRequest,
)
from app.api.rate_limit import rate_limited
from app.api.schemas import ExperimentArm
from app.events.exposures import answered
from app.experiments import Experiment, Variant, for_scenario
from app.feed import service
from app.feed.ranker import RankerSlot
from app.observability.context import current_request_id


class HomeFeedController(Controller):
    """`/v1/scenarios/home_feed`: the viewer's front page."""

    path = "/v1/scenarios/home_feed"
    tags = ("feed",)
    guards = (rate_limited,)

    @post(
        "/",
        status_code=HTTP_200_OK,
        summary="A viewer's home feed: candidates from several sources, reranked",
        before_request=strict_json(HomeFeedRequest),
        responses=responses.RECOMMEND,
    )
    async def recommend(self, state: State, data: JSONBody[HomeFeedRequest]) -> FeedResponse:
        """Live streams for the viewer, best first, each with a reason.

        Unknown `user_id`: 404. Bad input: 400 naming the field. Database down: 503.
        """
        return await _recommend(state, data, None)


class CategoryFeedController(Controller):
    """`/v1/scenarios/category_feed`: the same within one category."""

    path = "/v1/scenarios/category_feed"
    tags = ("feed",)
    guards = (rate_limited,)

    @post(
        "/",
        status_code=HTTP_200_OK,
        summary="A viewer's feed within one category",
        before_request=strict_json(CategoryFeedRequest),
        responses=responses.RECOMMEND,
    )
    async def recommend(self, state: State, data: JSONBody[CategoryFeedRequest]) -> FeedResponse:
        """Live streams of `category_id` for the viewer; never padded with other categories.

        When the category has fewer live streams than asked, `note` says so.
        """
        return await _recommend(state, data, data.category_id)


def _ranker_slot(state: State, assigned: tuple[Experiment, Variant] | None) -> RankerSlot:
    """The default reranker, or the one the user's variant names (`feed_reranker`)."""
    name = assigned[1].feed_reranker if assigned is not None else None
    slot: RankerSlot = state.variant_rankers[name] if name else state.ranker
    return slot


async def _recommend(state: State, data: HomeFeedRequest, category: str | None) -> FeedResponse:
    settings = state.settings
    query = service.FeedQuery(
        user_id=data.user_id,
        category_id=category,
        at=None if data.ctx_timestamp is None else datetime.fromtimestamp(data.ctx_timestamp, UTC),
        device=None if data.ctx_device is None else DEVICE_ALIASES[data.ctx_device],
        locale_language=None
        if data.ctx_locale is None
        else data.ctx_locale.replace("-", "_").split("_", 1)[0].lower(),
        max_results=data.max_results,
        explain=data.explain,
    )
    scenario = "home_feed" if category is None else "category_feed"
    assigned = for_scenario(settings.experiments, scenario, data.user_id)
    slot = _ranker_slot(state, assigned)
    # A variant with `feed_order: fallback` is served as if no reranker were loaded.
    ranker = None if assigned is not None and assigned[1].feed_order == "fallback" else slot.ranker
    parts = service.Parts(
        live=state.live,
        store=state.features,
        popular=state.popular,
        ranker=ranker,
        ranker_version=slot.version,
        weights=settings.weights,
    )
    feed = await service.recommend(
        lambda: state.reads.connection(settings.db_connect_timeout_s), query, parts
    )
    request_id = current_request_id() or uuid.uuid4().hex
    shown = [stream.stream_id for stream in feed.streams]
    state.exposures.add(
        answered(
            request_id,
            scenario,
            data.user_id,
            shown,
            feed.served.reranker or feed.served.order,
            assigned,
        )
    )
    return FeedResponse(
        request_id=request_id,
        streams=msgspec.convert(feed.streams, list[FeedStream], from_attributes=True),
        models=FeedModels(
            candidate_model=feed.served.candidate_model,
            reranker=feed.served.reranker,
            order=feed.served.order,  # type: ignore[arg-type]
        ),
        candidates=feed.candidates,
        sources=feed.sources,
        category_id=feed.category_id,
        live_in_category=feed.live_in_category,
        note=feed.note,
        experiment=None
        if assigned is None
        else ExperimentArm(name=assigned[0].name, variant=assigned[1].name),
    )

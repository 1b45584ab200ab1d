"""The Litestar application: settings in, routes and lifespan wired, nothing at import."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from app import __version__
from app.api import openapi
from app.api.event_schemas import EventBatch, EventBody
from app.api.events import EventsController
from app.api.feed import CategoryFeedController, HomeFeedController
from app.api.feed_schemas import CategoryFeedRequest, HomeFeedRequest
from app.api.health import health, live, ready
from app.api.hometown import HometownController, HometownMlController
from app.api.live_schemas import (
    GoLiveBody,
    GoOfflineBody,
    LiveStatusBatch,
    StatusUpdateBody,
    StreamProfile,
)
from app.api.metrics import metrics
from app.api.rate_limit import Limiter, RateLimiter
from app.api.schemas import HometownRequest
from app.api.streams import StreamsController
from app.db.pool import database
from app.db.replicas import replicas
from app.errors import EXCEPTION_HANDLERS, ThrottledLog
from app.events.exposures import exposure_log
from app.events.log import EventLog
from app.feed.follow import live_streams
from app.feed.ranker import feed_ranker
from app.feed.service import PopularStreams
from app.feed.store import feature_store
from app.hometown.click_model import click_model
from app.hometown.stats import SharedTotals, StatsCache
from app.observability.logs import configure_logging, log_unexpected
from app.observability.metrics import Metrics
from app.observability.middleware import Observability
from app.reload import sighup
from app.settings import Settings, get_settings
from app.transport.proxies import ClientAddress, parse_networks


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app for `settings` (default: from the environment).

    Tests pass their own settings; nothing here opens a connection until start-up.
    """
    settings = settings or get_settings()
    configure_logging(settings.log_format)
    state = State(
        {
            "settings": settings,
            "stats_cache": StatsCache(settings.stats_cache_s, shared=_shared_totals(settings)),
            "rate_limiter": _rate_limiter(settings),
            "failure_log": ThrottledLog(),
            "reloaders": [],
            "popular": PopularStreams(),
            "events": EventLog(),
        }
    )
    state.metrics = Metrics(state)
    app = Litestar(
        route_handlers=[
            health,
            live,
            ready,
            metrics,
            HometownController,
            HometownMlController,
            HomeFeedController,
            CategoryFeedController,
            StreamsController,
            EventsController,
        ],
        lifespan=[
            sighup,
            database,
            exposure_log,
            replicas,
            click_model,
            feed_ranker,
            feature_store,
            live_streams,
        ],
        state=state,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        after_exception=[log_unexpected],
        # Logging is configured above (JSON or text, with request ids); Litestar's
        # default config would replace that handler with one of its own format.
        logging_config=None,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Hometown",
            version=__version__,
            description="Live streams from the viewer's own city and region, ranked.",
            path="/docs",
            render_plugins=[SwaggerRenderPlugin(path="/"), ScalarRenderPlugin(path="/scalar")],
            components=Components(
                security_schemes={
                    "ApiKey": SecurityScheme(
                        type="apiKey",
                        name="X-API-Key",
                        security_scheme_in="header",
                        description="The API_KEY setting; every write endpoint needs it.",
                    )
                }
            ),
        ),
    )
    # Outermost, around routing and the exception middleware, so that 404s from
    # routing and every error response carry the request id and are timed too.
    app.asgi_handler = Observability(
        app.asgi_handler,
        state.metrics,
        log_access=settings.access_log,
        clients=ClientAddress(parse_networks(settings.trusted_proxies)),
    )
    openapi.tighten(
        app.openapi_schema,
        REQUEST_MODELS,
        optional_bodies=OPTIONAL_BODIES,
        checked_items={("EventBatch", "events"): EventBody},
    )
    if state.rate_limiter is not None:
        app.on_shutdown.append(state.rate_limiter.close)  # Redis connections, if any
    if state.stats_cache.shared is not None:
        app.on_shutdown.append(state.stats_cache.shared.close)
    return app


#: Paths whose POST body may be left out (`strict_json(..., optional=True)`).
OPTIONAL_BODIES = ("/v1/streams/{stream_id}/live", "/v1/streams/{stream_id}/offline")
#: Request bodies whose strictness the OpenAPI schema must show (see app/api/openapi.py).
REQUEST_MODELS = (
    HometownRequest,
    HomeFeedRequest,
    CategoryFeedRequest,
    LiveStatusBatch,
    StatusUpdateBody,
    GoLiveBody,
    GoOfflineBody,
    StreamProfile,
    EventBatch,
)


def _shared_totals(settings: Settings) -> SharedTotals | None:
    """The stats answer shared through Redis when `REDIS_URL` is set (redis-py only then)."""
    if settings.redis_url is None:
        return None
    from app.hometown.stats_redis import RedisTotals

    return RedisTotals(settings.redis_url.get_secret_value())


def _rate_limiter(settings: Settings) -> Limiter | None:
    """The per-client limiter for the recommendation endpoints, when the settings ask for one.

    With `REDIS_URL` its buckets live in Redis (shared by every process and host);
    redis-py is imported only then.
    """
    if settings.rate_limit_per_second <= 0:
        return None
    if settings.redis_url is not None:
        from app.api.rate_limit_redis import SharedRateLimiter

        return SharedRateLimiter(
            settings.redis_url.get_secret_value(),
            settings.rate_limit_per_second,
            settings.rate_limit_burst,
        )
    return RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)

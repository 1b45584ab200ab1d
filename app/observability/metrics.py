"""Prometheus metrics, in a registry of the app's own (tests build many apps).

Per request: latency by route template, method and status class; for the
HOMETOWN endpoints, the candidate rows the search read and the widening rings it
used; for the live-status writes, the updates by outcome. At scrape time: the
click model (loaded or not), the feature cache's hits, misses and fallbacks,
the asyncpg pool's size, connections in use, idle and maximum, and the cyclic
garbage collector's time, read from the objects themselves, so nothing on the
request path keeps them up to date.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.db import replicas
from app.heap import CLOCK
from app.observability.context import RequestRecord

#: Scenarios whose requests note their candidates (the feed's rings stay at 0: none).
SCENARIOS = ("hometown", "hometown-ml", "home_feed", "category_feed")
OUTCOMES = ("applied", "stale", "unknown", "superseded", "rejected")
#: A request no route matched (404, 405): one label value, not one per path tried.
UNMATCHED = "<unmatched>"

#: Seconds; the HOMETOWN p50 is ~3 ms, so the low end is fine-grained.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
CANDIDATE_BUCKETS = (10, 25, 50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200)
RING_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 15)


class Metrics:
    """The app's metric families and the one call per request that feeds them."""

    def __init__(self, state: Any) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "hometown_http_request_duration_seconds",
            "Time from request start to the last response byte, by route template,"
            " method and status class.",
            ("route", "method", "status"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.candidates = Histogram(
            "hometown_search_candidates_read",
            "Candidate rows the exact search read per request, summed over rings.",
            ("endpoint",),
            buckets=CANDIDATE_BUCKETS,
            registry=self.registry,
        )
        self.rings = Histogram(
            "hometown_search_rings",
            "Rings searched per request (1 = the requested radius was enough).",
            ("endpoint",),
            buckets=RING_BUCKETS,
            registry=self.registry,
        )
        self.updates = Counter(
            "hometown_live_status_updates",
            "Live-status updates received, by outcome.",
            ("outcome",),
            registry=self.registry,
        )
        # Every series exists from the start, at zero. Label lookups cost a lock and a
        # tuple hash each, so the request path reuses the children it looked up once.
        self._search = {s: (self.candidates.labels(s), self.rings.labels(s)) for s in SCENARIOS}
        for outcome in OUTCOMES:
            self.updates.labels(outcome)
        self.registry.register(StateCollector(state))
        # The client library's process_*, python_gc_* and python_info families.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self._series: dict[tuple[str, str, int], Any] = {}

    def observe(
        self, route: str | None, method: str, status: int, seconds: float, record: RequestRecord
    ) -> None:
        """Feed one finished request (and whatever its code noted) into the families."""
        key = (route or UNMATCHED, method, status if status == 499 else status // 100)
        series = self._series.get(key)
        if series is None:
            # A client abort keeps its own label: lumped into 4xx it would look
            # like a bad request, and it says the client gave up waiting.
            label = "499" if status == 499 else f"{key[2]}xx"
            series = self.latency.labels(key[0], method, label)
            self._series[key] = series
        series.observe(seconds)
        if record.scenario is not None:
            candidates, rings = self._search[record.scenario]
            candidates.observe(record.candidates_read)
            if record.rings:
                rings.observe(record.rings)
        if record.updates:
            for outcome, count in record.updates.items():
                self.updates.labels(outcome).inc(count)

    def exposition(self) -> bytes:
        """Everything in the Prometheus text format."""
        return generate_latest(self.registry)


class StateCollector(Collector):
    """Gauges read from the app's state when Prometheus scrapes: model and pool."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        """The model gauge and the pool gauges (the latter once the pool exists)."""
        slot = self.state.get("model")
        yield GaugeMetricFamily(
            "hometown_model_loaded",
            "1 when a click model is loaded (/v1/scenarios/hometown-ml can answer), else 0.",
            value=1.0 if slot is not None and slot.model is not None else 0.0,
        )
        ranker = self.state.get("ranker")
        yield GaugeMetricFamily(
            "hometown_feed_reranker_loaded",
            "1 when the feed reranker is loaded, else 0 (the feeds then use their fallback order).",
            value=1.0 if ranker is not None and ranker.ranker is not None else 0.0,
        )
        yield from self._transport()
        yield from self._feature_cache()
        yield from self._exposures()
        limiter = self.state.get("rate_limiter")
        yield CounterMetricFamily(
            "hometown_rate_limit_fallbacks_total",
            "Rate-limit checks made in this process because Redis did not answer.",
            value=float(getattr(limiter, "fallbacks", 0)),
        )
        yield from _collector()
        yield from self._replicas()
        pool = self.state.get("pool")
        gauges = {
            "size": "Connections the pool holds open now.",
            "in_use": "Connections acquired by requests now.",
            "idle": "Open connections waiting in the pool.",
            "max": "Most connections the pool will open (DB_POOL_SIZE).",
        }
        if pool is None:
            for name, doc in gauges.items():
                yield GaugeMetricFamily(f"hometown_db_pool_{name}", doc)
            return
        size, idle = pool.get_size(), pool.get_idle_size()
        values = {"size": size, "in_use": size - idle, "idle": idle, "max": pool.get_max_size()}
        for name, doc in gauges.items():
            yield GaugeMetricFamily(f"hometown_db_pool_{name}", doc, value=float(values[name]))

    def _replicas(self) -> Iterator[Metric]:
        """Reads by target, and each replica's state and lag (app/db/replicas.py)."""
        reads = self.state.get("reads")
        served = CounterMetricFamily(
            "hometown_db_reads",
            "Recommendation reads by where they ran: primary, or a replica's name.",
            labels=("target",),
        )
        up = GaugeMetricFamily(
            "hometown_db_replica_up",
            "1 while a replica serves reads (up and within REPLICA_MAX_LAG), else 0.",
            labels=("replica",),
        )
        lag = GaugeMetricFamily(
            "hometown_db_replica_lag_seconds",
            "Seconds of the primary's commits a replica may lack (NaN until known).",
            labels=("replica",),
        )
        if reads is not None:
            served.add_metric(("primary",), float(reads.primary_reads))
            for replica in replicas.status(reads, reads.clock()):
                name = replica["name"]
                served.add_metric((name,), float(replica["reads"]))
                up.add_metric((name,), 1.0 if replica["state"] == "up" else 0.0)
                lagged = replica["lag_s"]
                lag.add_metric((name,), float("nan") if lagged is None else float(lagged))
        yield from (served, up, lag)

    def _feature_cache(self) -> Iterator[Metric]:
        """The feature cache's hits, misses and fallbacks to PostgreSQL (app/feed/store.py)."""
        store = self.state.get("features")
        counts = {
            "hits": "Feature lookups the cache answered (one per user or stream).",
            "misses": "Feature lookups the cache did not have, read from PostgreSQL.",
            "fallbacks": "Cache calls that failed (Redis down or slow); PostgreSQL answered.",
        }
        for name, doc in counts.items():
            value = float(getattr(store, name)) if store is not None else 0.0
            yield CounterMetricFamily(f"hometown_feature_cache_{name}", doc, value=value)

    def _exposures(self) -> Iterator[Metric]:
        """The exposure writer's rows written, dropped and waiting (app/events/exposures.py)."""
        log = self.state.get("exposures")
        counts = {
            "written": "Exposures (streams shown in answers) written to PostgreSQL.",
            "dropped": "Exposures not recorded: the buffer was full, or shutdown came first.",
            "failures": "Exposure writes that failed and were retried later.",
        }
        for name, doc in counts.items():
            value = float(getattr(log, name)) if log is not None else 0.0
            yield CounterMetricFamily(f"hometown_exposures_{name}", doc, value=value)
        yield GaugeMetricFamily(
            "hometown_exposures_pending",
            "Exposures (streams shown) waiting to be written.",
            value=float(log.rows) if log is not None else 0.0,
        )

    def _transport(self) -> Iterator[Metric]:
        """Open connections and the server protocol's refusals (under `python -m app`)."""
        limits = self.state.get("transport")  # app/transport/protocol.py's Limits
        if limits is None:
            return
        connections = limits.connections
        yield GaugeMetricFamily(
            "hometown_http_connections_open",
            "Client connections open now (MAX_CONNECTIONS are served at once).",
            value=float(len(connections) if connections is not None else 0),
        )
        refused = CounterMetricFamily(
            "hometown_http_connections_refused",
            "Connections the server refused or cut off, by reason: head_timeout,"
            " body_timeout (408), over_capacity (503), descriptor_ceiling (reset),"
            " head_too_large (431).",
            labels=("reason",),
        )
        for reason, count in limits.refused.items():
            refused.add_metric((reason,), float(count))
        yield refused


def _collector() -> Iterator[Metric]:
    """The cyclic collector's time by generation and the objects frozen (app/heap.py).

    The time counts only in a process that installed the clock (`python -m app`).
    """
    seconds = CounterMetricFamily(
        "hometown_gc_seconds",
        "Seconds the cyclic garbage collector ran, by generation.",
        labels=("generation",),
    )
    for generation, value in enumerate(CLOCK.seconds):
        seconds.add_metric((str(generation),), value)
    yield seconds
    yield GaugeMetricFamily(
        "hometown_gc_frozen_objects",
        "Objects frozen after start-up (gc.freeze): later collections skip them.",
        value=float(gc.get_freeze_count()),
    )

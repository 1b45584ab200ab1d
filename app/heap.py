"""The cyclic garbage collector, tuned for a long-running server (`python -m app` only).

A home-feed request allocates thousands of container objects (records, dicts,
lists, frames), and CPython's default thresholds (700, 10, 10) answer that
with young collections several times a request and a full one every few
hundred requests. A full collection walks every tracked object in the
process, most of them the modules, classes and loaded models that live as
long as it does (about 95,000 after start-up, some 50 ms a walk here), and it
lands on whichever requests are running. Measured on the 1M-stream benchmark
world (BENCHMARKS.md), 400 `home_feed` requests one at a time: 173 young, 16
middle and 1 full collection with the defaults; 1 young collection (13 ms)
with the settings here. An earlier machine's 60 s wrk run at 16 connections
spent 2.4 s of the server's time in 1,771 collections by default, 0.4 s in 6
with rarer ones, and its one-at-a-time p99 fell from 64 to 35 ms.

So, once start-up is done, `freeze_startup_heap` moves everything alive then
into the permanent generation (`gc.freeze`): later collections no longer walk
it, and the start-up objects are not garbage anyway. Garbage made later is
still collected: what a request leaves in cycles is young, and
`GEN0_THRESHOLD` only makes young collections rarer, each over more objects,
which costs the same per object and less per collection. The later
generations keep CPython's own ratios.

Tests build many apps in one process, so this is for the server process alone:
`python -m app` calls `tune_collector` and appends `freeze_startup_heap` to the
app's start-up hooks. `/metrics` shows the collector's work either way
(`hometown_gc_seconds_total`, `hometown_gc_frozen_objects`).
"""

from __future__ import annotations

import gc
import time
from typing import Any

#: Allocations (minus deallocations) of container objects between young collections.
#: CPython's default is 700; at 20,000 the benchmark's home-feed requests see
#: one young collection in hundreds instead of several in each.
GEN0_THRESHOLD = 20_000


class CollectorClock:
    """Seconds the cyclic collector ran, by generation, from `gc.callbacks`.

    Two clock reads per collection: nothing next to the collection itself.
    """

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        """`gc.callbacks` calls this at the start and the stop of every collection."""
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started


#: The one clock of this process (the collector is the process's too).
CLOCK = CollectorClock()


def tune_collector() -> None:
    """Rarer young collections, and the clock that `/metrics` reads."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, older, oldest)
    if CLOCK not in gc.callbacks:
        gc.callbacks.append(CLOCK)


def freeze_startup_heap() -> None:
    """Collect what start-up left behind, then freeze the rest for good.

    A Litestar start-up hook: it runs after every lifespan hook has loaded what
    it loads (the pool, the models, the feature store).
    """
    gc.collect()
    gc.freeze()

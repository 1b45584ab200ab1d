"""The server's collector: rarer young collections, a frozen start-up heap, no lost garbage."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from app import heap


@pytest.fixture
def collector() -> Iterator[None]:
    """Put the process's collector back as it was: other tests share it."""
    threshold = gc.get_threshold()
    callbacks = list(gc.callbacks)
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    gc.callbacks[:] = callbacks


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_tuning_raises_the_young_threshold_keeps_the_ratios_and_times_collections(
    collector: None,
) -> None:
    _, older, oldest = gc.get_threshold()
    heap.tune_collector()
    heap.tune_collector()  # twice: still one clock
    assert gc.get_threshold() == (heap.GEN0_THRESHOLD, older, oldest)
    assert gc.callbacks.count(heap.CLOCK) == 1
    before = list(heap.CLOCK.seconds)
    gc.collect(0)
    gc.collect(2)
    assert heap.CLOCK.seconds[0] > before[0]
    assert heap.CLOCK.seconds[2] > before[2]


def test_a_frozen_heap_still_collects_cycles_made_afterwards(collector: None) -> None:
    heap.freeze_startup_heap()
    assert gc.get_freeze_count() > 0
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    assert gone() is not None  # only the cyclic collector can free a cycle
    gc.collect()
    assert gone() is None

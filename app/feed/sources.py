"""Stage 1's sources, their sizes, and the union of their lists.

Training (ml/feed/candidates.py) and serving (app/feed/service.py) gather with
the same sizes and merge the same way, so the reranker sees at serving time the
kind of candidate lists it was trained on: each source's rank is one of its
features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

CF_K = 200
NEAR_K = 50
TRENDING_K = 50
TRENDING_LANGUAGE_K = 20
OWN_K = 20
#: The sources the reranker was trained with, in round-robin order.
SOURCES = ("cf", "near", "trending", "trending_language", "own")
#: Serving only: for a viewer with no history (no embedding, no channels), the
#: live streams most viewers have watched. Not a reranker feature.
POPULAR = "popular"
POPULAR_K = 50


def union(lists: Mapping[str, Sequence[str]]) -> tuple[list[str], dict[str, dict[str, int]]]:
    """The streams of all lists once each, in round-robin order, and each source's ranks.

    Round robin (first of every source, then second of every source, ...) in the
    order of `lists`; a stream keeps its first place. `ranks[source][stream]` is
    the 1-based rank within that source.
    """
    merged: dict[str, None] = {}
    longest = max((len(items) for items in lists.values()), default=0)
    for position in range(longest):
        for items in lists.values():
            if position < len(items):
                merged.setdefault(items[position], None)
    ranks = {
        source: {stream: rank for rank, stream in enumerate(items, start=1)}
        for source, items in lists.items()
    }
    return list(merged), ranks

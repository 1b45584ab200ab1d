"""The feed evaluation's metrics: stage 1's recall of every watched stream, stage 2's order.

Both rest on ml/metrics.py's conventions (linear gain, a cut-off past the end of
a list counts non-relevant); what is particular to the feed is stage 1's
denominator, which counts every stream the user watched, found or not.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ml import metrics

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

STAGE1_KS = (20, 50, 100, 200)
STAGE1_NDCG_K = 20
STAGE2_K = 10


def labels_of(
    items: IntArray, grades: FloatArray, got: IntArray
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """The grade of every stream in `got` (0 if unwatched), and which of `items` it holds.

    `items` must be sorted and unique (a CSR row's indices are): one binary search
    per retrieved stream instead of a dictionary built per user.
    """
    at = np.searchsorted(items, got)
    inside = at < len(items)
    found = np.zeros(len(got), dtype=bool)
    found[inside] = items[at[inside]] == got[inside]
    labels = np.zeros(len(got))
    labels[found] = grades[at[found]]
    hit = np.zeros(len(items), dtype=bool)
    hit[at[found]] = True
    return labels, hit


def stage1(
    relevant: list[tuple[IntArray, FloatArray]], ranked: dict[str, list[IntArray]]
) -> dict[str, dict[str, float]]:
    """Recall@K and NDCG@20 per source; `relevant` is each query's (sorted streams, grades).

    Each relevance list is the retrieved streams' grades, padded with zeros to
    the deepest cut-off, then the grades of the watched streams no source
    retrieved: a cut-off sees only what was retrieved, while recall's and
    NDCG's denominators count every watched stream.
    """
    depth = max(STAGE1_KS)
    out: dict[str, dict[str, float]] = {}
    for name, lists in ranked.items():
        rows = []
        for (items, grades), got in zip(relevant, lists, strict=True):
            got = got[:depth]
            got_labels, hit = labels_of(items, grades, got)
            rows.append(np.concatenate([got_labels, np.zeros(depth - len(got)), grades[~hit]]))
        values = metrics.per_user_metrics(rows, ks=(*STAGE1_KS, STAGE1_NDCG_K))
        out[name] = {f"recall@{k}": float(values[f"recall@{k}"].mean()) for k in STAGE1_KS}
        out[name][f"ndcg@{STAGE1_NDCG_K}"] = float(values[f"ndcg@{STAGE1_NDCG_K}"].mean())
        out[name]["users"] = len(rows)
    return out


def stage2_metrics(per_query: dict[str, list[FloatArray]]) -> dict[str, dict[str, FloatArray]]:
    """Per ranker, per-user NDCG@10, Recall@10, MAP and MRR (labels in ranked order)."""
    out = {}
    for name, lists in per_query.items():
        values = metrics.per_user_metrics(lists, ks=(STAGE2_K,))
        out[name] = {
            f"ndcg@{STAGE2_K}": values[f"ndcg@{STAGE2_K}"],
            f"recall@{STAGE2_K}": values[f"recall@{STAGE2_K}"],
            "map": values["map"],
            "mrr": values["mrr"],
        }
    return out

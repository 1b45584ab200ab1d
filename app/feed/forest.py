"""The reranker's trees, evaluated with numpy: XGBoost's scores and contributions without XGBoost.

Serving needs two things from the LambdaRank booster: a score for each of some
300 candidates, and the approximate contributions (Saabas) of the 30 shown,
for their reasons. Loading XGBoost for that costs every server process about
27 MB (XGBoost, and the `scipy.sparse` its `core.py` imports whatever happens),
and each call crosses into C through a DMatrix. A forest of a few dozen
shallow trees is small enough to walk with numpy: all rows and all trees step
one level at a time, so a call is `depth` rounds of a few array operations,
whatever the number of rows.

The input is XGBoost's documented JSON model (`Booster.save_raw("json")`),
read with the standard library; `python -m ml feed train` writes it into the
artifact (app/feed/artifact.py). The evaluator reproduces XGBoost exactly where
XGBoost is exact: a row goes left when `value < split_condition` in float32, and
a missing value (NaN) follows the node's default direction. Leaf values are
summed in float32 as XGBoost does, so scores agree to float32 rounding; the
tests compare both outputs with XGBoost's own on random models
(tests/unit/test_feed_forest.py).

Layout. The nodes of all trees sit in flat arrays, renumbered so a node's right
child is its left child + 1. A leaf's "left child" is the node before it and its
threshold is NaN, so every value, missing or infinite, steps "right" onto the
leaf itself: a row that reaches a leaf early stays there for the rounds left.

Missing values cost no test of their own: a walk reads each row twice over,
once with NaN as -inf and once as +inf, and each split reads its feature from
the copy that sends NaN its default way (`column`). -inf goes left of every
finite threshold and +inf right, which is where XGBoost sends a missing value;
a real infinity is not NaN and is compared as it is, in either copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Forest", "ForestError"]

FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.intp]


class ForestError(ValueError):
    """The JSON model is not one this evaluator reproduces; the message says what is not."""


@dataclass(frozen=True, eq=False)
class Forest:
    """A tree ensemble whose output is the sum of its leaves plus a base score (a margin).

    Attributes:
        width: the number of input features.
        depth: the deepest leaf's depth (the number of rounds a walk takes).
        roots: each tree's root node.
        feature, threshold, default_left, left: per node, the split (leaves:
            feature 0, threshold NaN, default right, left = the node before).
        leaf_value: per node, the value a row that ends there adds (0 for splits).
        mean: per node, the cover-weighted mean of the leaves below it, as
            XGBoost computes it for approximate contributions.
        base_score: the global bias, in margin units.
        column: per node, where the walk reads its feature: `feature` in the
            copy of the row with NaN as -inf (default left), `width + feature`
            in the one with NaN as +inf (default right).
    """

    width: int
    depth: int
    roots: IndexArray
    feature: IndexArray
    threshold: FloatArray
    default_left: npt.NDArray[np.bool_]
    left: IndexArray
    leaf_value: FloatArray
    mean: npt.NDArray[np.float64]
    base_score: float
    column: IndexArray

    @classmethod
    def from_xgboost(cls, model: Mapping[str, Any]) -> Forest:
        """Read a parsed XGBoost JSON model (`json.loads(booster.save_raw("json"))`).

        Raises:
            ForestError: not a single-output gbtree ranking model with scalar
                leaves and numerical splits, or a malformed tree.
        """
        try:
            learner = model["learner"]
            objective = str(learner["objective"]["name"])
            params = learner["learner_model_param"]
            booster = learner["gradient_booster"]
            width = int(params["num_feature"])
            targets = int(params.get("num_target", 1))
            classes = int(params.get("num_class", 0))
            base_score = _base_score(params["base_score"])
            kind = str(booster["name"])
            trees = booster["model"]["trees"] if kind == "gbtree" else []
        except (KeyError, TypeError, ValueError) as exc:
            raise ForestError(f"not an XGBoost JSON model ({type(exc).__name__}: {exc})") from exc
        if kind != "gbtree":
            raise ForestError(f"booster {kind!r}: only gbtree is supported")
        if not objective.startswith("rank:"):
            # Other objectives transform the margin (a sigmoid, an exp): not what ranks here.
            raise ForestError(f"objective {objective!r} is not a ranking objective")
        if targets > 1 or classes > 1:
            raise ForestError("a model with several outputs is not a ranker")
        parts = [_tree(tree, index, width) for index, tree in enumerate(trees)]
        return cls._assemble(width, base_score, parts)

    @classmethod
    def _assemble(cls, width: int, base_score: float, parts: Sequence[_Tree]) -> Forest:
        sizes = [len(part.feature) for part in parts]
        offsets = np.cumsum([0, *sizes], dtype=np.intp)[:-1]
        total = sum(sizes)

        def joined(name: str, dtype: Any) -> Any:
            arrays = [getattr(part, name) for part in parts]
            return np.concatenate(arrays).astype(dtype) if arrays else np.empty(0, dtype)

        left = joined("left", np.intp)
        left += np.repeat(offsets, sizes) if total else 0
        return cls(
            width=width,
            depth=max((part.depth for part in parts), default=0),
            roots=offsets,
            feature=joined("feature", np.intp),
            threshold=joined("threshold", np.float32),
            default_left=joined("default_left", np.bool_),
            left=left,
            leaf_value=joined("leaf_value", np.float32),
            mean=joined("mean", np.float64),
            base_score=base_score,
            column=joined("feature", np.intp)
            + np.where(joined("default_left", np.bool_), 0, width),
        )

    @property
    def trees(self) -> int:
        """How many trees the forest sums."""
        return len(self.roots)

    def score(self, features: npt.ArrayLike) -> FloatArray:
        """The margin of every row of `features` (n × width): XGBoost's `inplace_predict`."""
        matrix = self._matrix(features)
        if matrix.shape[0] == 0:
            return np.empty(0, dtype=np.float32)
        leaves = self._walk(matrix, None)
        total = self.leaf_value[leaves].sum(axis=1, dtype=np.float32)
        scores: FloatArray = total + np.float32(self.base_score)
        return scores

    def contributions(self, features: npt.ArrayLike) -> FloatArray:
        """Each feature's approximate share of each row's margin: (n, width + 1), bias last.

        Saabas's method, as XGBoost's `pred_contribs=True, approx_contribs=True`:
        along a row's path, the change in the cover-weighted mean at each split
        is credited to that split's feature; the bias column holds the base
        score plus every tree's root mean. A row's contributions sum to its score.
        """
        matrix = self._matrix(features)
        rows = matrix.shape[0]
        stride = self.width + 1
        totals = np.zeros(rows * stride, dtype=np.float64)
        if rows:
            self._walk(matrix, totals)
        out = totals.reshape(rows, stride)
        out[:, self.width] += self.base_score + float(self.mean[self.roots].sum())
        return out.astype(np.float32)

    def _matrix(self, features: npt.ArrayLike) -> FloatArray:
        matrix: FloatArray = np.asarray(features, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != self.width:
            raise ValueError(f"features must have shape (n, {self.width}), got {matrix.shape}")
        return matrix

    def _walk(self, matrix: FloatArray, credit: npt.NDArray[np.float64] | None) -> IndexArray:
        """Each row's leaf in each tree (n × trees); with `credit`, add the contributions to it."""
        rows = matrix.shape[0]
        missing = np.isnan(matrix)
        both = np.concatenate(
            [np.where(missing, -np.inf, matrix), np.where(missing, np.inf, matrix)], axis=1
        )
        flat = both.astype(np.float32).reshape(-1)
        row_start = (np.arange(rows, dtype=np.intp) * (2 * self.width))[:, None]
        nodes: IndexArray = np.broadcast_to(self.roots, (rows, self.trees))
        if credit is not None:
            credit_start = (np.arange(rows, dtype=np.intp) * (self.width + 1))[:, None]
        for _ in range(self.depth):
            value = flat[row_start + self.column[nodes]]
            following: IndexArray = self.left[nodes] + ~(value < self.threshold[nodes])
            if credit is not None:
                # A leaf steps to itself: its change is 0, whatever feature it names.
                change = self.mean[following] - self.mean[nodes]
                credit += np.bincount(
                    (credit_start + self.feature[nodes]).reshape(-1),
                    weights=change.reshape(-1),
                    minlength=credit.size,
                )
            nodes = following
        return nodes


@dataclass(frozen=True)
class _Tree:
    """One tree's nodes in walk order (see the module docstring), numbered from 0."""

    feature: list[int]
    threshold: list[float]
    default_left: list[bool]
    left: list[int]
    leaf_value: list[float]
    mean: list[float]
    depth: int


def _tree(tree: Mapping[str, Any], index: int, width: int) -> _Tree:
    """Renumber one JSON tree breadth first, so siblings sit side by side."""
    try:
        lefts = [int(n) for n in tree["left_children"]]
        rights = [int(n) for n in tree["right_children"]]
        splits = [int(n) for n in tree["split_indices"]]
        conditions = [float(v) for v in tree["split_conditions"]]
        defaults = [bool(v) for v in tree["default_left"]]
        hessians = [float(v) for v in tree["sum_hessian"]]
        types = [int(v) for v in tree.get("split_type", [])]
        leaf_size = int(tree.get("tree_param", {}).get("size_leaf_vector", 1))
    except (KeyError, TypeError, ValueError) as exc:
        raise ForestError(f"tree {index} is malformed ({type(exc).__name__}: {exc})") from exc
    count = len(lefts)
    if count == 0 or any(len(a) != count for a in (rights, splits, conditions, defaults, hessians)):
        raise ForestError(f"tree {index} is malformed: its node arrays differ in length")
    if leaf_size > 1:
        raise ForestError(f"tree {index} has vector leaves: only scalar leaves are supported")
    if any(types):
        raise ForestError(f"tree {index} has categorical splits: only numerical ones are supported")

    order, depth_of, new_id = [0], {0: 0}, {0: 0}
    position = 0
    while position < len(order):
        node = order[position]
        position += 1
        if lefts[node] == -1:
            continue
        for child in (lefts[node], rights[node]):
            if not 0 <= child < count or child in new_id:
                raise ForestError(f"tree {index} is malformed: node {node} has child {child}")
            new_id[child] = len(order)
            depth_of[child] = depth_of[node] + 1
            order.append(child)
        if not 0 <= splits[node] < width:
            raise ForestError(f"tree {index} splits on feature {splits[node]} of {width}")

    mean = _means(order, lefts, rights, conditions, hessians)
    walk = _Tree([], [], [], [], [], [], depth=max(depth_of.values()))
    for node in order:
        leaf = lefts[node] == -1
        walk.feature.append(0 if leaf else splits[node])
        walk.threshold.append(float("nan") if leaf else conditions[node])
        walk.default_left.append(not leaf and defaults[node])
        walk.left.append(new_id[node] - 1 if leaf else new_id[lefts[node]])
        walk.leaf_value.append(conditions[node] if leaf else 0.0)
        walk.mean.append(mean[node])
    return walk


def _means(
    order: list[int],
    lefts: list[int],
    rights: list[int],
    conditions: list[float],
    hessians: list[float],
) -> dict[int, float]:
    """Cover-weighted leaf means, children before parents (the reverse breadth-first order).

    XGBoost stores a leaf's value in `split_conditions`; a split's mean is its
    children's means weighted by their hessian sums (its cover).
    """
    mean: dict[int, float] = {}
    for node in reversed(order):
        left, right = lefts[node], rights[node]
        if left == -1:
            mean[node] = conditions[node]
        else:
            weighted = mean[left] * hessians[left] + mean[right] * hessians[right]
            mean[node] = weighted / hessians[node] if hessians[node] else 0.0
    return mean


def _base_score(text: object) -> float:
    """XGBoost 3 writes `"[-4.7E-8]"` (one per target), XGBoost 2 `"5E-1"`."""
    value = str(text).strip().removeprefix("[").removesuffix("]")
    parts = [part for part in value.split(",") if part.strip()]
    if len(parts) != 1:
        raise ValueError(f"base_score {text!r} is not a single number")
    return float(parts[0])

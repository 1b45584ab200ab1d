"""How the click model enters the HOMETOWN score: `weight · min(P(click), cap)`.

The seed's formula adds `ml_weight · P(click)` (0.5 by default). With P mostly
between 2% and 30% that moves a score of 1 to 15 by a few hundredths, so
`/hometown-ml` barely reorders anything. Training (`ml train`, ml/term.py) can
fit the term instead: it tries weights and caps on held-out impressions, keeps
the pair with the best nDCG@10 (the seed's formula is one of the pairs tried),
and stores it in the model artifact's metadata under `score_term`.

The term is monotone in P(click) and never negative, and its largest value is
`weight · cap`. That maximum is what the exact search adds to the bound of every
stream it has not read (search.py), so the answer stays exact whatever the
model says. The cap is there for the search's sake: a row's score lies between
its score without the term and that plus the maximum, and a tight maximum lets
the search stop early. Training chooses it below a budget (`--ml-room`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.hometown.scoring import FloatArray

#: Where the artifact's metadata keeps a fitted term.
METADATA_KEY = "score_term"


@dataclass(frozen=True)
class MLTerm:
    """`weight · min(P(click), cap)`, with where it came from.

    Attributes:
        weight: the multiplier (>= 0).
        cap: probabilities above it count as `cap` (0 < cap <= 1).
        source: "formula" (the settings' `ml_weight`, no cap) or "fitted" (training chose it).
    """

    weight: float
    cap: float = 1.0
    source: str = "formula"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"the ML term's weight must be a number >= 0, got {self.weight}")
        if not 0 < self.cap <= 1:
            raise ValueError(f"the ML term's cap must be in (0, 1], got {self.cap}")

    @classmethod
    def formula(cls, ml_weight: float) -> MLTerm:
        """The seed's term: `ml_weight · P(click)`."""
        return cls(ml_weight, 1.0, "formula")

    @classmethod
    def of_model(cls, metadata: Mapping[str, Any], ml_weight: float) -> MLTerm:
        """The term a model's metadata records, else the seed's formula with `ml_weight`."""
        stored = metadata.get(METADATA_KEY)
        if not stored:
            return cls.formula(ml_weight)
        return cls(float(stored["weight"]), float(stored["cap"]), "fitted")

    @classmethod
    def in_force(cls, metadata: Mapping[str, Any], setting: str, ml_weight: float) -> MLTerm:
        """The term `/hometown-ml` adds: the model's, unless the `ML_TERM` setting is "formula"."""
        if setting == "formula":
            return cls.formula(ml_weight)
        return cls.of_model(metadata, ml_weight)

    def __call__(self, probability: FloatArray) -> FloatArray:
        """The term for each probability."""
        if self.cap >= 1.0:
            return self.weight * probability
        return self.weight * np.minimum(probability, self.cap)

    @property
    def maximum(self) -> float:
        """The largest value the term can take: what the exact search bounds unseen rows by."""
        return self.weight * self.cap

    def describe(self) -> str:
        """The term as a formula, for the stats endpoint and the reports."""
        if self.cap >= 1.0:
            return f"{self.weight:g}·P(click)"
        return f"{self.weight:g}·min(P(click), {self.cap:g})"

    def to_metadata(self) -> dict[str, float]:
        """What the artifact stores under `METADATA_KEY`."""
        return {"weight": self.weight, "cap": self.cap}

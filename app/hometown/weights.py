"""The score's weights: one place, read from settings, shared by SQL bounds and numpy.

The seed formula, with every constant named here:

    proximity_boost = 1 / (1 + distance_km)
    base  = quality_weight · stream_quality_score
          + language_bonus · [same language]
          + category_bonus · [category in the viewer's preferred]
          + min(avg_viewer_count / popularity_divisor, popularity_cap)
    score = proximity_weight · proximity_boost · (1 + local_preference_strength)
          + base_weight · base + ml_weight · ml_probability
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

FORMULA = (
    "score = proximity_weight·(1/(1 + distance_km))·(1 + local_preference_strength)"
    " + base_weight·(quality_weight·stream_quality_score + language_bonus·[same language]"
    " + category_bonus·[preferred category] + min(avg_viewer_count/popularity_divisor,"
    " popularity_cap)) + ml_weight·ml_probability"
)


class Weights(BaseModel):
    """Non-negative weights (the exact search's bounds rely on that)."""

    model_config = ConfigDict(frozen=True)

    proximity_weight: float = Field(default=1.5, ge=0)
    base_weight: float = Field(default=1.0, ge=0)
    ml_weight: float = Field(default=0.5, ge=0)
    quality_weight: float = Field(default=1.0, ge=0)
    language_bonus: float = Field(default=1.0, ge=0)
    category_bonus: float = Field(default=0.5, ge=0)
    popularity_divisor: float = Field(default=1000.0, gt=0)
    popularity_cap: float = Field(default=2.0, ge=0)

"""A/B experiments: declared in settings, assigned per user by a stable hash, sticky.

`EXPERIMENTS` is a JSON list; each experiment names the scenarios it covers and
its variants with their traffic shares, and says what each variant serves:

    [{"name": "hometown-ml", "scenarios": ["hometown"],
      "variants": [{"name": "basic", "share": 0.5, "hometown": "basic"},
                   {"name": "ml", "share": 0.5, "hometown": "ml"}]}]

`hometown` picks the seed formula (`basic`) or the formula with the click
model's term (`ml`) on `/v1/scenarios/hometown`; `feed_order` picks the
reranker's order or the fallback order on `/home_feed` and `/category_feed`, and
`feed_reranker` another reranker file for a `reranker` variant (so two rerankers
can be compared: `{"feed_order": "reranker", "feed_reranker": "candidate.bin"}`,
relative to MODEL_PATH's directory, loaded at start and on SIGHUP). The first
variant is the control unless `control` names another.

Assignment: the SHA-256 of the experiment's name and the user id, read as a
number in [0, 1), falls in one variant's slice of the shares. So a user always
lands in the same variant of an experiment (sticky, in every process and after
every restart), users are split independently across experiments, and only a
change of the shares (or of the name) moves anyone. Signed-out HOMETOWN viewers
have no id and are in no experiment. A scenario belongs to at most one
experiment at a time.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scenario = Literal["hometown", "home_feed", "category_feed"]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
#: How far the shares may sum from 1 (decimal shares like 0.1 + 0.2 do not add exactly).
SHARE_SLACK = 1e-9


class Variant(BaseModel):
    """One arm: its name, its share of the users, and what it serves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    share: float = Field(gt=0, le=1)
    #: On `/v1/scenarios/hometown`: the seed formula, or with the click model's term.
    hometown: Literal["basic", "ml"] | None = None
    #: On the feeds: the reranker's order, or the fallback order (no reranker).
    feed_order: Literal["reranker", "fallback"] | None = None
    #: With `feed_order: reranker`: this reranker file instead of the default one
    #: (relative to MODEL_PATH's directory unless absolute).
    feed_reranker: Annotated[str, Field(min_length=1, max_length=500)] | None = None


class Experiment(BaseModel):
    """An experiment over one or more scenarios, with variants that share the users."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    scenarios: tuple[Scenario, ...] = Field(min_length=1)
    variants: tuple[Variant, ...] = Field(min_length=2)
    control: Name | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment {self.name!r}: variant names repeat ({names})")
        total = sum(v.share for v in self.variants)
        if abs(total - 1.0) > SHARE_SLACK:
            raise ValueError(f"experiment {self.name!r}: the shares add up to {total:g}, not 1")
        if self.control is not None and self.control not in names:
            raise ValueError(f"experiment {self.name!r}: control {self.control!r} is no variant")
        if "hometown" in self.scenarios and any(v.hometown is None for v in self.variants):
            raise ValueError(f"experiment {self.name!r}: every variant needs `hometown`")
        feeds = {"home_feed", "category_feed"} & set(self.scenarios)
        if feeds and any(v.feed_order is None for v in self.variants):
            raise ValueError(f"experiment {self.name!r}: every variant needs `feed_order`")
        for v in self.variants:
            if v.feed_reranker is not None and (not feeds or v.feed_order != "reranker"):
                raise ValueError(
                    f"experiment {self.name!r}: variant {v.name!r} names `feed_reranker`,"
                    " which needs a feed scenario and `feed_order: reranker`"
                )
        return self

    @property
    def control_variant(self) -> str:
        """The variant the others are compared with."""
        return self.control or self.variants[0].name

    def assign(self, user_id: str) -> Variant:
        """The variant `user_id` is in: the same one every time (see the module docstring)."""
        point = unit_hash(f"{self.name}\x00{user_id}")
        edge = 0.0
        for variant in self.variants:
            edge += variant.share
            if point < edge:
                return variant
        return self.variants[-1]  # shares that add up to a hair under 1


def variant_rerankers(experiments: tuple[Experiment, ...]) -> tuple[str, ...]:
    """Every reranker file a variant names, once each, in declaration order."""
    names = [v.feed_reranker for e in experiments for v in e.variants if v.feed_reranker]
    return tuple(dict.fromkeys(names))


def unit_hash(text: str) -> float:
    """A number in [0, 1) from the first 8 bytes of SHA-256: uniform, stable everywhere."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def check_disjoint(experiments: tuple[Experiment, ...]) -> tuple[Experiment, ...]:
    """The experiments, if no two share a name or a scenario."""
    seen: dict[str, str] = {}
    names = [e.name for e in experiments]
    if len(set(names)) != len(names):
        raise ValueError(f"experiment names repeat ({names})")
    for experiment in experiments:
        for scenario in experiment.scenarios:
            if scenario in seen:
                raise ValueError(
                    f"scenario {scenario!r} is in two experiments ({seen[scenario]!r} and"
                    f" {experiment.name!r}): a user could not be in both"
                )
            seen[scenario] = experiment.name
    return experiments


def for_scenario(
    experiments: tuple[Experiment, ...], scenario: str, user_id: str | None
) -> tuple[Experiment, Variant] | None:
    """The experiment covering `scenario` and the user's variant in it, if any."""
    if user_id is None:
        return None
    for experiment in experiments:
        if scenario in experiment.scenarios:
            return experiment, experiment.assign(user_id)
    return None

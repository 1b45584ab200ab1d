"""Experiment assignment: deterministic, sticky, proportional, independent; bad ones refused."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import ValidationError

from app.experiments import Experiment, for_scenario, unit_hash, variant_rerankers
from app.settings import Settings


def _experiment(name: str = "ht", shares: tuple[float, ...] = (0.5, 0.5), **extra: Any) -> Any:
    variants = [
        {"name": f"v{i}", "share": share, "hometown": "basic" if i == 0 else "ml"}
        for i, share in enumerate(shares)
    ]
    return {"name": name, "scenarios": ["hometown"], "variants": variants, **extra}


USERS = [f"user_{i:06d}" for i in range(20_000)]


def test_assignment_is_deterministic_and_sticky_across_declarations() -> None:
    first = Experiment.model_validate(_experiment())
    again = Experiment.model_validate(json.loads(json.dumps(_experiment())))
    assert [first.assign(u).name for u in USERS[:500]] == [
        again.assign(u).name for u in USERS[:500]
    ]
    # A hand-checked point: the hash of "ht\0user_000000" in [0, 1) picks the slice.
    point = unit_hash("ht\x00user_000000")
    assert first.assign("user_000000").name == ("v0" if point < 0.5 else "v1")


@pytest.mark.parametrize("shares", [(0.5, 0.5), (0.1, 0.2, 0.7), (0.9, 0.1)])
def test_users_split_in_proportion_to_the_shares(shares: tuple[float, ...]) -> None:
    experiment = Experiment.model_validate(_experiment(shares=shares))
    counts = {f"v{i}": 0 for i in range(len(shares))}
    for user in USERS:
        counts[experiment.assign(user).name] += 1
    n = len(USERS)
    for i, share in enumerate(shares):
        sd = math.sqrt(n * share * (1 - share))
        assert abs(counts[f"v{i}"] - n * share) < 4 * sd, (counts, shares)


def test_two_experiments_split_users_independently() -> None:
    a = Experiment.model_validate(_experiment("a"))
    b = Experiment.model_validate(_experiment("b"))
    both = sum(1 for u in USERS if a.assign(u).name == "v1" and b.assign(u).name == "v1")
    expected, sd = len(USERS) / 4, math.sqrt(len(USERS) * 0.25 * 0.75)
    assert abs(both - expected) < 4 * sd


def test_only_identified_users_of_a_covered_scenario_are_in_it() -> None:
    settings = Settings(EXPERIMENTS=json.dumps([_experiment()]))
    assert for_scenario(settings.experiments, "hometown", None) is None
    assert for_scenario(settings.experiments, "home_feed", "user_000001") is None
    found = for_scenario(settings.experiments, "hometown", "user_000001")
    assert found is not None and found[0].name == "ht" and found[0].control_variant == "v0"


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ([_experiment(shares=(0.5, 0.6))], "add up to 1.1"),
        ([_experiment(shares=(1.0,))], "at least 2"),
        ([_experiment(control="nope")], "control 'nope'"),
        ([_experiment(), _experiment("other")], "two experiments"),
        ([_experiment(), _experiment()], "names repeat"),
        (
            [{"name": "f", "scenarios": ["home_feed"], "variants": [
                {"name": "a", "share": 0.5},
                {"name": "b", "share": 0.5, "feed_order": "fallback"}]}],
            "feed_order",
        ),
        (
            [{"name": "f", "scenarios": ["home_feed"], "variants": [
                {"name": "a", "share": 0.5, "feed_order": "reranker"},
                {"name": "b", "share": 0.5, "feed_order": "fallback", "feed_reranker": "x.bin"}]}],
            "feed_reranker",
        ),
        (
            [{**_experiment(), "variants": [
                {"name": "a", "share": 0.5, "hometown": "basic"},
                {"name": "b", "share": 0.5, "hometown": "ml", "feed_reranker": "x.bin"}]}],
            "needs a feed scenario",
        ),
        ([{**_experiment(), "scenarios": ["nowhere"]}], "scenarios"),
        ([{**_experiment(), "colour": "red"}], "colour"),
    ],
)  # fmt: skip
def test_bad_declarations_are_refused_naming_the_problem(
    declaration: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(EXPERIMENTS=json.dumps(declaration))
    assert message in str(caught.value)


def test_the_rerankers_variants_name_are_listed_once_each() -> None:
    declared = [
        {"name": "f", "scenarios": ["home_feed", "category_feed"], "variants": [
            {"name": "a", "share": 0.4, "feed_order": "reranker", "feed_reranker": "b.bin"},
            {"name": "b", "share": 0.3, "feed_order": "reranker"},
            {"name": "c", "share": 0.3, "feed_order": "reranker", "feed_reranker": "b.bin"}]},
    ]  # fmt: skip
    settings = Settings(EXPERIMENTS=json.dumps(declared))
    assert variant_rerankers(settings.experiments) == ("b.bin",)
    assert variant_rerankers(()) == ()

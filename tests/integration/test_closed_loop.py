"""The closed loop: simulated viewers against a real app, and the report on what they did."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from app.features import artifact
from app.main import create_app
from app.settings import Settings
from ml import closed_loop, experiment
from seed.generate import generate
from seed.loader import load
from tests.support.models import saved_model

API_KEY = "closed-loop-key-0123456789"
DECLARED = {
    "name": "loop-test",
    "scenarios": ["hometown"],
    "variants": [
        {"name": "basic", "share": 0.5, "hometown": "basic"},
        {"name": "ml", "share": 0.5, "hometown": "ml"},
    ],
}
WORLD_SEED = 9


@pytest.fixture
def generated(db_url: str) -> str:
    """A world the generator drew with `WORLD_SEED`: 200 users, 80 streams, half live."""
    load(db_url, generate(200, 80, 1000, seed=WORLD_SEED, live_share=0.5))
    return db_url


def test_simulated_viewers_close_the_loop(generated: str, tmp_path: Path) -> None:
    """Every list asked for is logged, every event sent is recorded, and the report counts
    exactly the impressions, clicks and minutes the viewers produced; the lists each
    variant would show, computed in-process, are the ones the server served."""
    _, model_path = saved_model(tmp_path)
    settings = Settings(
        DATABASE_URL=generated,
        API_KEY=API_KEY,
        MODEL_PATH=str(model_path),
        EXPERIMENTS=json.dumps([DECLARED]),
        EXPOSURE_FLUSH_SECONDS=0.2,
    )
    declared = experiment.find(settings.experiments, "loop-test")
    options = closed_loop.Options(
        url="http://testserver.local",
        experiment=declared,
        database_url=generated,
        api_key=API_KEY,
        sessions=150,
        connections=3,
        seed=3,
        world_seed=WORLD_SEED,
        paired_sessions=60,
    )
    viewers = closed_loop.load_viewers(generated, WORLD_SEED)
    model = artifact.load(model_path)

    async def run() -> tuple[closed_loop.Outcome, object]:
        headers = {"x-api-key": API_KEY}
        async with AsyncTestClient(create_app(settings)) as client:
            client.headers.update(headers)
            outcome = await closed_loop.simulate(options, viewers, client)
            logged = await closed_loop.wait_for_exposures(generated, outcome.request_ids)
            assert logged == len(outcome.request_ids) == 150
            pair = await closed_loop.pair(options, viewers, outcome, settings, model)
        return outcome, pair

    outcome, pair = asyncio.run(run())
    assert outcome.sessions == 150 and not outcome.failed_requests
    assert set(outcome.tallies) == {"basic", "ml"}
    assert outcome.events_sent == outcome.events_recorded > 0 and not outcome.event_problems
    clicks = sum(t.clicks for t in outcome.tallies.values())
    impressions = sum(t.impressions for t in outcome.tallies.values())
    assert 0 < clicks < impressions

    users = asyncio.run(experiment.read_users(generated, "loop-test", outcome.started_at))
    report = experiment.summarise(users, declared)
    for arm in report.arms:
        tally = outcome.tallies[arm.variant]
        assert (arm.impressions, arm.clicks) == (tally.impressions, tally.clicks)
        assert arm.watch_minutes == pytest.approx(tally.minutes)

    assert isinstance(pair, closed_loop.paired.Paired)
    assert pair.sessions == 60 and pair.mismatches == 0
    assert set(pair.expected_ctr) == {"basic", "ml"}
    verdict = closed_loop.verdict(outcome, report, pair)
    assert verdict.favoured == pair.favoured


def test_the_simulator_refuses_a_database_it_did_not_generate(generated: str) -> None:
    """Another seed draws other users: their latent traits would be someone else's."""
    with pytest.raises(closed_loop.SimulationError, match="seed 10"):
        closed_loop.load_viewers(generated, WORLD_SEED + 1)

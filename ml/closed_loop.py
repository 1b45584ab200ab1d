"""`python -m ml experiment simulate NAME`: an experiment run end to end by simulated viewers.

The generator's viewers (seed/behaviour.py: who they are, what they like, how
they click and watch) ask a running service for their lists over HTTP, react to
what they are shown by that same behaviour model, and report it through
`POST /v1/events`, as a client would. The service assigns them to the
experiment's variants and logs its answers as exposures; the report
(`ml/experiment.py`) then sees only what reached the database.

The simulator also knows what the report cannot: the probability with which
each shown stream was clicked. Summed per variant, that is the CTR the behaviour
model expects of the lists each variant served, free of the clicks' sampling
noise. The variant with the higher expected CTR is the one the behaviour model
favours, and the report, from the logged events alone, must name the same
winner with an interval that excludes no difference.

Only a database the generator filled can be simulated: the viewers' latent
traits (click propensity, taste communities, favourite channels, habits) never
leave the generator, so the simulator draws the world again from the same seed
and sizes, and refuses if its users and streams are not the database's.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import numpy as np
import pandas as pd

from app.api.event_schemas import MAX_EVENTS
from app.db.limits import DEVICES
from app.experiments import Experiment
from app.features.artifact import ClickModel as ClickModelArtifact
from app.settings import Settings
from ml import paired
from ml.experiment import Report
from seed.behaviour import (
    CLICK_MODEL,
    DEVICE_SHARES,
    DIURNAL_P,
    USUAL_HOUR_HOURS,
    Audience,
    Catalogue,
    ClickModel,
    Response,
    hour_gap,
    respond,
)
from seed.generate import make_world

#: The scenarios a viewer can be simulated on, and their paths (category_feed needs a
#: category the behaviour model does not choose).
PATHS = {"hometown": "/v1/scenarios/hometown", "home_feed": "/v1/scenarios/home_feed"}
EVENTS_PATH = "/v1/events"
#: Streams asked for per list: a front page (seed.behaviour.PAGE_SLOTS).
PAGE = 20
#: Events one `POST /v1/events` carries here (the endpoint takes up to MAX_EVENTS).
EVENT_BATCH = 2000
#: Attempts of a request that met a network error, a 429 or a 5xx (events are
#: idempotent by id, so a replayed batch changes nothing).
ATTEMPTS = 4
#: Coordinates match the generator's if within this many degrees (stored rounded to 5 places).
COORDINATE_SLACK = 1e-4
#: How long to wait for the service's background writer to log the last answers.
EXPOSURE_WAIT_S = 30.0
PROGRESS_EVERY_S = 5.0


class SimulationError(Exception):
    """The simulation cannot run or went wrong; says why."""


def say(message: str) -> None:
    """Progress on stderr, one line per step."""
    print(f"[simulate] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Viewers:
    """The generator's world behind the database: latent traits and id lookups."""

    audience: Audience
    catalogue: Catalogue
    user_ids: pd.Index
    stream_index: dict[str, int]
    #: Running sum of the users' activity, to draw a session's user by it.
    cumulative_activity: np.ndarray


USERS_SQL = "SELECT user_id, latitude, longitude FROM users ORDER BY user_id"
STREAMS_SQL = "SELECT stream_id, latitude, longitude FROM streams ORDER BY stream_id"


async def _read_places(url: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    conn = await asyncpg.connect(url)
    try:
        users = pd.DataFrame([dict(r) for r in await conn.fetch(USERS_SQL)])
        streams = pd.DataFrame([dict(r) for r in await conn.fetch(STREAMS_SQL)])
    finally:
        await conn.close()
    return users, streams


def _same(stored: pd.DataFrame, drawn: pd.DataFrame, key: str) -> bool:
    """The database's rows are the generator's: the same ids at the same coordinates."""
    if len(stored) != len(drawn):
        return False
    drawn = drawn.sort_values(key)
    if not np.array_equal(stored[key].to_numpy(str), drawn[key].to_numpy(str)):
        return False
    for column in ("latitude", "longitude"):
        gap = np.abs(stored[column].to_numpy(float) - drawn[column].to_numpy(float))
        if not (gap <= COORDINATE_SLACK).all():
            return False
    return True


def load_viewers(database_url: str, world_seed: int) -> Viewers:
    """Draw the generator's world again and check it is the database's.

    Raises:
        SimulationError: the database is empty, or was not generated with
            `world_seed` (another seed, other sizes, imported data, edited rows).
    """
    users, streams = asyncio.run(_read_places(database_url))
    if users.empty or streams.empty:
        raise SimulationError(
            "the database has no users or streams: fill it with `uv run python -m seed generate`"
        )
    world = make_world(len(users), len(streams), seed=world_seed)
    if not (_same(users, world.users, "user_id") and _same(streams, world.streams, "stream_id")):
        raise SimulationError(
            f"the database's {len(users):,} users and {len(streams):,} streams are not the"
            f" generator's world with seed {world_seed}: the simulated viewers need the"
            " latent traits only the generator knows, so simulate a database filled by"
            " `python -m seed generate` (pass its --seed as --world-seed)"
        )
    stream_ids = world.streams["stream_id"].astype(str)
    return Viewers(
        audience=world.audience,
        catalogue=world.catalogue,
        user_ids=pd.Index(world.users["user_id"].astype(str)),
        stream_index={sid: i for i, sid in enumerate(stream_ids)},
        cumulative_activity=np.cumsum(world.audience.activity),
    )


def session_rng(seed: int, number: int) -> np.random.Generator:
    """Session `number`'s own random stream: the same draws whatever order sessions run in."""
    return np.random.default_rng([seed, 11, number])


@dataclass(frozen=True)
class Visit:
    """One session of one viewer: who, on which device, at a usual hour or not."""

    user: int
    device: int
    usual_device: bool
    usual_hour: bool


def draw_visit(viewers: Viewers, rng: np.random.Generator) -> Visit:
    """A session as the generator draws them: a user by activity, their device and hour."""
    a = viewers.audience
    cumulative = viewers.cumulative_activity
    user = int(
        min(
            np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"),
            len(cumulative) - 1,
        )
    )
    habitual = rng.random() < a.device_habit[user]
    device = int(a.device[user]) if habitual else int(rng.choice(len(DEVICES), p=DEVICE_SHARES))
    if rng.random() < a.hour_habit[user]:
        hour = a.peak_hour[user] + a.hour_spread[user] * rng.standard_normal()
    else:
        hour = rng.choice(24, p=DIURNAL_P) + rng.random()
    gap = hour_gap(np.array([np.mod(hour, 24.0)]), np.array([a.peak_hour[user]]))[0]
    return Visit(user, device, device == int(a.device[user]), bool(gap <= USUAL_HOUR_HOURS))


#: What the viewer did with one list (seed.behaviour.Response).
Reaction = Response


def react(
    viewers: Viewers,
    visit: Visit,
    shown: np.ndarray,
    rng: np.random.Generator,
    model: ClickModel = CLICK_MODEL,
) -> Reaction:
    """Clicks and watch minutes on `shown` (stream indices, best first), by the behaviour model.

    The generator's own reaction (seed.behaviour.respond), position 1 on top, with
    the user's latent bias and fresh per-impression noise.
    """
    return respond(
        rng,
        viewers.audience,
        viewers.catalogue,
        np.full(len(shown), visit.user),
        shown,
        position=np.arange(1, len(shown) + 1),
        usual_device=visit.usual_device,
        usual_hour=visit.usual_hour,
        device=visit.device,
        model=model,
    )


def events_of(
    prefix: str,
    user_id: str,
    request_id: str,
    stream_ids: Sequence[str],
    reaction: Reaction,
    at: datetime,
) -> list[dict[str, Any]]:
    """The events a client sends for one list: an impression per stream, then clicks and watches."""
    stamp = at.isoformat()
    events: list[dict[str, Any]] = []
    for position, stream_id in enumerate(stream_ids, start=1):
        base = {
            "user_id": user_id,
            "stream_id": stream_id,
            "request_id": request_id,
            "position": position,
            "at": stamp,
        }
        events.append({"event_id": f"{prefix}-{position}-i", "type": "impression", **base})
        if reaction.clicked[position - 1]:
            events.append({"event_id": f"{prefix}-{position}-c", "type": "click", **base})
            minutes = float(reaction.minutes[position - 1])
            events.append(
                {"event_id": f"{prefix}-{position}-w", "type": "watch", "minutes": minutes, **base}
            )
    return events


@dataclass
class Tally:
    """One variant's sessions as the simulator saw them."""

    sessions: int = 0
    impressions: int = 0
    expected_clicks: float = 0.0
    clicks: int = 0
    minutes: float = 0.0

    @property
    def expected_ctr(self) -> float:
        """The CTR the behaviour model expects of the lists this variant served."""
        return self.expected_clicks / self.impressions if self.impressions else math.nan


@dataclass
class Outcome:
    """The whole run: per-variant tallies, what the event API said, what failed."""

    experiment: str
    scenario: str
    started_at: datetime
    tallies: dict[str, Tally] = field(default_factory=dict)
    request_ids: list[str] = field(default_factory=list)
    events_sent: int = 0
    events_recorded: int = 0
    event_problems: dict[str, int] = field(default_factory=dict)
    failed_requests: dict[str, int] = field(default_factory=dict)
    unknown_streams: int = 0
    seconds: float = 0.0
    #: The first sessions, for the paired comparison (ml/paired.py): number, user,
    #: variant served, streams served.
    sampled: list[tuple[int, str, str, list[str]]] = field(default_factory=list)

    @property
    def sessions(self) -> int:
        """Lists served to the simulated viewers."""
        return sum(t.sessions for t in self.tallies.values())

    def favoured(self) -> str | None:
        """The variant whose lists the behaviour model expects to be clicked most."""
        served = {name: t.expected_ctr for name, t in self.tallies.items() if t.impressions}
        return max(sorted(served), key=lambda name: served[name]) if served else None


@dataclass(frozen=True)
class Options:
    """What to simulate, against which server."""

    url: str
    experiment: Experiment
    database_url: str
    api_key: str
    sessions: int = 20_000
    connections: int = 8
    seed: int = 7
    world_seed: int = 42
    behaviour: ClickModel = CLICK_MODEL
    page: int = PAGE
    #: Sessions (the first ones) whose every variant's list is scored (ml/paired.py).
    paired_sessions: int = 3000


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST with retries on network errors, 429 (after Retry-After) and 5xx."""
    for attempt in range(ATTEMPTS):
        try:
            response = await client.post(path, json=body)
        except httpx.TransportError:
            if attempt == ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.2 * 2**attempt)
            continue
        busy = response.status_code == 429 or response.status_code >= 500
        if busy and attempt < ATTEMPTS - 1:
            wait = float(response.headers.get("retry-after", 0.2 * 2**attempt))
            await asyncio.sleep(min(wait, 5.0))
            continue
        return response
    raise AssertionError("unreachable")


class _Run:
    """The shared state of one simulation: the next session, the tallies, the event buffer."""

    def __init__(self, options: Options, viewers: Viewers, client: httpx.AsyncClient) -> None:
        self.options = options
        self.viewers = viewers
        self.client = client
        scenario = next((s for s in options.experiment.scenarios if s in PATHS), None)
        if scenario is None:
            raise SimulationError(
                f"experiment {options.experiment.name!r} covers"
                f" {', '.join(options.experiment.scenarios)}; the simulator serves viewers"
                f" on {' or '.join(PATHS)}"
            )
        self.scenario = scenario
        self.path = PATHS[scenario]
        self.run_id = uuid.uuid4().hex[:12]
        self.outcome = Outcome(options.experiment.name, scenario, datetime.now(UTC))
        self.next_session = 0

    async def worker(self) -> None:
        pending: list[dict[str, Any]] = []
        while self.next_session < self.options.sessions:
            number = self.next_session
            self.next_session += 1
            pending.extend(await self.session(number))
            if len(pending) >= EVENT_BATCH:
                await self.send(pending)
                pending = []
        if pending:
            await self.send(pending)

    async def session(self, number: int) -> list[dict[str, Any]]:
        """One viewer asks for a list, reacts, and returns the events to send."""
        options, viewers = self.options, self.viewers
        rng = session_rng(options.seed, number)
        visit = draw_visit(viewers, rng)
        user_id = str(viewers.user_ids[visit.user])
        body: dict[str, Any] = {"user_id": user_id, "max_results": options.page}
        if self.scenario == "home_feed":
            body["ctx_device"] = DEVICES[visit.device]
        response = await _post(self.client, self.path, body)
        if response.status_code != 200:
            key = str(response.status_code)
            self.outcome.failed_requests[key] = self.outcome.failed_requests.get(key, 0) + 1
            return []
        answer = response.json()
        arm = answer.get("experiment") or {}
        if arm.get("name") != options.experiment.name:
            raise SimulationError(
                f"the server put {user_id} in no experiment {options.experiment.name!r} on"
                f" {self.path}: start it with the same EXPERIMENTS setting"
            )
        stream_ids = [s["stream_id"] for s in answer["streams"]]
        known = [sid for sid in stream_ids if sid in viewers.stream_index]
        self.outcome.unknown_streams += len(stream_ids) - len(known)
        tally = self.outcome.tallies.setdefault(arm["variant"], Tally())
        tally.sessions += 1
        self.outcome.request_ids.append(answer["request_id"])
        if not known:
            return []
        if number < options.paired_sessions:
            self.outcome.sampled.append((number, user_id, arm["variant"], known))
        reaction = react(viewers, visit, self.indices(known), rng, options.behaviour)
        tally.impressions += len(known)
        tally.expected_clicks += float(reaction.probability.sum())
        tally.clicks += int(reaction.clicked.sum())
        tally.minutes += float(reaction.minutes.sum())
        prefix = f"sim-{self.run_id}-{number}"
        return events_of(prefix, user_id, answer["request_id"], known, reaction, datetime.now(UTC))

    def indices(self, stream_ids: Sequence[str]) -> np.ndarray:
        """The generator's indices of known stream ids."""
        index = self.viewers.stream_index
        return np.array([index[sid] for sid in stream_ids], dtype=np.int64)

    async def send(self, events: list[dict[str, Any]]) -> None:
        for start in range(0, len(events), MAX_EVENTS):
            batch = events[start : start + MAX_EVENTS]
            response = await _post(self.client, EVENTS_PATH, {"events": batch})
            self.outcome.events_sent += len(batch)
            if response.status_code != 200:
                raise SimulationError(
                    f"POST {EVENTS_PATH} answered {response.status_code}: {response.text[:300]}"
                )
            for result in response.json()["results"]:
                status = result["status"]
                if status == "recorded":
                    self.outcome.events_recorded += 1
                else:
                    problems = self.outcome.event_problems
                    problems[status] = problems.get(status, 0) + 1

    async def progress(self) -> None:
        started = time.perf_counter()
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            done = self.next_session
            rate = done / (time.perf_counter() - started)
            clicks = sum(t.clicks for t in self.outcome.tallies.values())
            say(
                f"{done:,}/{self.options.sessions:,} sessions ({rate:,.0f}/s),"
                f" {self.outcome.events_sent:,} events sent, {clicks:,} clicks"
            )


async def simulate(options: Options, viewers: Viewers, client: httpx.AsyncClient) -> Outcome:
    """Run `options.sessions` sessions over `options.connections` concurrent viewers."""
    run = _Run(options, viewers, client)
    say(
        f"{options.sessions:,} sessions on {run.path} under experiment"
        f" {options.experiment.name!r}, {options.connections} at a time (run {run.run_id})"
    )
    started = time.perf_counter()
    reporter = asyncio.create_task(run.progress())
    try:
        await asyncio.gather(*(run.worker() for _ in range(options.connections)))
    finally:
        reporter.cancel()
    run.outcome.seconds = time.perf_counter() - started
    return run.outcome


def scorer(options: Options, viewers: Viewers) -> paired.Scorer:
    """P(click) of any list in session `number`: its visit and noise, as the session drew them."""
    index = viewers.stream_index

    def score(number: int, stream_ids: Sequence[str]) -> np.ndarray:
        rng = session_rng(options.seed, number)
        visit = draw_visit(viewers, rng)
        shown = np.array([index[sid] for sid in stream_ids if sid in index], dtype=np.int64)
        return react(viewers, visit, shown, rng, options.behaviour).probability

    return score


async def pair(
    options: Options,
    viewers: Viewers,
    outcome: Outcome,
    settings: Settings,
    model: ClickModelArtifact | None,
) -> paired.Paired | None:
    """On HOMETOWN, every variant's list for the sampled sessions, compared (ml/paired.py)."""
    if outcome.scenario != "hometown" or not outcome.sampled:
        return None
    users = sorted({user for _, user, _, _ in outcome.sampled})
    say(f"paired comparison: every variant's list for {len(users):,} users in-process")
    conn = await asyncpg.connect(options.database_url)
    try:
        lists = await paired.variant_lists(
            conn, options.experiment, users, settings, model, options.page
        )
    finally:
        await conn.close()
    return paired.compare(
        outcome.sampled,
        lists,
        scorer(options, viewers),
        options.experiment.control_variant,
        seed=options.seed,
    )


async def wait_for_exposures(
    database_url: str, request_ids: Sequence[str], timeout_s: float = EXPOSURE_WAIT_S
) -> int:
    """Wait until the service has logged every answer; how many are logged.

    The service writes exposures in the background (every EXPOSURE_FLUSH_SECONDS),
    so the last answers reach the database a moment after the last response.
    """
    deadline = time.monotonic() + timeout_s
    conn = await asyncpg.connect(database_url)
    try:
        while True:
            logged = int(
                await conn.fetchval(
                    "SELECT count(*) FROM exposures WHERE request_id = ANY($1::text[])",
                    list(request_ids),
                )
            )
            if logged >= len(request_ids) or time.monotonic() > deadline:
                return logged
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


@dataclass(frozen=True)
class Verdict:
    """The variant the behaviour model favours, the one the report names, and if they agree."""

    favoured: str | None
    winner: str | None  # None: no difference to control excludes 0 (or no single best)
    agrees: bool
    text: str


def verdict(outcome: Outcome, report: Report, paired_: paired.Paired | None = None) -> Verdict:
    """Compare the variant the behaviour model favours with the report's CTR differences.

    The favoured variant is the paired comparison's when there is one (HOMETOWN),
    else the one whose served lists the behaviour model expects to be clicked most
    (unpaired: it differs with the users each variant drew). The report's winner
    is the control when every other variant's CTR is below
    it with an interval that excludes 0, or the one variant above it with such an
    interval; anything else is inconclusive.
    """
    favoured = paired_.favoured if paired_ is not None else outcome.favoured()
    ctr = [d for d in report.differences if d.metric == "ctr"]
    above = [d.variant for d in ctr if d.low > 0]
    below = [d.variant for d in ctr if d.high < 0]
    winner: str | None = None
    if len(above) == 1:
        winner = above[0]
    elif ctr and len(below) == len(ctr):
        winner = report.control
    if winner is None:
        text = (
            f"inconclusive: no variant's CTR differs from {report.control}'s with an interval"
            f" excluding 0 (the behaviour model favours {favoured}); run more sessions"
        )
    elif winner == favoured:
        text = f"agrees: the report names {winner}, the variant the behaviour model favours"
    else:
        text = f"DISAGREES: the report names {winner}, the behaviour model favours {favoured}"
    return Verdict(favoured, winner, winner is not None and winner == favoured, text)


def markdown(outcome: Outcome, verdict_: Verdict, paired_: paired.Paired | None = None) -> str:
    """The simulator's side: per variant, what it served and what the behaviour model expects."""
    lines = [
        f"## Closed loop: {outcome.sessions:,} simulated sessions on {outcome.scenario}"
        f" in {outcome.seconds:.0f} s",
        "",
        "| variant | sessions | impressions | expected CTR (behaviour model) | clicks sent |"
        " CTR sent |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in sorted(outcome.tallies):
        t = outcome.tallies[name]
        sent = t.clicks / t.impressions if t.impressions else math.nan
        lines.append(
            f"| {name} | {t.sessions:,} | {t.impressions:,} | {t.expected_ctr:.3%} |"
            f" {t.clicks:,} | {sent:.3%} |"
        )
    problems = ", ".join(f"{k} {v:,}" for k, v in sorted(outcome.event_problems.items()))
    failed = ", ".join(f"HTTP {k}: {v:,}" for k, v in sorted(outcome.failed_requests.items()))
    lines += [
        "",
        f"Events: {outcome.events_sent:,} sent, {outcome.events_recorded:,} recorded"
        + (f" ({problems})" if problems else "")
        + (f"; failed list requests: {failed}" if failed else "")
        + (
            f"; {outcome.unknown_streams:,} shown streams unknown to the generator"
            if outcome.unknown_streams
            else ""
        ),
    ]
    if paired_ is not None:
        lines += [
            "",
            f"Paired (ml/paired.py): every variant's list for the same {paired_.sessions:,}"
            f" sessions of {paired_.users:,} users, scored by the behaviour model; served"
            f" lists that differ from the computed ones: {paired_.mismatches:,}.",
            "",
            "| variant | expected CTR | difference to control [95% CI] | relative |",
            "|---|---:|---|---:|",
        ]
        base = paired_.expected_ctr[paired_.control]
        for name in sorted(paired_.expected_ctr):
            value = paired_.expected_ctr[name]
            if name == paired_.control:
                lines.append(f"| {name} (control) | {value:.3%} | | |")
                continue
            d, low, high = paired_.differences[name]
            lines.append(
                f"| {name} | {value:.3%} | {d:+.4%} [{low:+.4%}, {high:+.4%}] | {d / base:+.1%} |"
            )
    lines += ["", f"**Verdict:** {verdict_.text}."]
    return "\n".join(lines) + "\n"

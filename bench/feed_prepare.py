"""The feed-serving benchmark's world: data, candidate model, reranker and feature tables, timed.

`bench/feed_api.py` calls `prepare()` on a migrated scratch database. Each step runs
in this process, so its wall time and its peak resident memory (VmHWM, reset before
every step through /proc/self/clear_refs) are what the step costs:

1. generate + load: `seed.generate` (10% of streams live, the generator's diurnal
   share) streamed into `seed.loader.load`, impressions generated lazily;
2. read and split: `ml.feed.pipeline.prepare`, the training pipeline's own reader;
3. ALS: `ml.feed.als.fit_als` on the fit slice, dim 64, few sweeps (`--als-iterations`);
4. store embeddings: `app.feed.embeddings.save_model(..., activate=True)` for every
   user and stream with a watched interaction in the fit slice (the others get no
   vector: for the feed they are cold-start);
5. reranker: the training pipeline's candidates, features and LambdaRank fit
   (`ml.feed.candidates`, `ml.feed.history`, `ml.feed.rerank`) on a fixed sample of
   the tune slice's users, saved as `feed_reranker.bin` + `.sha256`;
6. feature tables: `app.feed.refresh.refresh_features(conn)` when that module exists,
   else a bench-local SQL aggregation with migration 0008's column definitions.

The models are made to be *served*, not judged: few ALS sweeps instead of LightGCN,
a reranker fitted on a sample of users. Their quality is not measured here
(`python -m bench.feed` does that); what the benchmark needs is their shape: a dim-64
vector for every viewer and stream with history, and a reranker of the real format.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import numpy as np

from bench.database import REPO
from bench.log import say

T = TypeVar("T")

#: What `prepare` writes beside the reranker: how the directory was made, for `--reuse`.
MARKER_FILE = "bench_feed_api.json"
#: The click model's file name inside the model directory: MODEL_PATH points at it, so
#: the server looks for the feed's reranker in that directory (none is needed there).
CLICK_MODEL_FILE = "hometown_model.joblib"
#: The files the models are made from: a change to one makes a kept model directory
#: stale (the data's own fingerprint, bench/database.py, covers migrations and seed).
#: Not app/feed/ as a whole, so the endpoint's own modules landing do not retrain.
FINGERPRINTED = (
    "migrations/versions/*.py",
    "seed/*.py",
    "ml/feed/*.py",
    "app/feed/embeddings.py",
    "app/feed/artifact.py",
    "app/feed/features.py",
)
#: The refresh module another change adds; called when it can be imported.
REFRESH_MODULE = "app.feed.refresh"


@dataclass(frozen=True)
class World:
    """What to build: sizes and the knobs of the fast training."""

    users: int
    streams: int
    interactions: int
    seed: int = 42
    live_share: float = 0.1
    als_iterations: int = 3
    reranker_users: int = 10_000

    def fingerprint(self) -> str:
        """A digest of the arguments and of every file the data and models come from."""
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode())
        for pattern in FINGERPRINTED:
            for path in sorted(REPO.glob(pattern)):
                digest.update(path.relative_to(REPO).as_posix().encode())
                digest.update(path.read_bytes())
        return "bench feed_api " + digest.hexdigest()[:16]


@dataclass(frozen=True)
class Step:
    """One preparation step: wall seconds and this process's peak resident memory."""

    name: str
    seconds: float
    peak_bytes: int | None
    note: str = ""


@dataclass
class Prepared:
    """What the serving measurement needs to know about the prepared world."""

    fingerprint: str
    model_version: str
    embedded_users: int
    embedded_streams: int
    features_by: str
    steps: list[Step] = field(default_factory=list)
    reranker: dict[str, Any] = field(default_factory=dict)
    reused: bool = False

    def write(self, model_dir: Path) -> None:
        """Store the marker beside the reranker."""
        (model_dir / MARKER_FILE).write_text(json.dumps(asdict(self), indent=2, default=str))

    @classmethod
    def read(cls, model_dir: Path) -> Prepared | None:
        """The marker of a previous run, or None."""
        path = model_dir / MARKER_FILE
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        raw["steps"] = [Step(**s) for s in raw.get("steps", [])]
        return cls(**raw)


# --------------------------------------------------------------------------- measuring


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux 4.0+), so the next step's peak is its own."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_bytes() -> int | None:
    """This process's VmHWM since the last reset, from /proc (None where there is none)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def timed(steps: list[Step], name: str, work: Callable[[], T], note: str = "") -> T:
    """Run one step, append its seconds and peak memory to `steps`."""
    _reset_peak()
    started = time.perf_counter()
    value = work()
    seconds = time.perf_counter() - started
    peak = peak_bytes()
    steps.append(Step(name, seconds, peak, note))
    shown = f", peak {peak / 1024**3:.2f} GiB" if peak else ""
    say(f"{name}: {seconds:.1f}s{shown}")
    return value


# --------------------------------------------------------------------------- steps


def load_data(url: str, world: World) -> None:
    """Generate the world and load it (the impressions stream in lazily)."""
    from seed.generate import generate
    from seed.loader import load

    load(
        url,
        generate(
            world.users,
            world.streams,
            world.interactions,
            seed=world.seed,
            live_share=world.live_share,
        ),
    )


def _fitted_rows(prepared: Any) -> tuple[np.ndarray, np.ndarray]:
    """Users and streams with a watched interaction in the fit slice."""
    fit = prepared.fit
    users = np.flatnonzero(np.diff(fit.indptr) > 0)
    streams = np.flatnonzero(np.bincount(fit.indices, minlength=fit.shape[1]) > 0)
    return users, streams


async def _store(
    url: str, version: str, prepared: Any, vectors: Any, metadata: dict[str, Any]
) -> None:
    from app.feed import embeddings

    users, streams = _fitted_rows(prepared)
    log = prepared.log
    conn = await asyncpg.connect(url)
    try:
        await embeddings.save_model(
            conn,
            version=version,
            kind="als",
            user_ids=[str(log.user_ids[i]) for i in users],
            users=vectors.users[users],
            stream_ids=[str(log.stream_ids[i]) for i in streams],
            streams=vectors.items[streams],
            metadata=metadata,
            activate=True,
        )
        await embeddings.prune(conn)
        await conn.execute("ANALYZE feed_embeddings")
    finally:
        await conn.close()


def _reranker_table(prepared: Any, cf: Any, world: World) -> Any:
    """`ml.feed.train.training_table` on a fixed sample of the tune slice's users."""
    from ml.feed.train import training_table

    log, cut = prepared.log, prepared.split
    users = np.flatnonzero(np.bincount(log.user[cut.tune], minlength=log.n_users) > 0)
    rng = np.random.default_rng(world.seed)
    if len(users) > world.reranker_users:
        users = np.sort(rng.choice(users, world.reranker_users, replace=False))
    say(f"reranker: {len(users):,} sampled query users")
    return training_table(prepared, cf, world.seed, progress=say, users=users.astype(np.int64))


def _save_reranker(fitted: Any, path: Path, metadata: dict[str, Any]) -> None:
    from app.feed import artifact
    from app.feed.features import FEATURE_NAMES

    artifact.save_ranker(
        bytes(fitted.booster[: fitted.best_iteration + 1].save_raw("json")),
        {
            **metadata,
            "feature_names": list(FEATURE_NAMES),
            "rows": fitted.rows,
            "queries": fitted.queries,
            "best_iteration": fitted.best_iteration,
            "validation_ndcg@10": fitted.validation_ndcg10,
            "training_data_hash": fitted.data_hash,
        },
        path,
    )


def _hour_filters(expression: str, cast: str) -> str:
    cells = ",".join(f"count(*) FILTER (WHERE {expression} = {h})" for h in range(24))
    return f"ARRAY[{cells}]::{cast}[]"


def _fallback_sql() -> tuple[str, str]:
    """The feature tables' rows from `interactions`, per migration 0008's definitions.

    Only watched rows count (watch time above 0); local hours are UTC hours shifted by
    the user's `timezone_offset` and floored, as app/feed/facts.py reads them.
    """
    from app.db.limits import DEVICES

    utc_hour = "extract(hour FROM i.impression_at AT TIME ZONE 'UTC')::int"
    devices = ",".join(f"count(*) FILTER (WHERE i.device_type = '{d}')" for d in DEVICES)
    streams = f"""
        INSERT INTO feed_stream_features (stream_id, viewers, device_watches, hour_watches)
        SELECT i.stream_id, count(DISTINCT i.user_id)::int, ARRAY[{devices}]::int[],
               {_hour_filters(utc_hour, "int")}
        FROM interactions i WHERE i.watch_time_minutes > 0
        GROUP BY i.stream_id
    """
    users = f"""
        WITH w AS MATERIALIZED (
            SELECT i.user_id, s.category_id, s.creator_id, i.watch_time_minutes AS minutes,
                   floor({utc_hour}::float8 + u.timezone_offset + 48)::int % 24 AS hour
            FROM interactions i JOIN streams s USING (stream_id) JOIN users u USING (user_id)
            WHERE i.watch_time_minutes > 0
        ), cat AS (
            SELECT user_id, array_agg(category_id ORDER BY category_id) AS ids,
                   array_agg(m ORDER BY category_id) AS minutes
            FROM (SELECT user_id, category_id, sum(minutes)::float8 AS m
                  FROM w GROUP BY 1, 2) c
            GROUP BY 1
        ), hours AS (
            SELECT user_id, {_hour_filters("hour", "float8")} AS watches FROM w GROUP BY 1
        ), creators AS (
            SELECT user_id, array_agg(creator_id ORDER BY m DESC, creator_id) AS ids,
                   array_agg(m ORDER BY m DESC, creator_id) AS minutes,
                   array_agg(n ORDER BY m DESC, creator_id) AS watches
            FROM (SELECT user_id, creator_id, sum(minutes)::float8 AS m, count(*)::float8 AS n
                  FROM w GROUP BY 1, 2) c
            GROUP BY 1
        )
        INSERT INTO feed_user_features (user_id, category_ids, category_minutes, hour_watches,
                                        creator_ids, creator_minutes, creator_watches)
        SELECT cat.user_id, cat.ids, cat.minutes, hours.watches,
               creators.ids, creators.minutes, creators.watches
        FROM cat JOIN hours USING (user_id) JOIN creators USING (user_id)
    """
    return streams, users


async def _fill_features(url: str) -> str:
    """Fill both feature tables; returns who did it (the app's refresh or the fallback)."""
    try:
        module = importlib.import_module(REFRESH_MODULE)
    except ImportError:
        module = None
    conn = await asyncpg.connect(url)
    try:
        if module is not None and hasattr(module, "refresh_features"):
            await module.refresh_features(conn)
            by = f"{REFRESH_MODULE}.refresh_features"
        else:
            say(f"{REFRESH_MODULE} is not there yet: filling the feature tables with bench SQL")
            await conn.execute("SET work_mem = '256MB'")
            async with conn.transaction():
                await conn.execute("TRUNCATE feed_stream_features, feed_user_features")
                for statement in _fallback_sql():
                    await conn.execute(statement)
            by = "bench fallback SQL (bench/feed_prepare.py)"
        await conn.execute("ANALYZE feed_stream_features")
        await conn.execute("ANALYZE feed_user_features")
    finally:
        await conn.close()
    return by


def fill_features(url: str, steps: list[Step]) -> str:
    """The feature-tables step, timed."""
    return timed(steps, "feature tables", lambda: asyncio.run(_fill_features(url)))


def refresh_available() -> bool:
    """Whether the app's own refresh can be imported (it lands with the endpoint)."""
    try:
        module = importlib.import_module(REFRESH_MODULE)
    except ImportError:
        return False
    return hasattr(module, "refresh_features")


def train_models(url: str, world: World, model_dir: Path, steps: list[Step]) -> Prepared:
    """Steps 2 to 6 of the module docstring, on a loaded database."""
    from ml.feed import rerank
    from ml.feed.als import fit_als
    from ml.feed.pipeline import RERANKER_FILE, Source, prepare
    from ml.feed.retrieval import Embeddings

    prepared = timed(steps, "read and split", lambda: prepare(Source(url), 0.2, 0.2, say))
    als = timed(
        steps,
        "ALS fit",
        lambda: fit_als(prepared.fit, dim=64, iterations=world.als_iterations, seed=world.seed),
        note=f"{world.als_iterations} sweeps, dim 64, the fit slice",
    )
    users, streams = _fitted_rows(prepared)
    # What is not stored has no vector: zero it, so offline retrieval sees what serving sees.
    user_mask = np.zeros(prepared.log.n_users, dtype=bool)
    user_mask[users] = True
    stream_mask = np.zeros(prepared.log.n_items, dtype=bool)
    stream_mask[streams] = True
    cf = Embeddings(
        users=np.where(user_mask[:, None], als.users, 0).astype(np.float32),
        items=np.where(stream_mask[:, None], als.items, 0).astype(np.float32),
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    version = f"als-bench-{stamp}-{prepared.data_hash[:8]}"
    metadata: dict[str, Any] = {
        "data_hash": prepared.data_hash,
        "kind": "als",
        "benchmark": "bench.feed_api: made to be served, not judged (few sweeps)",
        "als_iterations": world.als_iterations,
        "users": prepared.log.n_users,
        "streams": prepared.log.n_items,
        "interactions": len(prepared.log),
        "trained_at": stamp,
    }
    timed(
        steps,
        "store embeddings",
        lambda: asyncio.run(_store(url, version, prepared, als, metadata)),
        note=f"{len(users):,} users + {len(streams):,} streams, activated",
    )
    table = timed(
        steps,
        "reranker candidates and features",
        lambda: _reranker_table(prepared, cf, world),
        note=f"a sample of {world.reranker_users:,} tune-slice users",
    )
    fitted = timed(steps, "reranker fit", lambda: rerank.fit(table, seed=world.seed))
    model_dir.mkdir(parents=True, exist_ok=True)
    _save_reranker(
        fitted,
        model_dir / RERANKER_FILE,
        {**metadata, "candidate_models": {"als": version}, "sampled_users": world.reranker_users},
    )
    features_by = fill_features(url, steps)
    return Prepared(
        fingerprint=world.fingerprint(),
        model_version=version,
        embedded_users=len(users),
        embedded_streams=len(streams),
        features_by=features_by,
        steps=steps,
        reranker={
            "queries": fitted.queries,
            "rows": fitted.rows,
            "trees": fitted.best_iteration + 1,
            "validation_ndcg@10": fitted.validation_ndcg10,
        },
    )


async def _active_version(url: str) -> str | None:
    conn = await asyncpg.connect(url)
    try:
        value = await conn.fetchval("SELECT version FROM feed_models WHERE active")
    finally:
        await conn.close()
    return None if value is None else str(value)


def reusable_models(url: str, world: World, model_dir: Path) -> Prepared | None:
    """The previous run's models when they match `world` and are still in place."""
    from ml.feed.pipeline import RERANKER_FILE

    marker = Prepared.read(model_dir)
    if marker is None or marker.fingerprint != world.fingerprint():
        return None
    if not (model_dir / RERANKER_FILE).exists():
        return None
    if asyncio.run(_active_version(url)) != marker.model_version:
        return None
    return marker


def prepare(url: str, world: World, model_dir: Path, *, data_loaded: bool, reuse: bool) -> Prepared:
    """Load and train as needed; with `reuse`, keep whatever still matches."""
    steps: list[Step] = []
    if not data_loaded:
        timed(
            steps,
            "generate + load",
            lambda: load_data(url, world),
            note=f"{world.users:,} users, {world.streams:,} streams, "
            f"{world.interactions:,} impressions",
        )
    else:
        # The data were built by an earlier run: report that run's numbers for them.
        earlier = Prepared.read(model_dir)
        steps += [s for s in (earlier.steps if earlier else []) if s.name == "generate + load"]
    marker = reusable_models(url, world, model_dir) if reuse and data_loaded else None
    if marker is None:
        prepared = train_models(url, world, model_dir, steps)
    else:
        say(f"reusing the models in {model_dir} ({marker.model_version})")
        prepared = marker
        prepared.reused = True
        if refresh_available() and not marker.features_by.startswith(REFRESH_MODULE):
            say(f"{REFRESH_MODULE} has landed: refilling the feature tables with it")
            refill: list[Step] = []
            prepared.features_by = fill_features(url, refill)
            prepared.steps = [s for s in prepared.steps if s.name != "feature tables"] + refill
    prepared.write(model_dir)
    return prepared

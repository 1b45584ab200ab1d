"""Request cost: the costliest schema-valid requests against a normal one, in-process.

    uv run python -m bench.cost [--users 10000 --streams 100000] [--repeat 15] [--model PATH]

It starts a private PostgreSQL cluster in a temporary directory (tools/cluster.py),
migrates and seeds it, and sends each request of `CASES` `--repeat` times through
the app in-process (litestar's TestClient: no network, no server process), then
prints the median milliseconds of each and its ratio to the normal request,
`normal`, measured in the same run. Extreme inputs probe what a client may send
within the schema: radii near 0 and at the maximum, `max_results` 1 and 100,
remote places, poles, the antimeridian, and the largest live-status batch. The
`/hometown-ml` cases run when a click model is at `--model` (default: MODEL_PATH).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from app.main import create_app
from app.settings import Settings, load_settings
from bench import database
from bench.cli import positive, run_main
from bench.log import say
from seed.generate import generate
from seed.loader import Dataset, load
from tools.cluster import LocalCluster, free_port

KEY = "bench-cost-key-0123456789"
HOMETOWN = "/v1/scenarios/hometown"
ML = "/v1/scenarios/hometown-ml"
PARIS = {"latitude": 48.85, "longitude": 2.35}
PACIFIC = {"latitude": -40.0, "longitude": -130.0}
Send = Callable[[TestClient[Any]], Any]


def _post(route: str, body: dict[str, Any]) -> Send:
    return lambda client: client.post(route, json=body)


def _batch(stream_ids: list[str], n: int, *, same: bool) -> Send:
    """A batch of `n` live updates (newer on every call, so each one applies)."""
    calls = [0]

    def send(client: TestClient[Any]) -> Any:
        calls[0] += 1
        base = datetime.now(UTC) - timedelta(minutes=1)
        updates = [
            {
                "stream_id": stream_ids[0 if same else i % len(stream_ids)],
                "is_live": True,
                "current_viewer_count": i,
                "at": (base + timedelta(microseconds=i)).isoformat(),
            }
            for i in range(n)
        ]
        response = client.post(
            "/v1/streams/live-status", json={"updates": updates}, headers={"X-API-Key": KEY}
        )
        assert response.status_code == 200, response.text[:300]
        return response

    return send


def cases(stream_ids: list[str], *, with_model: bool) -> dict[str, Send]:
    """Named requests; `normal` is the yardstick."""
    found: dict[str, Send] = {"normal": _post(HOMETOWN, {**PARIS, "radius_km": 50})}
    for place, where in (("paris", PARIS), ("pacific", PACIFIC)):
        for radius in (5e-324, 0.001, 20000):
            for k in (1, 100):
                body = {**where, "radius_km": radius, "max_results": k}
                found[f"{place} r={radius:g} k={k}"] = _post(HOMETOWN, body)
    found["north pole r=5e-324 k=100"] = _post(
        HOMETOWN, {"latitude": 90.0, "longitude": 0.0, "radius_km": 5e-324, "max_results": 100}
    )
    found["antimeridian r=5e-324 k=100"] = _post(
        HOMETOWN, {"latitude": -16.6, "longitude": 180.0, "radius_km": 5e-324, "max_results": 100}
    )
    if with_model:
        found["ml normal"] = _post(ML, {**PARIS, "radius_km": 50})
        found["ml pacific r=5e-324 k=100"] = _post(
            ML, {**PACIFIC, "radius_km": 5e-324, "max_results": 100}
        )
        found["ml paris r=20000 k=100"] = _post(
            ML, {**PARIS, "radius_km": 20000, "max_results": 100}
        )
    found["batch of 1"] = _batch(stream_ids, 1, same=False)
    found["batch of 5000, distinct streams"] = _batch(stream_ids, 5000, same=False)
    found["batch of 5000, one stream"] = _batch(stream_ids, 5000, same=True)
    return found


def measure(url: str, model_path: Path, repeat: int, stream_ids: list[str]) -> dict[str, float]:
    """Median milliseconds per case (after one warm-up call each)."""
    values = {"DATABASE_URL": url, "API_KEY": KEY, "MODEL_PATH": str(model_path)}
    settings = Settings.model_validate({**values, "ACCESS_LOG": False})
    medians: dict[str, float] = {}
    with TestClient(create_app(settings)) as client:
        for name, send in cases(stream_ids, with_model=model_path.exists()).items():
            response = send(client)
            assert response.status_code == 200, (name, response.text[:300])
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                send(client)
                times.append((time.perf_counter() - start) * 1000)
            medians[name] = statistics.median(times)
    return medians


def main() -> None:
    """Parse the options, seed a private cluster, measure, print a markdown table."""
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    cli.add_argument("--users", type=positive, default=10_000)
    cli.add_argument("--streams", type=positive, default=100_000)
    cli.add_argument("--repeat", type=positive, default=15)
    cli.add_argument("--seed", type=int, default=42)
    cli.add_argument("--model", type=Path, help="the click model (default: MODEL_PATH)")
    args = cli.parse_args()
    model_path = args.model or load_settings().model_path

    def body() -> int:
        root = Path(tempfile.mkdtemp(prefix="hometown-cost-"))
        cluster = LocalCluster(root / "pg", port=free_port(), fsync=False)
        try:
            url = cluster.start()
            database.migrate(url)
            data = generate(args.users, args.streams, 0, seed=args.seed)
            load(url, Dataset(users=data.users, streams=data.streams))
            stream_ids = data.streams["stream_id"].head(5000).tolist()
            medians = measure(url, model_path, args.repeat, stream_ids)
        finally:
            cluster.stop()
            shutil.rmtree(root, ignore_errors=True)
        normal = medians["normal"]
        say(f"{args.users:,} users, {args.streams:,} streams, median of {args.repeat}")
        print("| request | median ms | × normal |\n| --- | ---: | ---: |")
        for name, ms in medians.items():
            print(f"| {name} | {ms:.2f} | {ms / normal:.1f} |")
        return 0

    raise SystemExit(run_main(body))


if __name__ == "__main__":
    main()

"""What the real server process loads: no offline package and no pandas, even for the ML route.

The server runs as `python -m app` with `PYTHONVERBOSE=1`, so the interpreter
itself writes a line to stderr for every module it loads, at start-up and
later, lazily, while serving (an import that fails writes no such line). After start-up and one
`/v1/scenarios/hometown-ml` request, that record must hold no module of `ml`,
`seed`, `bench`, `tools` or `pandas` (pandas alone is ~60 MiB of resident memory
per process). The request must really have used the model, or the test would
prove nothing. Without `REDIS_URL` the record must not hold redis-py either
(~18 MiB a process, app/feed/redis_cache.py). And the server, unlike the tests'
apps, froze its start-up heap (app/heap.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from bench import server as api_server
from tests.support.models import saved_model
from tools.cluster import free_port

FORBIDDEN = ("ml", "seed", "bench", "tools", "pandas", "pyarrow", "matplotlib")
#: `import 'name' # <loader>` for Python modules, `# extension module 'name' loaded from`.
IMPORT_LINE = re.compile(r"^(?:import|# extension module) '([\w.]+)'")


def imported(stderr: str) -> set[str]:
    """Names of the modules the interpreter loaded, from its `-v` lines."""
    return {m.group(1) for line in stderr.splitlines() if (m := IMPORT_LINE.match(line))}


def test_the_server_loads_no_offline_package_or_pandas(small_world: str, tmp_path: Path) -> None:
    _, model_path = saved_model(tmp_path)
    port = free_port()
    log = tmp_path / "server.stderr"
    env = {
        **{name: value for name, value in os.environ.items() if name != "REDIS_URL"},
        "DATABASE_URL": small_world,
        "HOST": api_server.HOST,
        "PORT": str(port),
        "MODEL_PATH": str(model_path),
        "ACCESS_LOG": "false",
        "PYTHONVERBOSE": "1",
        "WORKERS": "1",  # the process measured is the one serving
    }
    with log.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "app"], env=env, stdout=subprocess.DEVNULL, stderr=err
        )
        server = api_server.Server(process=process, port=port)
        try:
            api_server.wait_healthy(server)
            request = urllib.request.Request(
                f"{server.base_url}/v1/scenarios/hometown-ml",
                data=json.dumps({"user_id": "user_000000", "explain": True}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                body = json.loads(response.read())
            with urllib.request.urlopen(f"{server.base_url}/metrics", timeout=30) as response:
                metrics = response.read().decode()
            rss_kib = _rss_kib(process.pid)
        finally:
            server.stop()
    assert body["streams"], body
    assert all(s["components"]["ml"] > 0 for s in body["streams"]), "the model was not used"

    modules = imported(log.read_text())
    assert "app.main" in modules and "sklearn" in modules  # the record is complete
    loaded = sorted(m for m in modules if m.split(".")[0] in FORBIDDEN)
    assert not loaded, f"the server imported {loaded}"
    assert "app.feed.cache" in modules
    redis = sorted(m for m in modules if m.split(".")[0] == "redis")
    assert not redis, f"the server without REDIS_URL imported {redis}"
    # app/heap.py: the server froze its start-up heap and times its collections.
    frozen = re.search(r"^hometown_gc_frozen_objects ([\d.e+]+)$", metrics, re.M)
    assert frozen is not None and float(frozen.group(1)) > 10_000, frozen
    print(f"server RSS after start-up and one /hometown-ml request: {rss_kib / 1024:.0f} MiB")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc status")

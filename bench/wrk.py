"""HTTP load with wrk: a Lua script that POSTs random users and reports parseably.

wrk is a closed-loop generator in C: each connection sends its next request when
the previous answer arrives, so "concurrency" is the number of connections. It runs
as its own process, so the Python server does not share an interpreter with it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.log import say

#: What `done()` prints: one line, key=value pairs, easy to find among wrk's own output.
RESULT_PREFIX = "BENCH_RESULT"

# Every thread counts non-2xx answers in `response()`; `done()` sums them over the
# threads that `setup()` collected. `%06d` widens by itself past 999,999, like the ids.
LUA_TEMPLATE = """
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_index", counter)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  math.randomseed(%(seed)d + 7919 * thread_index)
  wrk.method = "%(method)s"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  %(request)s
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local non2xx_total = 0
  for _, thread in ipairs(threads) do
    non2xx_total = non2xx_total + thread:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    "%(prefix)s requests=%%d duration_us=%%d non2xx=%%d connect=%%d read=%%d write=%%d"
    .. " timeout=%%d p50_us=%%d p95_us=%%d p99_us=%%d max_us=%%d\\n",
    summary.requests, summary.duration, non2xx_total, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max))
end
"""

POST_REQUEST = (
    'local body = string.format(\'{"user_id": "user_%%06d"}\', math.random(0, %(users)d - 1))\n'
    '  return wrk.format(nil, "%(path)s", nil, body)'
)
GET_REQUEST = 'return wrk.format(nil, "%(path)s")'


@dataclass(frozen=True)
class WrkResult:
    """One measured wrk run."""

    concurrency: int
    requests: int
    duration_s: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        """Requests per second over the measured window."""
        return self.requests / self.duration_s

    @property
    def errors(self) -> int:
        """Everything that was not a 2xx answer: bad statuses plus socket errors."""
        return self.non2xx + self.socket_errors


def _apt(*args: str) -> int:
    """Run apt-get non-interactively; its chatter goes to stderr (stdout is the report)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", *args]
    return subprocess.run(command, env=env, stdout=sys.stderr, timeout=300, check=False).returncode


def ensure_wrk() -> str:
    """Find wrk, installing Debian's package when it is missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("wrk is not installed: run `sudo apt-get install wrk`")
    say("installing wrk (apt-get)")
    if _apt("install", "-y", "-qq", "wrk") != 0 or not shutil.which("wrk"):
        # A fresh machine may have no package lists yet.
        _apt("update", "-qq")
        _apt("install", "-y", "-qq", "wrk")
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("could not install wrk with apt-get (see above); install it by hand")
    return found


def lua_script(*, path: str, users: int | None, seed: int, delay_ms: float | None = None) -> str:
    """The script's text: POST random `user_id` bodies to `path`, or GET it when no users.

    With `delay_ms`, each connection waits that long before its next request, which
    paces a closed-loop generator down to a chosen rate (the soak test uses it).
    """
    if users is None:
        method, request = "GET", GET_REQUEST % {"path": path}
    else:
        method, request = "POST", POST_REQUEST % {"path": path, "users": users}
    script = LUA_TEMPLATE % {
        "seed": seed,
        "method": method,
        "request": request,
        "prefix": RESULT_PREFIX,
    }
    if delay_ms is not None:
        script += f"\nfunction delay()\n  return {max(round(delay_ms), 0)}\nend\n"
    return script


def threads_for(concurrency: int) -> int:
    """One wrk thread at concurrency 1, two above (the box has two cores to share)."""
    return 1 if concurrency == 1 else 2


def parse(output: str, concurrency: int) -> WrkResult:
    """Read the `done()` line out of wrk's stdout."""
    match = re.search(rf"^{RESULT_PREFIX} (.*)$", output, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk printed no {RESULT_PREFIX} line:\n{output}")
    fields = {key: int(value) for key, value in re.findall(r"(\w+)=(-?\d+)", match.group(1))}
    return WrkResult(
        concurrency=concurrency,
        requests=fields["requests"],
        duration_s=fields["duration_us"] / 1e6,
        non2xx=fields["non2xx"],
        socket_errors=fields["connect"] + fields["read"] + fields["write"] + fields["timeout"],
        p50_ms=fields["p50_us"] / 1000,
        p95_ms=fields["p95_us"] / 1000,
        p99_ms=fields["p99_us"] / 1000,
        max_ms=fields["max_us"] / 1000,
    )


def run(wrk: str, url: str, script: str, *, concurrency: int, duration_s: int) -> WrkResult:
    """Drive `url` with `concurrency` connections for `duration_s` seconds."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        lua = Path(tmp) / "hometown.lua"
        lua.write_text(script)
        command = [
            wrk,
            f"-t{threads_for(concurrency)}",
            f"-c{concurrency}",
            f"-d{duration_s}s",
            "--timeout=10s",
            f"--script={lua}",
            url,
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return parse(result.stdout, concurrency)

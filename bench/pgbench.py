"""Bare SQL cost of the candidate query, measured with pgbench on the same database.

Per transaction, the script does what the service does first for every request:
look the user up (`USER_SQL`), then read the nearest live streams within the
radius from the user's location (`NEAREST_SQL`, first step). Both statements are
the service's own constants, turned into pgbench syntax here, so the two cannot
drift apart. pgbench is C and speaks the protocol directly: its latency is the
floor the HTTP numbers are compared with. (The service may run more queries per
request, e.g. static-score tiers or wider rings, when the first step does not
settle the top k; the pgbench script is the common part of every request.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from app.api.schemas import HometownRequest
from app.hometown.candidates import NEAREST_SQL, USER_SQL
from app.hometown.search import first_step_limit
from tools.cluster import pg_bindir

#: The request the load sends: a known user and every default (radius, k, filters).
DEFAULT_REQUEST = HometownRequest(user_id="user_000000")
#: The first nearest-first step's LIMIT, as app.hometown.search.candidates_in_ring sets it.
FIRST_LIMIT = first_step_limit(DEFAULT_REQUEST.max_results)

#: `user_` + the index, zero-padded to six digits and wider past that (lpad alone
#: would cut 1234567 down to six characters).
USER_ID_SQL = "('user_' || lpad(:n::text, greatest(6, length(:n::text)), '0'))"

#: USER_SQL's `$1` is the user id.
USER_PARAMS = {1: USER_ID_SQL}
#: NEAREST_SQL's `$n` (see app/hometown/candidates.py): the point from the user row
#: that `\gset` stored, ring 0 (no inner edge), no language or category filter,
#: mature streams allowed, the first step's limit. pgbench sends variables as
#: parameters of a prepared statement, as asyncpg does; it cannot send a NULL, so the
#: two absent filters are literal NULLs.
NEAREST_PARAMS = {
    1: ":longitude",
    2: ":latitude",
    3: ":radius_m",
    4: ":inner_m",
    5: "NULL",
    6: "NULL",
    7: ":mature_ok",
    8: ":limit",
}
VARIABLES = {
    "radius_m": f"{DEFAULT_REQUEST.radius_km * 1000.0}",
    "inner_m": "-1",
    "mature_ok": "true" if DEFAULT_REQUEST.include_mature else "false",
    "limit": str(FIRST_LIMIT),
}


def to_pgbench(sql: str, params: dict[int, str]) -> str:
    """Replace asyncpg's `$n` by pgbench variables or literals, on one line.

    Fails loudly when the query's parameters no longer match the mapping, so a
    change to the service's SQL cannot silently change what is measured.
    """
    used = {int(n) for n in re.findall(r"\$(\d+)", sql)}
    if used != set(params):
        raise RuntimeError(
            f"the query's parameters {sorted(used)} differ from bench's mapping"
            f" {sorted(params)}: update bench/pgbench.py"
        )
    text = re.sub(r"\$(\d+)", lambda m: params[int(m.group(1))], sql)
    return " ".join(text.split()).rstrip(";")


def script(users: int) -> str:
    """The pgbench custom script: a random user, their row, their nearest live streams."""
    lines = [f"\\set n random(0, {users - 1})"]
    lines += [f"\\set {name} {value}" for name, value in VARIABLES.items()]
    lines += [
        to_pgbench(USER_SQL, USER_PARAMS) + " \\gset",
        to_pgbench(NEAREST_SQL, NEAREST_PARAMS) + ";",
    ]
    return "\n".join(lines) + "\n"


def find_pgbench() -> str:
    """Find pgbench: on PATH, else next to the PostgreSQL 15 server binaries."""
    found = shutil.which("pgbench")
    if found:
        return found
    candidate = pg_bindir() / "pgbench"
    if candidate.exists():
        return str(candidate)
    raise RuntimeError("pgbench not found: install postgresql-client-15")


@dataclass(frozen=True)
class PgbenchResult:
    """One measured pgbench run."""

    clients: int
    tps: float
    transactions: int
    p50_ms: float
    p99_ms: float


def libpq_env(url: str) -> dict[str, str]:
    """PG* variables for `url`, so no password appears on a command line."""
    parts = urlsplit(url)
    env = {
        "PGHOST": parts.hostname or "127.0.0.1",
        "PGPORT": str(parts.port or 5432),
        "PGDATABASE": parts.path.lstrip("/"),
    }
    if parts.username:
        env["PGUSER"] = unquote(parts.username)
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    return env


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        raise ValueError("no samples")
    rank = max(1, round(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def read_latencies_us(log_dir: Path) -> list[float]:
    """Per-transaction latencies from pgbench's `--log` files (3rd field, microseconds)."""
    latencies: list[float] = []
    for path in log_dir.glob("pgbench_log*"):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():
                latencies.append(float(fields[2]))
    return latencies


def run(pgbench: str, url: str, text: str, *, clients: int, duration_s: int) -> PgbenchResult:
    """Run `text` with `clients` connections for `duration_s` seconds, prepared statements."""
    with tempfile.TemporaryDirectory(prefix="bench-pgbench-") as tmp:
        tmpdir = Path(tmp)
        script_file = tmpdir / "nearest.sql"
        script_file.write_text(text)
        command = [
            pgbench,
            "--no-vacuum",
            "--protocol=prepared",
            f"--client={clients}",
            f"--jobs={1 if clients == 1 else 2}",
            f"--time={duration_s}",
            f"--file={script_file}",
            "--log",
            f"--log-prefix={tmpdir / 'pgbench_log'}",
        ]
        result = subprocess.run(
            command,
            env={**os.environ, **libpq_env(url)},
            capture_output=True,
            text=True,
            timeout=duration_s + 120,
            check=False,
            cwd=tmpdir,
        )
        output = result.stdout + result.stderr
        if result.returncode != 0:
            raise RuntimeError(f"pgbench failed ({result.returncode}):\n{output}")
        latencies = sorted(read_latencies_us(tmpdir))
    failed = re.search(r"number of failed transactions: (\d+)", output)
    if failed and int(failed.group(1)):
        raise RuntimeError(f"pgbench reported failed transactions:\n{output}")
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", output)
    if not tps:
        raise RuntimeError(f"pgbench printed no tps:\n{output}")
    return PgbenchResult(
        clients=clients,
        tps=float(tps.group(1)),
        transactions=len(latencies),
        p50_ms=percentile(latencies, 50) / 1000,
        p99_ms=percentile(latencies, 99) / 1000,
    )

"""Peak memory of `seed.importer.read_dataset` on a streams file full of problems.

    python -m bench.import_memory [--rows N ...] [--valid] [--code DIR] [--limit-mib M]

Writes a streams CSV of N rows whose every cell is empty (13 problems a row; ten
million such rows once took the importer to 23.5 GB) and a one-row users CSV into a
temporary directory, then validates them in a fresh interpreter per N and prints its
peak RSS. `--valid` writes N good rows instead, for comparison. `--code` imports
`seed` from another checkout (e.g. an older commit's tree, for a before/after in
the same run). Each child runs under an address-space limit (`--limit-mib`, default
4096), so a version that needs more fails with MemoryError instead of the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

STREAMS_HEADER = (
    "stream_id,creator_id,city,latitude,longitude,language,category_id,title,description,"
    "avg_viewer_count,creator_followers,stream_quality_score,is_partnered,mature_content,tags\n"
)
USERS = (
    "user_id,city,latitude,longitude,language,timezone_offset,total_watch_hours,"
    "local_preference_strength,preferred_categories\n"
    "u1,Paris,48.8,2.3,fr,1,3,0.5,gaming|music\n"
)
CHILD = """
import json, resource, sys, time
from pathlib import Path
limit = int(sys.argv[3]) << 20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
started = time.perf_counter()
outcome = "accepted"
try:
    from seed.importer import InvalidDataError, read_dataset
    try:
        read_dataset(Path(sys.argv[1]), Path(sys.argv[2]))
    except InvalidDataError as error:
        total = getattr(error, "total", len(error.problems))
        outcome = f"refused: {total:,} problems, {len(error.problems):,} in full"
except MemoryError:
    outcome = "MemoryError"
print(json.dumps({
    "outcome": outcome,
    "seconds": round(time.perf_counter() - started, 1),
    "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
}))
"""


def write_streams(path: Path, rows: int, *, valid: bool) -> None:
    """`rows` rows of empty cells, or of distinct valid streams."""
    with path.open("w") as handle:
        handle.write(STREAMS_HEADER)
        if valid:
            line = "s{},c1,Paris,48.86,2.34,fr,gaming,A title,Words,10,200,5.5,false,false,a|b\n"
            for start in range(0, rows, 100_000):
                block = range(start, min(rows, start + 100_000))
                handle.write("".join(line.format(i) for i in block))
        else:
            for start in range(0, rows, 100_000):
                handle.write(("," * 14 + "\n") * (min(rows, start + 100_000) - start))


def main(argv: list[str] | None = None) -> int:
    """Measure each row count in turn and print one line per run."""
    parser = argparse.ArgumentParser(prog="python -m bench.import_memory")
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 2_000_000])
    parser.add_argument("--valid", action="store_true", help="good rows instead of empty ones")
    parser.add_argument("--code", type=Path, default=Path.cwd(), help="where `seed` is imported")
    parser.add_argument("--limit-mib", type=int, default=4096)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="import-memory-") as folder:
        users = Path(folder) / "users.csv"
        users.write_text(USERS)
        for rows in args.rows:
            streams = Path(folder) / "streams.csv"
            write_streams(streams, rows, valid=args.valid)
            size = streams.stat().st_size / 2**20
            child = subprocess.run(
                [sys.executable, "-c", CHILD, str(users), str(streams), str(args.limit_mib)],
                cwd=args.code,
                capture_output=True,
                text=True,
                check=False,
            )
            try:
                result = json.loads(child.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                result = {"outcome": f"crashed: {child.stderr.strip()[-300:]}"}
            kind = "valid" if args.valid else "empty"
            print(f"{rows:>10,} {kind} rows ({size:.0f} MiB): {json.dumps(result)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Progress lines for the benchmark: stderr, so stdout stays the markdown report."""

from __future__ import annotations

import sys


def say(message: str) -> None:
    """Print one progress line to stderr at once (the run is long, show it moving)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)

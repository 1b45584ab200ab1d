"""What the `python -m ml` command lines share (ml/cli.py, ml/feed/cli.py)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


def positive(text: str) -> int:
    """A whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def share(text: str) -> float:
    """A number strictly between 0 and 1."""
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {value}")
    return value


def fail(message: str) -> NoReturn:
    """One line on stderr and exit status 2: the user can fix this, it is no crash."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)

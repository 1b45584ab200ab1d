"""Checksummed artifact files, written atomically: shared by the click model and the reranker.

An artifact `model.bin` has its SHA-256 beside it in `model.bin.sha256`, in
`sha256sum` format, so `sha256sum -c` checks it by hand too. `write_checksummed`
writes each file to a temporary name in the same directory, flushes it to disk
and renames it into place, so a reader sees the old file or the new one, never
half of one. The two renames are not one step: `read_verified` reads the bytes
once, checks them against the checksum and, on a mismatch, waits a moment and
reads both once more (perhaps it was caught between the renames) before
refusing. The checksum guards against accidents, not attackers: whoever can
write the artifact can write its checksum.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

#: How long to wait before re-reading when the checksum does not match (see above).
_RETRY_S = 0.2


class ArtifactError(Exception):
    """A saved model cannot be used; the message says why and how to fix it."""


def checksum_path(path: Path) -> Path:
    """Where the checksum of the artifact at `path` lives."""
    return path.with_name(path.name + ".sha256")


def write_checksummed(path: Path, payload: bytes) -> str:
    """Write `payload` to `path`, then its checksum file, each atomically; return the digest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(payload).hexdigest()
    write_atomically(path, payload)
    write_atomically(checksum_path(path), f"{digest}  {path.name}\n".encode())
    return digest


def read_verified(
    path: Path, *, what: str, hint: str, error: type[ArtifactError]
) -> tuple[bytes, str]:
    """The artifact's bytes and digest, once they match the checksum file.

    Args:
        path: the artifact.
        what: how messages name it, e.g. "click model".
        hint: how to make a good one, appended to every message.
        error: the exception class to raise.

    Raises:
        error: the file is missing or unreadable, its checksum file is missing
            or unreadable, or the bytes do not match the checksum (twice).
    """
    for attempt in range(2):
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            raise error(f"no {what} at {path}; {hint}") from None
        except OSError as exc:
            raise error(f"cannot read the {what} {path}: {exc}; {hint}") from exc
        digest = hashlib.sha256(payload).hexdigest()
        expected = _expected_digest(path)
        if digest == expected:
            return payload, digest
        if attempt == 0:
            time.sleep(_RETRY_S)  # perhaps caught between the two renames of a save
    if expected is None:
        raise error(
            f"the {what} {path} has no readable checksum file {checksum_path(path).name}; {hint}"
        )
    raise error(
        f"the {what} {path} does not match its checksum (sha256 {digest},"
        f" expected {expected}): the file is damaged or incomplete; {hint}"
    )


def _expected_digest(path: Path) -> str | None:
    """The digest the checksum file records, or None if it is missing or unreadable."""
    try:
        words = checksum_path(path).read_text().split()
    except (OSError, UnicodeDecodeError):
        return None
    return words[0].lower() if words else None


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename over `path`."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the model from a server's user
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

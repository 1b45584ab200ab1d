"""The current request: its id and what the code it ran noted for the metrics.

One `RequestRecord` per HTTP request lives in a context variable that the
middleware sets, so any code on the request path can read the id (for log lines
and the HOMETOWN body) or note what it did, without the web framework or the
metrics registry being passed down to it. Outside a request both are no-ops.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class RequestRecord:
    """One request's id and notes; the middleware reads the notes after the response."""

    request_id: str
    #: "hometown" or "hometown-ml" once a search finished, with what it took.
    scenario: str | None = None
    candidates_read: int = 0
    rings: int = 0
    #: Live-status update outcomes ("applied", "stale", ...) and how many of each.
    updates: dict[str, int] | None = None


_current: ContextVar[RequestRecord | None] = ContextVar("hometown_request", default=None)


def current_request() -> RequestRecord | None:
    """The record of the request being served, or None outside one."""
    return _current.get()


def current_request_id() -> str | None:
    """The id of the request being served (the `X-Request-ID` it answers with)."""
    record = _current.get()
    return record.request_id if record is not None else None


def note_search(scenario: str, *, candidates_read: int, rings: int) -> None:
    """Record a finished search: rows read over all rings, and how many rings it used."""
    record = _current.get()
    if record is not None:
        record.scenario = scenario
        record.candidates_read = candidates_read
        record.rings = rings


def note_status_updates(outcomes: Iterable[str]) -> None:
    """Record the outcome of each live-status update the request applied."""
    record = _current.get()
    if record is None:
        return
    counts = record.updates if record.updates is not None else {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    record.updates = counts


def begin_request(request_id: str) -> tuple[RequestRecord, object]:
    """Make a fresh record current; returns it and the token `end_request` wants."""
    record = RequestRecord(request_id)
    return record, _current.set(record)


def end_request(token: object) -> None:
    """Restore whatever was current before `begin_request`."""
    _current.reset(token)  # type: ignore[arg-type]

"""Observability: request ids, structured logs, Prometheus metrics, readiness.

The request path pays for it once per request in `middleware.Observability`: one
context variable set, one histogram observation, one access line. Code deeper
down (the search, the live-status writes) only notes what it did on the
request's record (`context.note_search`, `context.note_status_updates`); the
middleware turns those notes into metrics when the response has gone out.
"""

"""Every endpoint that takes a body gets the same hand-written battery of bad input.

`test_hometown_input.py` covers `/v1/scenarios/hometown` field by field; this module
applies one battery to all nine body-taking operations (hometown, hometown-ml,
home_feed, category_feed, the live-status batch, single live and offline, the profile
PUT, the event batch): malformed JSON, an empty
body, the wrong content type, an oversized body (`MAX_BODY_BYTES`, 413), unknown
fields, huge, negative and non-finite numbers, unicode and very long ids. Each must be
refused with the exact 4xx, as JSON, naming the field or the problem. SQL
metacharacters in ids and filters must give a 4xx or a correct 200, and leave the
data as it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from litestar.testing import TestClient

from app.main import create_app
from app.settings import Settings
from seed.loader import load
from tests.support import frames
from tests.support.db import DROP_EVENT_MONTHS, fetch, run_sql
from tests.support.models import saved_model

KEY = "battery-key-0123456789-abcdef"
MAX_BODY = 64 * 1024
STREAM = "stream_000000"
HERE = {"latitude": 48.85, "longitude": 2.35}
AT = "2026-11-01T12:00:00+00:00"
FEED = {"user_id": "user_000000", "ctx_timestamp": 1718803200, "ctx_device": "ios"}
CATEGORY = {**FEED, "category_id": "gaming"}
PROFILE = {
    "creator_id": "me", "city": "Oslo", "latitude": 59.91, "longitude": 10.75, "language": "no",
    "category_id": "music", "title": "Live from Oslo", "avg_viewer_count": 0,
    "creator_followers": 0, "stream_quality_score": 7.5, "is_partnered": False,
    "mature_content": False,
}  # fmt: skip


@dataclass(frozen=True)
class Endpoint:
    """One body-taking operation and a body it accepts."""

    method: str
    path: str
    valid: dict[str, Any]
    optional_body: bool = False

    def route(self, stream_id: str = STREAM) -> str:
        return self.path.replace("{stream_id}", stream_id)


ENDPOINTS = {
    "hometown": Endpoint("POST", "/v1/scenarios/hometown", HERE),
    "hometown-ml": Endpoint("POST", "/v1/scenarios/hometown-ml", HERE),
    "live-status": Endpoint(
        "POST",
        "/v1/streams/live-status",
        {"updates": [{"stream_id": STREAM, "is_live": True, "at": AT}]},
    ),
    "live": Endpoint(
        "POST", "/v1/streams/{stream_id}/live", {"current_viewer_count": 5}, optional_body=True
    ),
    "offline": Endpoint("POST", "/v1/streams/{stream_id}/offline", {"at": AT}, optional_body=True),
    "profile": Endpoint("PUT", "/v1/streams/{stream_id}", PROFILE),
    "home_feed": Endpoint("POST", "/v1/scenarios/home_feed", FEED),
    "category_feed": Endpoint("POST", "/v1/scenarios/category_feed", CATEGORY),
    "events": Endpoint(
        "POST",
        "/v1/events",
        {
            "events": [
                {
                    "event_id": "battery-1",
                    "type": "click",
                    "user_id": "user_000000",
                    "stream_id": STREAM,
                    "at": AT,
                }
            ]
        },
    ),
}
NAMES = list(ENDPOINTS)
COUNTS_SQL = (
    "SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM streams) AS streams,"
    " (SELECT count(*) FROM interactions) AS interactions"
)


@pytest.fixture(scope="module")
def loaded(migrated_url: str) -> Iterator[str]:
    load(migrated_url, frames.dataset(3, 5))
    try:
        yield migrated_url
    finally:
        run_sql(migrated_url, "TRUNCATE interactions, streams, users, events")
        run_sql(migrated_url, DROP_EVENT_MONTHS)


@pytest.fixture(scope="module")
def client(loaded: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient[Any]]:
    _, model_path = saved_model(tmp_path_factory.mktemp("battery-model"))
    settings = Settings(
        DATABASE_URL=loaded,
        API_KEY=KEY,
        MODEL_PATH=str(model_path),
        MAX_BODY_BYTES=MAX_BODY,
        ACCESS_LOG=False,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _send(
    client: TestClient[Any],
    endpoint: Endpoint,
    content: bytes,
    content_type: str | None = "application/json",
    stream_id: str = STREAM,
) -> Any:
    headers = {"X-API-Key": KEY}
    if content_type is not None:
        headers["content-type"] = content_type
    return client.request(
        endpoint.method, endpoint.route(stream_id), content=content, headers=headers
    )


def _refused(response: Any, status: int, *names: str) -> dict[str, Any]:
    """Exactly `status`, JSON, `{"status_code", "detail"}`, naming every one of `names`."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and body.get("status_code") == status and body["detail"], body
    text = json.dumps(body, ensure_ascii=False)
    for name in names:
        assert name in text, f"{name!r} not named in {text[:500]}"
    return body


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode()


# --- the body as a whole ---------------------------------------------------------------

#: Bodies broken before anything else is wrong with them (the strict decoder reports the
#: first problem it meets, so a broken body must not start with an unknown field).
RAW: dict[str, tuple[bytes, str]] = {
    "truncated": (b'{"', "not valid JSON"),
    "unclosed_string": (b'{"abc', "not valid JSON"),
    "not_json": (b"hello", "not valid JSON"),
    "single_quotes": (b"{'a': 1}", "not valid JSON"),
    "trailing_comma": (b"{,}", "not valid JSON"),
    "trailing_garbage": (b"", "not valid JSON"),  # after the endpoint's valid body
    "nan_literal": (b"NaN", "not valid JSON"),
    "not_utf8": (b'{"\xff\xfe": 1}', "not valid JSON"),
    "bom": (b"\xef\xbb\xbf{}", "not valid JSON"),
    "array": (b"[]", "Expected `object"),
    "number": (b"42", "Expected `object"),
    "string": (b'"x"', "Expected `object"),
    "null": (b"null", "Expected `object"),
    "deeply_nested": (b"[" * 30_000 + b"]" * 30_000, "Expected `object"),
}


@pytest.mark.parametrize("raw", list(RAW))
@pytest.mark.parametrize("name", NAMES)
def test_malformed_bodies_are_400(client: TestClient[Any], name: str, raw: str) -> None:
    content, problem = RAW[raw]
    if raw == "trailing_garbage":
        content = _json(ENDPOINTS[name].valid) + b" x"
    response = _send(client, ENDPOINTS[name], content)
    if raw == "null" and ENDPOINTS[name].optional_body:
        # An optional body may be JSON `null`, as the schema documents: the defaults.
        assert response.status_code == 200, response.text[:500]
        return
    _refused(response, 400, problem)


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_body(client: TestClient[Any], name: str) -> None:
    """Refused where a body is required; the optional bodies of live/offline default."""
    endpoint = ENDPOINTS[name]
    response = _send(client, endpoint, b"")
    if endpoint.optional_body:
        assert response.status_code == 200, response.text[:500]
        assert response.json()["stream_id"] == STREAM
    else:
        _refused(response, 400, "not valid JSON")


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/xml", "json"],
)
@pytest.mark.parametrize("name", NAMES)
def test_wrong_content_type_is_415(
    client: TestClient[Any], name: str, content_type: str | None
) -> None:
    endpoint = ENDPOINTS[name]
    _refused(_send(client, endpoint, _json(endpoint.valid), content_type), 415, "Content-Type")


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/x+json"])
@pytest.mark.parametrize("name", NAMES)
def test_json_content_types_are_accepted(
    client: TestClient[Any], name: str, content_type: str
) -> None:
    endpoint = ENDPOINTS[name]
    response = _send(client, endpoint, _json(endpoint.valid), content_type)
    assert response.status_code in (200, 201), response.text[:500]


@pytest.mark.parametrize("name", NAMES)
def test_an_oversized_body_is_413(client: TestClient[Any], name: str) -> None:
    endpoint = ENDPOINTS[name]
    padded = {**endpoint.valid, "padding": "x" * (MAX_BODY + 1)}
    _refused(_send(client, endpoint, _json(padded)), 413)


@pytest.mark.parametrize("name", NAMES)
def test_a_body_just_under_the_limit_is_read(client: TestClient[Any], name: str) -> None:
    """Close to the limit the body is still read and judged (400: unknown field)."""
    endpoint = ENDPOINTS[name]
    body = _json({**endpoint.valid, "padding": ""})
    padded = _json({**endpoint.valid, "padding": "x" * (MAX_BODY - len(body) - 1)})
    assert len(padded) < MAX_BODY
    _refused(_send(client, endpoint, padded), 400, "padding")


@pytest.mark.parametrize("name", NAMES)
def test_unknown_fields_are_400_naming_them(client: TestClient[Any], name: str) -> None:
    endpoint = ENDPOINTS[name]
    body = {**endpoint.valid, "surprise_field": 1}
    _refused(_send(client, endpoint, _json(body)), 400, "surprise_field")


# --- fields: numbers, ids, strings -----------------------------------------------------


def _update(**fields: Any) -> dict[str, Any]:
    return {"updates": [{"stream_id": STREAM, "is_live": True, "at": AT, **fields}]}


LONG = "s" * 10_000
NO_TITLE = {k: v for k, v in PROFILE.items() if k != "title"}
FIELDS: list[tuple[str, str, bytes, str]] = [
    # hometown and hometown-ml share the request: the ML endpoint must refuse the same way
    *[
        case
        for name in ("hometown", "hometown-ml")
        for case in [
            (name, "max_results_huge", _json({**HERE, "max_results": 10**9}), "max_results"),
            (name, "max_results_2^64", _json({**HERE, "max_results": 2**64}), "max_results"),
            (name, "max_results_negative", _json({**HERE, "max_results": -1}), "max_results"),
            (name, "radius_negative", _json({**HERE, "radius_km": -5}), "radius_km"),
            (name, "radius_nan", b'{"latitude": 1, "longitude": 2, "radius_km": NaN}', "JSON"),
            (name, "latitude_inf", b'{"latitude": Infinity, "longitude": 2}', "JSON"),
            (name, "latitude_1e400", b'{"latitude": 1e400, "longitude": 2}', "latitude"),
            (name, "strength_nan", _json({**HERE, "local_preference_strength": "NaN"}), "local"),
            (name, "user_id_10000", _json({"user_id": LONG}), "user_id"),
            (name, "user_id_nul", _json({"user_id": "a\u0000b"}), "user_id"),
            (name, "language_surrogate", _json({**HERE, "language": "\ud800"}), "not valid JSON"),
        ]
    ],
    *[
        case
        for name, valid in (("home_feed", FEED), ("category_feed", CATEGORY))
        for case in [
            (name, "user_id_missing", _json({"ctx_device": "ios"}), "user_id"),
            (name, "user_id_10000", _json({**valid, "user_id": LONG}), "user_id"),
            (name, "user_id_number", _json({**valid, "user_id": 7}), "user_id"),
            (name, "max_results_0", _json({**valid, "max_results": 0}), "max_results"),
            (name, "max_results_101", _json({**valid, "max_results": 101}), "max_results"),
            (name, "timestamp_negative", _json({**valid, "ctx_timestamp": -1}), "ctx_timestamp"),
            (name, "timestamp_huge", _json({**valid, "ctx_timestamp": 10**20}), "ctx_timestamp"),
            (name, "timestamp_string", _json({**valid, "ctx_timestamp": "now"}), "ctx_timestamp"),
            (name, "timestamp_fraction", _json({**valid, "ctx_timestamp": 1.5}), "ctx_timestamp"),
            (name, "device_unknown", _json({**valid, "ctx_device": "toaster"}), "ctx_device"),
            (name, "locale_words", _json({**valid, "ctx_locale": "english!"}), "ctx_locale"),
            (name, "locale_long", _json({**valid, "ctx_locale": "en_" + "x" * 40}), "ctx_locale"),
            (name, "explain_string", _json({**valid, "explain": "yes"}), "explain"),
        ]
    ],
    ("category_feed", "category_missing", _json(FEED), "category_id"),
    ("category_feed", "category_empty", _json({**FEED, "category_id": ""}), "category_id"),
    ("category_feed", "category_nul", _json({**FEED, "category_id": "a\u0000"}), "category_id"),
    ("home_feed", "category_not_a_field", _json(CATEGORY), "category_id"),
    ("live-status", "no_updates", _json({"updates": []}), "updates"),
    ("live-status", "updates_null", _json({"updates": None}), "updates"),
    ("live-status", "update_unknown_field", _json(_update(viewers=3)), "viewers"),
    ("live-status", "viewers_negative", _json(_update(current_viewer_count=-1)), "current_"),
    ("live-status", "viewers_huge", _json(_update(current_viewer_count=10**30)), "current_"),
    ("live-status", "viewers_fraction", _json(_update(current_viewer_count=1.5)), "current_"),
    ("live-status", "viewers_nan", _json(_update(current_viewer_count="NaN")), "current_"),
    ("live-status", "at_naive", _json(_update(at="2026-11-01T12:00:00")), "at"),
    ("live-status", "at_words", _json(_update(at="yesterday")), "at"),
    ("live-status", "at_epoch", _json(_update(at=1_700_000_000)), "at"),
    ("live-status", "is_live_string", _json(_update(is_live="yes")), "is_live"),
    ("live-status", "stream_id_10000", _json(_update(stream_id=LONG)), "stream_id"),
    ("live-status", "stream_id_empty", _json(_update(stream_id="")), "stream_id"),
    ("live-status", "stream_id_nul", _json(_update(stream_id="a\u0000")), "stream_id"),
    ("live-status", "stream_id_surrogate", _json(_update(stream_id="\udc00")), "surrogate pair"),
    ("live", "viewers_negative", _json({"current_viewer_count": -1}), "current_viewer_count"),
    ("live", "viewers_huge", _json({"current_viewer_count": 2**63}), "current_viewer_count"),
    ("live", "viewers_string", _json({"current_viewer_count": "5"}), "current_viewer_count"),
    ("live", "viewers_inf", b'{"current_viewer_count": -Infinity}', "JSON"),
    ("live", "at_naive", _json({"at": "2026-11-01T12:00:00"}), "at"),
    ("offline", "at_number", _json({"at": 12345}), "at"),
    ("offline", "viewers_not_a_field", _json({"current_viewer_count": 3}), "current_"),
    ("profile", "latitude_91", _json({**PROFILE, "latitude": 91}), "latitude"),
    ("profile", "longitude_nan", _json({**PROFILE, "longitude": "NaN"}), "longitude"),
    ("profile", "longitude_1e400", json.dumps(PROFILE).replace("10.75", "1e400").encode(), "long"),
    ("profile", "viewers_negative", _json({**PROFILE, "avg_viewer_count": -1}), "avg_viewer"),
    ("profile", "followers_huge", _json({**PROFILE, "creator_followers": 10**20}), "creator_"),
    ("profile", "quality_11", _json({**PROFILE, "stream_quality_score": 11}), "stream_quality"),
    ("profile", "duration_0", _json({**PROFILE, "typical_duration_minutes": 0}), "typical_"),
    ("profile", "title_null", _json({**PROFILE, "title": None}), "title"),
    ("profile", "title_missing", _json(NO_TITLE), "title"),
    ("profile", "creator_id_10000", _json({**PROFILE, "creator_id": LONG}), "creator_id"),
    ("profile", "city_empty", _json({**PROFILE, "city": ""}), "city"),
    ("profile", "title_nul", _json({**PROFILE, "title": "a\u0000b"}), "title"),
    ("profile", "tags_101", _json({**PROFILE, "tags": ["t"] * 101}), "tags"),
    ("profile", "tags_empty_tag", _json({**PROFILE, "tags": [""]}), "tags"),
    ("profile", "description_10001", _json({**PROFILE, "description": "d" * 10_001}), "descr"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "body", "problem"),
    [(n, b, p) for n, _, b, p in FIELDS],
    ids=[f"{n}-{i}" for n, i, _, _ in FIELDS],
)
def test_bad_fields_are_400_naming_them(
    client: TestClient[Any], name: str, body: bytes, problem: str
) -> None:
    _refused(_send(client, ENDPOINTS[name], body), 400, problem)


PATH_NAMES = [n for n in NAMES if "{stream_id}" in ENDPOINTS[n].path]


@pytest.mark.parametrize("stream_id", ["s" * 201, "s" * 10_000], ids=["201", "10000"])
@pytest.mark.parametrize("name", PATH_NAMES)
def test_long_path_ids_are_400(client: TestClient[Any], name: str, stream_id: str) -> None:
    endpoint = ENDPOINTS[name]
    _refused(_send(client, endpoint, _json(endpoint.valid), stream_id=stream_id), 400, "stream_id")


@pytest.mark.parametrize("name", PATH_NAMES)
def test_a_nul_in_the_path_id_is_400(client: TestClient[Any], name: str) -> None:
    endpoint = ENDPOINTS[name]
    _refused(_send(client, endpoint, _json(endpoint.valid), stream_id="a%00b"), 400, "stream_id")


@pytest.mark.parametrize("stream_id", ["ストリーム_😀", "مستخدم", "Ünïcødé\u200b"])
@pytest.mark.parametrize("name", ["live", "offline"])
def test_unicode_path_ids_are_unknown_streams(
    client: TestClient[Any], name: str, stream_id: str
) -> None:
    endpoint = ENDPOINTS[name]
    response = _send(client, endpoint, _json(endpoint.valid), stream_id=stream_id)
    body = _refused(response, 404)
    assert stream_id in body["detail"] or repr(stream_id)[1:-1] in body["detail"], body


# --- SQL metacharacters: a 4xx or a correct answer, and the data unchanged ---------------

SQL = [
    "'; DROP TABLE streams; --",
    "stream_000000' OR '1'='1",
    "%",
    "_",
    "\\",
    "stream_%",
    "\u0000",
]


def _sql_requests(meta: str) -> list[tuple[Endpoint, bytes, str]]:
    """(endpoint, body, path id) requests that carry `meta` in an id or a filter."""
    hometown, ml = ENDPOINTS["hometown"], ENDPOINTS["hometown-ml"]
    batch = ENDPOINTS["live-status"]
    requests = [
        (ep, _json(body), STREAM)
        for ep in (hometown, ml)
        for body in (
            {"user_id": meta},
            {**HERE, "languages": [meta]},
            {**HERE, "category_ids": [meta]},
            {**HERE, "language": meta, "preferred_categories": [meta]},
        )
    ]
    requests.append((batch, _json(_update(stream_id=meta)), STREAM))
    quoted = meta.replace("%", "%25").replace("\u0000", "%00")
    for name in ("live", "offline"):
        requests.append((ENDPOINTS[name], _json(ENDPOINTS[name].valid), quoted))
    requests.append((ENDPOINTS["profile"], _json({**PROFILE, "creator_id": meta}), STREAM))
    for name in ("home_feed", "category_feed"):
        requests.append(
            (ENDPOINTS[name], _json({**ENDPOINTS[name].valid, "user_id": meta}), STREAM)
        )
    return requests


@pytest.mark.parametrize("meta", SQL, ids=repr)
def test_sql_metacharacters_in_a_category_match_nothing(client: TestClient[Any], meta: str) -> None:
    response = _send(client, ENDPOINTS["category_feed"], _json({**FEED, "category_id": meta}))
    if meta == "\u0000":
        _refused(response, 400, "category_id")
        return
    assert response.status_code == 200, response.text[:300]
    answer = response.json()
    assert answer["streams"] == [] and answer["live_in_category"] == 0, answer
    assert "only 0 live streams" in answer["note"], answer


@pytest.mark.parametrize("meta", SQL, ids=repr)
def test_sql_metacharacters_never_reach_sql(
    client: TestClient[Any], loaded: str, meta: str
) -> None:
    (before,) = fetch(loaded, COUNTS_SQL)
    for endpoint, body, stream_id in _sql_requests(meta):
        response = _send(client, endpoint, body, stream_id=stream_id)
        where = (endpoint.method, endpoint.route(stream_id), body[:200])
        assert response.status_code < 500, (*where, response.status_code, response.text[:300])
        assert response.headers["content-type"].startswith("application/json"), where
        if response.status_code >= 400:
            _refused(response, response.status_code)
            continue
        answer = response.json()
        if "user_id" in answer or b'"user_id"' in body:
            raise AssertionError((where, "an unknown user_id answered 200", answer))
        if b'"languages"' in body or b'"category_ids"' in body:
            assert answer["streams"] == [], (where, "a filter that matches nothing matched")
        if "results" in answer:
            assert [r["status"] for r in answer["results"]] == ["unknown"], (where, answer)
    (after,) = fetch(loaded, COUNTS_SQL)
    assert dict(after) == dict(before)
    # The profile PUT stored the text as given (or refused it, for the NUL).
    [row] = fetch(loaded, "SELECT creator_id FROM streams WHERE stream_id = $1", STREAM)
    assert row["creator_id"] == meta or meta == "\u0000"

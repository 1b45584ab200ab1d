"""`POST /v1/scenarios/hometown` refuses bad input with a 4xx JSON body that names the problem.

Never a 5xx: malformed JSON, wrong types, out-of-range numbers, unknown fields,
contradictory or missing viewer fields, oversized lists, hostile ids (SQL
metacharacters, NUL bytes, lone surrogates, 10,000 characters) all end in 400 (or 404
for a well-formed id nobody has). A valid request on an empty database is a 200 with
no streams.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from app.main import create_app
from app.settings import Settings
from seed.loader import load
from tests.support import frames, oracle
from tests.support.db import fetch, run_sql

ROUTE = "/v1/scenarios/hometown"
HERE = {"latitude": 48.85, "longitude": 2.35}  # Paris, where tests/support/frames puts everyone


@pytest.fixture(scope="module")
def client(migrated_url: str) -> Iterator[TestClient[Any]]:
    """One app for the module; the tests that need rows load them through `db_url`."""
    with TestClient(create_app(Settings(DATABASE_URL=migrated_url, ACCESS_LOG=False))) as c:
        yield c


def _post_raw(
    client: TestClient[Any], content: bytes, content_type: str = "application/json"
) -> Any:
    return client.post(ROUTE, content=content, headers={"content-type": content_type})


def _assert_refused(
    response: Any, *names: str, statuses: tuple[int, ...] = (400,)
) -> dict[str, Any]:
    """A 4xx (one of `statuses`), JSON, whose body mentions every one of `names`."""
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and body.get("status_code") == response.status_code, body
    text = json.dumps(body, ensure_ascii=False)
    for name in names:
        assert name in text, f"{name!r} not named in {text[:500]}"
    return body


# --- malformed bodies ------------------------------------------------------------------

RAW_BODIES: dict[str, bytes] = {
    "empty": b"",
    "array": b"[]",
    "null": b"null",
    "number": b"42",
    "string": b'"user_000001"',
    "truncated": b'{"user_id": "u"',
    "trailing_garbage": b'{"user_id": "u"} x',
    "single_quotes": b"{'user_id': 'u'}",
    "not_utf8": b'{"user_id": "\xff\xfe"}',
    "deeply_nested": b'{"user_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "nan_radius": b'{"latitude": 1, "longitude": 2, "radius_km": NaN}',
    "infinity_radius": b'{"latitude": 1, "longitude": 2, "radius_km": Infinity}',
    "overflowing_radius": b'{"latitude": 1, "longitude": 2, "radius_km": 1e400}',
    "overflowing_latitude": b'{"latitude": -1e400, "longitude": 2}',
}


@pytest.mark.parametrize("name", list(RAW_BODIES))
def test_malformed_bodies_are_400(client: TestClient[Any], name: str) -> None:
    _assert_refused(_post_raw(client, RAW_BODIES[name]))


def test_wrong_content_type_is_refused(client: TestClient[Any]) -> None:
    body = json.dumps({"user_id": "user_000001"}).encode()
    _assert_refused(_post_raw(client, body, "text/plain"), statuses=(400, 415))


def test_get_is_not_allowed(client: TestClient[Any]) -> None:
    response = client.get(ROUTE)
    assert response.status_code == 405


# --- fields: types, ranges, combinations ------------------------------------------------

LONG_LIST = [f"c{i}" for i in range(10_000)]
BAD_FIELDS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("nothing", {}, ("user_id", "latitude")),
    ("user_and_location", {"user_id": "u", **HERE}, ("latitude", "longitude")),
    ("user_and_latitude", {"user_id": "u", "latitude": 1.0}, ("latitude",)),
    ("user_and_language", {"user_id": "u", "language": "fr"}, ("language",)),
    (
        "user_and_preferences",
        {"user_id": "u", "preferred_categories": ["gaming"]},
        ("preferred_categories",),
    ),
    (
        "user_and_strength",
        {"user_id": "u", "local_preference_strength": 0.5},
        ("local_preference_strength",),
    ),
    ("latitude_alone", {"latitude": 1.0}, ("longitude",)),
    ("longitude_alone", {"longitude": 1.0}, ("latitude",)),
    ("latitude_null", {"latitude": None, "longitude": 1.0}, ("latitude",)),
    ("language_without_location", {"language": "fr"}, ("latitude",)),
    ("latitude_91", {"latitude": 91, "longitude": 0}, ("latitude",)),
    ("latitude_below_south_pole", {"latitude": -90.0001, "longitude": 0}, ("latitude",)),
    ("longitude_180_5", {"latitude": 0, "longitude": 180.5}, ("longitude",)),
    ("longitude_minus_181", {"latitude": 0, "longitude": -181}, ("longitude",)),
    ("latitude_string", {"latitude": "10", "longitude": 0}, ("latitude",)),
    ("latitude_bool", {"latitude": True, "longitude": 0}, ("latitude",)),
    ("longitude_list", {"latitude": 0, "longitude": [1]}, ("longitude",)),
    ("strength_1_2", {**HERE, "local_preference_strength": 1.2}, ("local_preference_strength",)),
    (
        "strength_negative",
        {**HERE, "local_preference_strength": -0.1},
        ("local_preference_strength",),
    ),
    (
        "strength_string",
        {**HERE, "local_preference_strength": "high"},
        ("local_preference_strength",),
    ),
    ("max_results_0", {**HERE, "max_results": 0}, ("max_results",)),
    ("max_results_101", {**HERE, "max_results": 101}, ("max_results",)),
    ("max_results_negative", {**HERE, "max_results": -5}, ("max_results",)),
    ("max_results_string", {**HERE, "max_results": "20"}, ("max_results",)),
    ("max_results_fraction", {**HERE, "max_results": 20.5}, ("max_results",)),
    ("max_results_1e30", {**HERE, "max_results": 1e30}, ("max_results",)),
    ("max_results_huge_int", {**HERE, "max_results": 10**30}, ("max_results",)),
    ("max_results_bool", {**HERE, "max_results": True}, ("max_results",)),
    ("max_results_null", {**HERE, "max_results": None}, ("max_results",)),
    ("radius_0", {**HERE, "radius_km": 0}, ("radius_km",)),
    ("radius_negative_zero", {**HERE, "radius_km": -0.0}, ("radius_km",)),
    ("radius_negative", {**HERE, "radius_km": -1}, ("radius_km",)),
    ("radius_20001", {**HERE, "radius_km": 20001}, ("radius_km",)),
    ("radius_string", {**HERE, "radius_km": "far"}, ("radius_km",)),
    ("radius_null", {**HERE, "radius_km": None}, ("radius_km",)),
    ("unknown_field", {**HERE, "foo": 1}, ("foo",)),
    ("unknown_field_with_user", {"user_id": "u", "foo": "bar"}, ("foo",)),
    ("user_id_empty", {"user_id": ""}, ("user_id",)),
    ("user_id_10000_chars", {"user_id": "u" * 10_000}, ("user_id",)),
    ("user_id_number", {"user_id": 42}, ("user_id",)),
    ("user_id_list", {"user_id": ["user_000001"]}, ("user_id",)),
    ("user_id_object", {"user_id": {"$ne": None}}, ("user_id",)),
    ("language_number", {**HERE, "language": 5}, ("language",)),
    ("language_empty", {**HERE, "language": ""}, ("language",)),
    ("preferred_not_list", {**HERE, "preferred_categories": "music"}, ("preferred_categories",)),
    ("languages_not_list", {**HERE, "languages": "en"}, ("languages",)),
    ("languages_numbers", {**HERE, "languages": [1, 2]}, ("languages",)),
    ("languages_empty_string", {**HERE, "languages": [""]}, ("languages",)),
    ("languages_null_item", {**HERE, "languages": [None]}, ("languages",)),
    ("category_ids_not_list", {**HERE, "category_ids": {"a": 1}}, ("category_ids",)),
    ("category_ids_10000", {**HERE, "category_ids": LONG_LIST}, ("category_ids",)),
    ("languages_10000", {**HERE, "languages": LONG_LIST}, ("languages",)),
    ("preferred_10000", {**HERE, "preferred_categories": LONG_LIST}, ("preferred_categories",)),
    ("category_id_too_long", {**HERE, "category_ids": ["c" * 10_000]}, ("category_ids",)),
    ("include_mature_string", {**HERE, "include_mature": "no"}, ("include_mature",)),
    ("include_mature_int", {**HERE, "include_mature": 0}, ("include_mature",)),
    ("explain_int", {**HERE, "explain": 1}, ("explain",)),
]


@pytest.mark.parametrize(
    ("body", "names"), [(b, n) for _, b, n in BAD_FIELDS], ids=[i for i, _, _ in BAD_FIELDS]
)
def test_bad_fields_are_400_naming_them(
    client: TestClient[Any], body: dict[str, Any], names: tuple[str, ...]
) -> None:
    _assert_refused(client.post(ROUTE, json=body), *names)


# --- ids and strings nobody expects: 404 or 400, never a crash --------------------------

ODD_IDS = [
    "'; DROP TABLE streams; --",
    '"; DROP TABLE streams; --',
    "user_000001' OR '1'='1",
    "%",
    "_",
    "\\",
    "ユーザー_😀",
    "مستخدم",
    "Ünïcødé\u200b",
    " user_000001",
    "user_000001\n",
]


@pytest.mark.parametrize("user_id", ODD_IDS)
def test_odd_user_ids_are_unknown_users(db_url: str, user_id: str) -> None:
    load(db_url, frames.dataset(3, 5))
    with TestClient(create_app(Settings(DATABASE_URL=db_url, ACCESS_LOG=False))) as client:
        response = client.post(ROUTE, json={"user_id": user_id})
    body = _assert_refused(response, statuses=(404, 400))
    if response.status_code == 404:  # named as given, or escaped (repr) if unprintable
        text = json.dumps(body, ensure_ascii=False)
        assert user_id in text or repr(user_id)[1:-1] in body["detail"], body
    [row] = fetch(
        db_url, "SELECT to_regclass('public.streams') IS NOT NULL AS t, count(*) AS n FROM streams"
    )
    assert row["t"] and row["n"] == 5


HOSTILE_STRINGS = ["a\u0000b", "\u0000", "\ud800", "\udfff\ud800", "\u202e" * 64]


@pytest.mark.parametrize("text", HOSTILE_STRINGS, ids=repr)
@pytest.mark.parametrize(
    "field", ["user_id", "language", "languages", "category_ids", "preferred_categories"]
)
def test_nul_bytes_and_lone_surrogates_never_crash(
    client: TestClient[Any], field: str, text: str
) -> None:
    """Strings PostgreSQL cannot store (NUL) or UTF-8 cannot encode (lone surrogates)."""
    value: Any = [text] if field in {"languages", "category_ids", "preferred_categories"} else text
    body = {field: value} if field == "user_id" else {**HERE, field: value}
    # Written by hand: the surrogates must reach the server as JSON escapes.
    raw = json.dumps(body, ensure_ascii=True).encode()
    response = _post_raw(client, raw)
    assert response.status_code < 500, (field, text, response.status_code, response.text[:500])
    if response.status_code != 200:
        _assert_refused(response, statuses=(400, 404))


@pytest.mark.parametrize("text", ["a\rb", "\x1b[31m", "two\nlines", "del\x7f", "c1\x85"], ids=repr)
@pytest.mark.parametrize("field", ["user_id", "language", "languages", "preferred_categories"])
def test_control_characters_but_tab_are_refused_naming_the_field(
    client: TestClient[Any], field: str, text: str
) -> None:
    """No stored id or code holds one (the importer refuses them too), so say so."""
    value: Any = [text] if field in {"languages", "preferred_categories"} else text
    body = {field: value} if field == "user_id" else {**HERE, field: value}
    _assert_refused(client.post(ROUTE, json=body), field)


def test_a_whole_number_written_with_a_point_is_an_integer(client: TestClient[Any]) -> None:
    """JSON Schema calls 5.0 an integer, so the schema's `integer` admits it; so does the app."""
    response = client.post(ROUTE, json={**HERE, "max_results": 5.0})
    assert response.status_code == 200, response.text
    for value in (5.5, "5", True):
        _assert_refused(client.post(ROUTE, json={**HERE, "max_results": value}), "max_results")


def test_a_tab_is_text(client: TestClient[Any]) -> None:
    response = client.post(ROUTE, json={**HERE, "language": "e\tn", "languages": ["f\tr"]})
    assert response.status_code == 200, response.text


def test_lists_at_the_limit_are_accepted(client: TestClient[Any]) -> None:
    hundred = [f"c{i}" for i in range(100)]
    response = client.post(
        ROUTE,
        json={
            **HERE,
            "languages": hundred,
            "category_ids": hundred,
            "preferred_categories": hundred,
        },
    )
    assert response.status_code == 200, response.text[:500]


@pytest.mark.parametrize(
    "body",
    [
        {"latitude": 90, "longitude": 180},
        {"latitude": -90, "longitude": -180},
        {**HERE, "max_results": 1, "radius_km": 1e-9},
        {**HERE, "max_results": 100, "radius_km": 20000},
        {**HERE, "local_preference_strength": 0},
        {**HERE, "local_preference_strength": 1},
        {"user_id": None, **HERE},
        {**HERE, "languages": None, "category_ids": None, "language": None},
    ],
    ids=lambda b: ",".join(f"{k}={v}" for k, v in b.items()),
)
def test_boundary_values_are_accepted(client: TestClient[Any], body: dict[str, Any]) -> None:
    response = client.post(ROUTE, json=body)
    assert response.status_code == 200, response.text[:500]
    assert isinstance(response.json()["streams"], list)


# --- the database side ------------------------------------------------------------------


def test_empty_database_gives_200_and_no_streams(db_url: str) -> None:
    run_sql(db_url, "TRUNCATE interactions, streams, users")
    with TestClient(create_app(Settings(DATABASE_URL=db_url, ACCESS_LOG=False))) as client:
        response = client.post(ROUTE, json={**HERE})
        unknown = client.post(ROUTE, json={"user_id": "user_000001"})
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    assert body["streams"] == []
    assert isinstance(body["request_id"], str) and body["request_id"]
    # Nothing found, so every ring out to the antipode was searched, each empty.
    bounds = oracle.ring_bounds(oracle.DEFAULT_RADIUS_KM)
    assert [r["index"] for r in body["rings"]] == list(range(len(bounds)))
    assert all(r["streams"] == 0 for r in body["rings"])
    for ring, (lo, hi) in zip(body["rings"], bounds, strict=True):
        assert ring["min_km"] == pytest.approx(lo, abs=1e-6)
        assert ring["max_km"] == pytest.approx(hi, abs=1e-6)
    _assert_refused(unknown, "user_000001", statuses=(404,))


def test_unknown_user_is_404_naming_them(db_url: str) -> None:
    load(db_url, frames.dataset(3, 5))
    with TestClient(create_app(Settings(DATABASE_URL=db_url, ACCESS_LOG=False))) as client:
        known = client.post(ROUTE, json={"user_id": "user_000001"})
        unknown = client.post(ROUTE, json={"user_id": "user_999999"})
    assert known.status_code == 200, known.text[:500]
    assert len(known.json()["streams"]) == 5
    _assert_refused(unknown, "user_999999", statuses=(404,))

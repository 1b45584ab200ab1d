"""Property-based fuzzing of every operation from the app's own OpenAPI schema (schemathesis).

Schemathesis reads `/docs/openapi.json` from the app in-process (its ASGI transport
runs the app's lifespan, so the pool and the click model are real) and generates
requests for each operation: conforming ones (`positive`) and ones that break the
schema (`negative`), each with and without the `X-API-Key` the write endpoints want.
A small dataset is loaded first, and part of the conforming requests are steered to
ids that exist, so some of them reach real rows and 200 answers.

Every response must be free of server errors and pass every check schemathesis has:
a documented status, the documented content type, a body matching the documented
schema, conforming requests accepted (`positive_data_acceptance`: the schema may not
allow what the app refuses), broken ones refused (`negative_data_rejection`), keyed
operations refused without the key (`ignored_auth`), and the rest.
`test_status_is_documented` also provokes each error answer on purpose and checks that
the schema lists it. Should a new status appear before the schema documents it, list it
in `UNDOCUMENTED` (the fuzz run then tolerates exactly that) until it is documented.

The run is bounded and reproducible: `MAX_EXAMPLES` per operation, mode and key,
derandomized Hypothesis, no example database.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jsonschema_rs  # schemathesis' own validator
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.openapi.checks import RejectedPositiveData, UndefinedStatusCode
from schemathesis.specs.openapi.schemas import OpenApiSchema

from app.live import status
from app.main import create_app
from app.settings import Settings
from seed.generate import generate
from seed.loader import Dataset, load
from tests.support.db import fetch, run_sql
from tests.support.models import saved_model

KEY = "fuzz-key-0123456789-abcdef"
MAX_EXAMPLES = 40
SCHEMA_PATH = "/docs/openapi.json"
VIEWER_FIELDS = ("latitude", "longitude", "language", "preferred_categories")
VIEWER_FIELDS += ("local_preference_strength",)

#: (operation, status) pairs the app answers on purpose that the schema does not list.
UNDOCUMENTED: dict[str, set[int]] = {}


def _operation_labels() -> list[str]:
    """The operations of the schema, read at collection time (no database needed)."""
    app = create_app(Settings(DATABASE_URL="postgresql://fuzz@127.0.0.1:9/none", ACCESS_LOG=False))
    paths = app.openapi_schema.to_schema()["paths"]
    methods = ("get", "put", "post", "delete", "patch")
    return sorted(f"{m.upper()} {p}" for p, ops in paths.items() for m in ops if m in methods)


LABELS = _operation_labels()


@dataclass
class Fuzzed:
    """The schema under test, ids that exist, and what the run saw."""

    schema: OpenApiSchema
    user_ids: list[str]
    stream_ids: list[str]
    statuses: dict[str, collections.Counter[int]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def fuzzed(migrated_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    data = generate(60, 120, 0, seed=20261122, live_share=0.5)
    load(migrated_url, Dataset(users=data.users, streams=data.streams))
    _, model_path = saved_model(tmp_path_factory.mktemp("fuzz-model"))
    settings = Settings(
        DATABASE_URL=migrated_url, API_KEY=KEY, MODEL_PATH=str(model_path), ACCESS_LOG=False
    )
    try:
        schema = schemathesis.openapi.from_asgi(SCHEMA_PATH, create_app(settings))
        users = [r["user_id"] for r in fetch(migrated_url, "SELECT user_id FROM users LIMIT 20")]
        streams = [r["stream_id"] for r in fetch(migrated_url, "SELECT stream_id FROM streams")]
        yield Fuzzed(schema, users, streams[:20])
    finally:
        schemathesis.python.asgi.shutdown_lifespans()
        run_sql(migrated_url, "TRUNCATE interactions, streams, users")


def _steer(case: Case, real: str | None, fuzzed: Fuzzed) -> Case:
    """Point a conforming case at rows that exist (`real` picks which, None leaves it)."""
    if real is None:
        return case
    if case.path_parameters and "stream_id" in case.path_parameters:
        case.path_parameters = {**case.path_parameters, "stream_id": real}
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("updates"), list):
        updates = [{**u, "stream_id": real} if isinstance(u, dict) else u for u in body["updates"]]
        case.body = {**body, "updates": updates}
    elif isinstance(body, dict) and case.operation.path.startswith("/v1/scenarios/"):
        case.body = {k: v for k, v in body.items() if k not in VIEWER_FIELDS}
        case.body["user_id"] = fuzzed.user_ids[hash(real) % len(fuzzed.user_ids)]
    return case


def _cases(fuzzed: Fuzzed, label: str, mode: GenerationMode) -> st.SearchStrategy[Case]:
    operation = fuzzed.schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the schema"
    strategy = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.NEGATIVE:
        return strategy
    ids = fuzzed.stream_ids if "/streams" in label else fuzzed.user_ids
    real = st.one_of(st.none(), st.sampled_from(ids))
    return st.tuples(strategy, real).map(lambda pair: _steer(pair[0], pair[1], fuzzed))


def _run(
    fuzzed: Fuzzed, label: str, mode: GenerationMode, keyed: bool, check: Callable[..., None]
) -> collections.Counter[int]:
    """Send up to `MAX_EXAMPLES` generated requests for `label`; `check` each answer."""
    statuses: collections.Counter[int] = collections.Counter()
    headers = {"X-API-Key": KEY} if keyed else None

    @given(case=_cases(fuzzed, label, mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    def fuzz(case: Case) -> None:
        response = case.call(headers=headers)
        statuses[response.status_code] += 1
        check(case, response)

    operation = fuzzed.schema.find_operation_by_label(label)
    assert operation is not None
    takes_input = bool(operation.body) or bool(list(operation.iter_parameters()))
    if mode is GenerationMode.NEGATIVE and not takes_input:
        pytest.skip(f"{label} takes no input to break")
    fuzz()
    return statuses


MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


@pytest.mark.parametrize("keyed", [True, False], ids=["with-key", "without-key"])
@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
@pytest.mark.parametrize("label", LABELS)
def test_no_server_errors(fuzzed: Fuzzed, label: str, mode: GenerationMode, keyed: bool) -> None:
    """Whatever the request, never a 5xx; every refusal is JSON naming the status."""

    def check(case: Case, response: Any) -> None:
        case.validate_response(response, checks=[not_a_server_error])
        if 400 <= response.status_code < 500:
            (content_type,) = response.headers["content-type"]  # schemathesis: name -> values
            assert content_type.startswith("application/json"), content_type
            body = json.loads(response.content)
            assert body["status_code"] == response.status_code and body["detail"], body

    statuses = _run(fuzzed, label, mode, keyed, check)
    fuzzed.statuses[f"{label} {mode.value} {'keyed' if keyed else 'unkeyed'}"] = statuses
    assert statuses, "no request was sent"


@pytest.mark.parametrize("keyed", [True, False], ids=["with-key", "without-key"])
@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
@pytest.mark.parametrize("label", LABELS)
def test_responses_match_the_schema(
    fuzzed: Fuzzed, label: str, mode: GenerationMode, keyed: bool
) -> None:
    """Every check schemathesis has; known undocumented statuses and the clock rule aside."""
    tolerated = UNDOCUMENTED.get(label, set())

    def check(case: Case, response: Any) -> None:
        try:
            case.validate_response(response)  # no `checks`: all of them
        except FailureGroup as group:
            rest = [f for f in group.exceptions if not _tolerated(f, tolerated, case, response)]
            if rest:
                raise FailureGroup(rest, str(group)) from None
        except Failure as failure:
            if not _tolerated(failure, tolerated, case, response):
                raise

    _run(fuzzed, label, mode, keyed, check)


def _tolerated(failure: Failure, statuses: set[int], case: Case, response: Any) -> bool:
    if isinstance(failure, UndefinedStatusCode):
        return failure.status_code in statuses
    return isinstance(failure, RejectedPositiveData) and _refused_for_the_clock(case, response)


def _refused_for_the_clock(case: Case, response: Any) -> bool:
    """The one rule a schema cannot state: `/live` and `/offline` refuse an `at` more
    than 5 minutes ahead of the server's clock, or outside years 1-9999 in UTC (400
    naming `at`); the batch endpoint reports the same as the update's `rejected`."""
    body = case.body
    if response.status_code != 400 or not isinstance(body, dict) or "at" not in body:
        return False
    at = datetime.fromisoformat(str(body["at"]).replace("Z", "+00:00"))
    late = not status.representable(at) or at > datetime.now(UTC) + status.MAX_FUTURE
    return late and "`at`" in json.loads(response.content)["detail"]


def test_every_operation_is_fuzzed(fuzzed: Fuzzed) -> None:
    """The schema the app serves has exactly the operations parametrised above."""
    served = sorted(
        result.ok().label for result in fuzzed.schema.get_all_operations() if result.ok()
    )
    assert served == LABELS


def test_conforming_requests_reach_real_rows(fuzzed: Fuzzed) -> None:
    """The steering works: the fuzz run got 200s (and 201s) from the data endpoints."""
    if not fuzzed.statuses:
        pytest.skip("run with test_no_server_errors")
    for label in LABELS:
        seen = fuzzed.statuses.get(f"{label} positive keyed")
        if seen is None:
            continue
        assert seen[200] + seen[201] > 0, (label, dict(seen))


# --- the schema's documented statuses --------------------------------------------------


class Undocumented(AssertionError):
    """The app answered as it should, with a status the schema does not list."""


@dataclass(frozen=True)
class Answer:
    """One request that legitimately gets `status`, which the schema should document."""

    label: str
    status: int
    send: Callable[[TestClient[Any]], Any]

    def __str__(self) -> str:
        return f"{self.label} -> {self.status}"


def _post(route: str, body: Any, headers: dict[str, str] | None = None) -> Callable[..., Any]:
    return lambda client: client.post(route, json=body, headers=headers or {})


KEYED = {"X-API-Key": KEY}
PROFILE = {
    "creator_id": "me", "city": "Oslo", "latitude": 59.91, "longitude": 10.75, "language": "no",
    "category_id": "music", "title": "Live from Oslo", "avg_viewer_count": 0,
    "creator_followers": 0, "stream_quality_score": 7.5, "is_partnered": False,
    "mature_content": False,
}  # fmt: skip
HERE = {"latitude": 48.85, "longitude": 2.35}
TEXT = {"content-type": "text/plain"}
JSON = {"content-type": "application/json"}
ML = "/v1/scenarios/hometown-ml"
ANSWERS = [
    Answer("PUT /v1/streams/{stream_id}", 201, lambda c: c.put(
        "/v1/streams/fuzz_new_channel", headers=KEYED, json=PROFILE
    )),
    Answer("PUT /v1/streams/{stream_id}", 401, lambda c: c.put("/v1/streams/x", json=PROFILE)),
    Answer("PUT /v1/streams/{stream_id}", 415, lambda c: c.put(
        "/v1/streams/x", content=json.dumps(PROFILE), headers={**KEYED, **TEXT}
    )),
    Answer("POST /v1/streams/live-status", 401, _post("/v1/streams/live-status", {})),
    Answer("POST /v1/streams/live-status", 413, lambda c: c.post(
        "/v1/streams/live-status", content=b" " * 2_500_000, headers={**KEYED, **JSON}
    )),
    Answer("POST /v1/streams/{stream_id}/live", 401, _post("/v1/streams/x/live", {})),
    Answer("POST /v1/streams/{stream_id}/live", 404, _post("/v1/streams/nobody/live", {}, KEYED)),
    Answer("POST /v1/streams/{stream_id}/offline", 401, _post("/v1/streams/x/offline", {})),
    Answer("POST /v1/streams/{stream_id}/offline", 404, _post("/v1/streams/no/offline", {}, KEYED)),
    Answer("POST /v1/scenarios/hometown", 404, _post("/v1/scenarios/hometown", {"user_id": "no"})),
    Answer("POST /v1/scenarios/hometown", 415, lambda c: c.post(
        "/v1/scenarios/hometown", content=json.dumps(HERE), headers=TEXT
    )),
    Answer("POST /v1/scenarios/hometown", 413, lambda c: c.post(
        "/v1/scenarios/hometown", content=b" " * 2_500_000, headers=JSON
    )),
    Answer("POST /v1/scenarios/hometown-ml", 503, _post(ML, HERE)),
]  # fmt: skip


@pytest.fixture(scope="module")
def plain_client(
    fuzzed: Fuzzed, migrated_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient[Any]]:
    """The app with a key but no click model, on the fuzz run's data."""
    no_model = tmp_path_factory.mktemp("no-model") / "absent.joblib"
    settings = Settings(
        DATABASE_URL=migrated_url, API_KEY=KEY, MODEL_PATH=str(no_model), ACCESS_LOG=False
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize("answer", ANSWERS, ids=str)
def test_status_is_documented(
    fuzzed: Fuzzed, plain_client: TestClient[Any], answer: Answer
) -> None:
    response = answer.send(plain_client)
    assert response.status_code == answer.status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    if answer.status >= 400:
        body = response.json()
        assert body["status_code"] == answer.status and body["detail"], body
    method, path = answer.label.split(" ", 1)
    documented = fuzzed.schema.raw_schema["paths"][path][method.lower()]["responses"]
    if str(answer.status) not in documented:
        raise Undocumented(f"{answer}: the schema lists only {sorted(documented)}")


# --- request schemas as strict as the app (app/api/openapi.py) -------------------------

STRICT_BODIES = ["HometownRequest", "LiveStatusBatch", "GoLiveBody", "GoOfflineBody"]
STRICT_BODIES += ["StatusUpdateBody", "StreamProfile", "EventBody"]


@pytest.mark.parametrize("name", STRICT_BODIES)
def test_request_schemas_forbid_unknown_fields(fuzzed: Fuzzed, name: str) -> None:
    component = fuzzed.schema.raw_schema["components"]["schemas"][name]
    assert component.get("additionalProperties") is False, component


def test_list_items_keep_their_constraints(fuzzed: Fuzzed) -> None:
    tags = fuzzed.schema.raw_schema["components"]["schemas"]["StreamProfile"]["properties"]["tags"]
    assert tags["items"].get("minLength") == 1, tags


def test_numbers_keep_a_lower_bound_of_zero(fuzzed: Fuzzed) -> None:
    components = fuzzed.schema.raw_schema["components"]["schemas"]
    for name, prop in (
        ("StatusUpdateBody", "current_viewer_count"),
        ("GoLiveBody", "current_viewer_count"),
        ("StreamProfile", "avg_viewer_count"),
        ("StreamProfile", "creator_followers"),
        ("StreamProfile", "stream_quality_score"),
        ("HometownRequest", "local_preference_strength"),
    ):
        assert components[name]["properties"][prop].get("minimum") == 0, (name, prop)


@pytest.mark.parametrize("action", ["live", "offline"])
def test_a_body_that_may_be_left_out_is_not_required(
    fuzzed: Fuzzed, plain_client: TestClient[Any], action: str
) -> None:
    path = f"/v1/streams/{{stream_id}}/{action}"
    body = fuzzed.schema.raw_schema["paths"][path]["post"]["requestBody"]
    assert body.get("required", False) is False, body
    response = plain_client.post(f"/v1/streams/{fuzzed.stream_ids[0]}/{action}", headers=KEYED)
    assert response.status_code == 200, response.text[:300]


VIEWER_BODIES = [
    ({"user_id": "u"}, True),
    ({"user_id": "u", "latitude": None, "language": None}, True),
    ({"latitude": 1.0, "longitude": 2.0, "language": "en"}, True),
    ({"user_id": None, "latitude": 1.0, "longitude": 2.0}, True),
    ({"user_id": "u", "latitude": 1.0, "longitude": 2.0}, False),
    ({"user_id": "u", "language": "en"}, False),
    ({"latitude": 1.0}, False),
    ({"longitude": 2.0, "user_id": None}, False),
    ({}, False),
]


def _without_patterns(schema: Any) -> Any:
    """The schema minus `pattern`s (Python regexes, which the Rust validator cannot read)."""
    if isinstance(schema, dict):
        return {k: _without_patterns(v) for k, v in schema.items() if k != "pattern"}
    if isinstance(schema, list):
        return [_without_patterns(v) for v in schema]
    return schema


@pytest.mark.parametrize(("body", "valid"), VIEWER_BODIES, ids=lambda v: json.dumps(v))
def test_the_viewer_rule_is_in_the_schema(
    fuzzed: Fuzzed, plain_client: TestClient[Any], body: dict[str, Any], valid: bool
) -> None:
    """`user_id` or a location, not both: the schema and the app agree on every body."""
    component = _without_patterns(
        fuzzed.schema.raw_schema["components"]["schemas"]["HometownRequest"]
    )
    schema_says = jsonschema_rs.Draft202012Validator(component).is_valid(body)
    assert schema_says is valid, (body, component.get("oneOf"))
    response = plain_client.post("/v1/scenarios/hometown", json=body)
    assert (response.status_code != 400) is valid, response.text[:300]


def test_an_event_batch_documents_its_events_and_takes_any_item(
    fuzzed: Fuzzed, plain_client: TestClient[Any]
) -> None:
    """Items are documented as `EventBody`; one the schema calls an event is recorded,
    and anything else is answered `rejected` in a 200, as the schema's "or" says."""
    components = _without_patterns(fuzzed.schema.raw_schema["components"]["schemas"])
    items = components["EventBatch"]["properties"]["events"]["items"]["anyOf"]
    assert items[0] == {"$ref": "#/components/schemas/EventBody"}
    event = {
        "event_id": "schema-1",
        "type": "watch",
        "user_id": fuzzed.user_ids[0],
        "stream_id": fuzzed.stream_ids[0],
        "at": datetime.now(UTC).isoformat(),
        "minutes": 3.5,
    }
    is_event = jsonschema_rs.Draft202012Validator(components["EventBody"]).is_valid
    assert is_event(event) and not is_event({**event, "extra": 1})
    assert not is_event({**event, "type": "like"})
    body = {"events": [event, {**event, "type": "like"}, 7]}
    response = plain_client.post("/v1/events", json=body, headers=KEYED)
    assert response.status_code == 200, response.text[:300]
    assert [r["status"] for r in response.json()["results"]] == ["recorded", "rejected", "rejected"]


@pytest.mark.parametrize("action", ["live", "offline"])
def test_a_null_body_the_schema_allows_is_accepted(
    fuzzed: Fuzzed, plain_client: TestClient[Any], action: str
) -> None:
    path = f"/v1/streams/{{stream_id}}/{action}"
    body = fuzzed.schema.raw_schema["paths"][path]["post"]["requestBody"]
    allows_null = {"type": "null"} in body["content"]["application/json"]["schema"]["oneOf"]
    route = f"/v1/streams/{fuzzed.stream_ids[0]}/{action}"
    response = plain_client.post(route, content=b"null", headers={**KEYED, **JSON})
    assert response.status_code < 500, response.text[:300]
    assert not allows_null or response.status_code == 200, response.text[:300]

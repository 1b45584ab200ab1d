"""Feed models in PostgreSQL: bit-exact vectors, one active model, refusals, pruning."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import numpy as np
import pytest

from app.feed import embeddings
from app.feed.embeddings import activate, active_model, list_models, load_vectors, prune, save_model
from tests.support.db import fetch, run_sql

T = TypeVar("T")


@pytest.fixture
def feed_url(db_url: str) -> Iterator[str]:
    """A migrated database with empty feed tables, emptied again after the test.

    (conftest's `db_url` empties users, streams and interactions only.)
    """
    run_sql(db_url, "TRUNCATE feed_models CASCADE")
    yield db_url
    run_sql(db_url, "TRUNCATE feed_models CASCADE")


@asynccontextmanager
async def _connect(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


def run(url: str, action: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run `action(conn)` on a fresh connection to `url`."""

    async def main() -> T:
        async with _connect(url) as conn:
            return await action(conn)

    return asyncio.run(main())


def _model(seed: int, users: int = 5, streams: int = 7, dim: int = 4) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "user_ids": [f"user_{i:03d}" for i in range(users)],
        "users": rng.standard_normal((users, dim)).astype(np.float32),
        "stream_ids": [f"stream_{i:03d}" for i in range(streams)],
        "streams": rng.standard_normal((streams, dim)).astype(np.float32),
    }


def save(url: str, version: str, kind: str = "lightgcn", **overrides: Any) -> dict[str, Any]:
    """Save a small random model (or the overridden parts) and return its arguments."""
    arguments = {"metadata": {"data_sha256": "ab" * 32}, **_model(len(version)), **overrides}
    run(url, lambda conn: save_model(conn, version=version, kind=kind, **arguments))
    return arguments


def active_versions(url: str) -> list[str]:
    return [r["version"] for r in fetch(url, "SELECT version FROM feed_models WHERE active")]


def test_vectors_round_trip_bit_exact(feed_url: str) -> None:
    model = _model(1)
    # Values whose float32 bits matter: denormals, -0.0, the extremes of the type.
    tiny = np.finfo(np.float32)
    model["streams"][0] = [tiny.smallest_subnormal, -0.0, tiny.max, tiny.min]
    meta = {"data_sha256": "cd" * 32, "metrics": {"recall@100": 0.25}, "config": {"layers": 3}}
    run(
        feed_url,
        lambda conn: save_model(
            conn, version="lightgcn-1", kind="lightgcn", metadata=meta, **model
        ),
    )
    for entity, ids_key, values_key in (
        ("user", "user_ids", "users"),
        ("stream", "stream_ids", "streams"),
    ):
        ids, vectors = run(feed_url, lambda conn, e=entity: load_vectors(conn, "lightgcn-1", e))
        assert ids == model[ids_key]
        assert vectors.dtype == np.float32 and vectors.shape == model[values_key].shape
        assert vectors.tobytes() == model[values_key].tobytes()
    info = run(feed_url, active_model)
    assert info is not None
    assert (info.version, info.kind, info.dim, info.metadata, info.active) == (
        "lightgcn-1",
        "lightgcn",
        4,
        meta,
        True,
    )
    stored = fetch(feed_url, "SELECT octet_length(vector) AS n FROM feed_embeddings")
    assert {row["n"] for row in stored} == {16}


def test_float64_and_numpy_ids_are_accepted_and_stored_little_endian(feed_url: str) -> None:
    users = np.array([[1.5, -2.25], [3.0, 0.125]], dtype=np.float64)
    streams = np.array([[1.0, 2.0]], dtype=">f4")  # big-endian in, little-endian stored
    save(
        feed_url,
        "als-1",
        "als",
        user_ids=np.array(["a", "b"]),
        users=users,
        stream_ids=["s"],
        streams=streams,
    )
    raw = fetch(feed_url, "SELECT vector FROM feed_embeddings WHERE entity_id = 's'")[0]["vector"]
    assert raw == np.array([1.0, 2.0], dtype="<f4").tobytes()
    ids, loaded = run(feed_url, lambda conn: load_vectors(conn, "als-1", "user", np.array(["b"])))
    assert ids == ["b"]
    np.testing.assert_array_equal(loaded, users[1:].astype(np.float32))


def test_ids_subset_sorted_and_missing_ids_absent(feed_url: str) -> None:
    model = save(feed_url, "m")
    wanted = ["stream_005", "nobody", "stream_001", "stream_005"]
    ids, vectors = run(feed_url, lambda conn: load_vectors(conn, "m", "stream", wanted))
    assert ids == ["stream_001", "stream_005"]
    np.testing.assert_array_equal(vectors, model["streams"][[1, 5]])
    ids, vectors = run(feed_url, lambda conn: load_vectors(conn, "m", "user", ["nobody"]))
    assert ids == [] and vectors.shape == (0, 4)


def test_ids_come_back_in_code_point_order(feed_url: str) -> None:
    # A linguistic collation would sort "a" before "B"; Python's sorted() does not.
    names = ["b", "a", "B", "A", "é", "_"]
    users = np.arange(24, dtype=np.float32).reshape(6, 4)
    save(feed_url, "m", user_ids=names, users=users)
    ids, vectors = run(feed_url, lambda conn: load_vectors(conn, "m", "user"))
    assert ids == sorted(names) == ["A", "B", "_", "a", "b", "é"]
    np.testing.assert_array_equal(vectors, users[[names.index(i) for i in ids]])


def test_only_one_model_is_active_after_two_saves(feed_url: str) -> None:
    save(feed_url, "als-1", "als")
    save(feed_url, "lightgcn-1", "lightgcn")
    assert active_versions(feed_url) == ["lightgcn-1"]
    save(feed_url, "als-2", "als", activate=False)
    assert active_versions(feed_url) == ["lightgcn-1"]
    info = run(feed_url, active_model)
    assert info is not None and info.version == "lightgcn-1"
    run(feed_url, lambda conn: activate(conn, "als-1"))
    assert active_versions(feed_url) == ["als-1"]
    with pytest.raises(LookupError, match="no feed model 'ghost' to activate"):
        run(feed_url, lambda conn: activate(conn, "ghost"))
    assert active_versions(feed_url) == ["als-1"]


def test_no_active_model_is_none(feed_url: str) -> None:
    assert run(feed_url, active_model) is None
    save(feed_url, "m", activate=False)
    assert run(feed_url, active_model) is None


def test_the_schema_refuses_a_second_active_model(feed_url: str) -> None:
    save(feed_url, "one")
    save(feed_url, "two", activate=False)
    with pytest.raises(asyncpg.UniqueViolationError) as caught:
        run_sql(feed_url, "UPDATE feed_models SET active = true WHERE version = 'two'")
    assert caught.value.constraint_name == "uq_feed_models_active"


def test_activation_is_atomic_for_a_concurrent_reader(feed_url: str) -> None:
    """While a save is under way, a reader sees the old active model, then the new one."""
    save(feed_url, "old")

    async def scenario() -> tuple[list[str | None], list[str]]:
        async with _connect(feed_url) as writer, _connect(feed_url) as reader:
            seen: list[str | None] = []
            transaction = writer.transaction()
            await transaction.start()
            await save_model(writer, version="new", kind="als", metadata={}, **_model(2))
            # Committed state while the writer's transaction is open: still exactly "old".
            seen.append(
                await reader.fetchval(
                    "SELECT string_agg(version, ',') FROM feed_models WHERE active"
                )
            )
            await transaction.commit()
            seen.append(
                await reader.fetchval(
                    "SELECT string_agg(version, ',') FROM feed_models WHERE active"
                )
            )
            return seen, [m.version for m in await list_models(reader)]

    seen, versions = asyncio.run(scenario())
    assert seen == ["old", "new"]
    assert sorted(versions) == ["new", "old"]


def test_concurrent_activations_queue_instead_of_failing(feed_url: str) -> None:
    async def scenario() -> None:
        async with _connect(feed_url) as first, _connect(feed_url) as second:
            await asyncio.gather(
                save_model(first, version="a", kind="als", metadata={}, **_model(3)),
                save_model(second, version="b", kind="als", metadata={}, **_model(4)),
            )

    asyncio.run(scenario())
    assert len(active_versions(feed_url)) == 1


def test_a_failed_save_leaves_nothing_behind(feed_url: str) -> None:
    save(feed_url, "kept")
    with pytest.raises(ValueError, match="feed model 'kept' already exists"):
        save(feed_url, "kept", "als")
    assert active_versions(feed_url) == ["kept"]
    assert fetch(feed_url, "SELECT count(*) AS n FROM feed_models")[0]["n"] == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"users": np.zeros((5, 4, 1), np.float32)}, "users must be a 2-D"),
        ({"users": np.zeros((4, 4), np.float32)}, "users has 4 rows but 5 ids"),
        ({"streams": np.zeros((7, 3), np.float32)}, "users have 4 dimensions but streams have 3"),
        ({"users": np.zeros((5, 4), np.int64)}, "users must be a float array, got dtype int64"),
        ({"users": np.full((5, 4), np.nan, np.float32)}, "users has NaN or infinite values"),
        ({"streams": np.full((7, 4), np.inf)}, "streams has NaN or infinite values"),
        ({"streams": np.full((7, 4), 1e39)}, "after conversion to float32"),
        ({"user_ids": ["u"] * 5}, "users ids are not unique: 'u' appears twice"),
        ({"stream_ids": ["s1", "", "s3", "s4", "s5", "s6", "s7"]}, "non-empty strings"),
        ({"user_ids": [], "users": np.zeros((0, 4), np.float32)}, "users is empty"),
        (
            {"users": np.zeros((5, 2000), np.float32), "streams": np.zeros((7, 2000), np.float32)},
            "embedding dimension must be 1..1024, got 2000",
        ),
        ({"metadata": {"when": object()}}, "metadata is not JSON-serialisable"),
        ({"metadata": {"auc": float("nan")}}, "metadata is not JSON-serialisable"),
    ],
)
def test_save_refuses_bad_input(feed_url: str, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        save(feed_url, "bad", **overrides)
    assert fetch(feed_url, "SELECT count(*) AS n FROM feed_models")[0]["n"] == 0


def test_save_refuses_a_bad_kind_or_version(feed_url: str) -> None:
    with pytest.raises(ValueError, match=r"model kind must be one of \['lightgcn', 'als'\]"):
        save(feed_url, "m", "svd")
    with pytest.raises(ValueError, match="version must be a non-empty string"):
        save(feed_url, "", "als")


def test_load_refuses_a_vector_of_the_wrong_length(feed_url: str) -> None:
    save(feed_url, "m")
    run_sql(
        feed_url,
        "UPDATE feed_embeddings SET vector = '\\x0000803f'::bytea WHERE entity_id = 'stream_003'",
    )
    with pytest.raises(
        ValueError,
        match="feed model 'm': the vector of stream 'stream_003' has 4 bytes, expected 16",
    ):
        run(feed_url, lambda conn: load_vectors(conn, "m", "stream"))
    ids, _ = run(feed_url, lambda conn: load_vectors(conn, "m", "stream", ["stream_001"]))
    assert ids == ["stream_001"]


def test_load_refuses_an_unknown_model_or_entity(feed_url: str) -> None:
    save(feed_url, "m")
    with pytest.raises(LookupError, match="no feed model 'ghost'"):
        run(feed_url, lambda conn: load_vectors(conn, "ghost", "user"))
    with pytest.raises(ValueError, match="entity must be one of"):
        run(feed_url, lambda conn: load_vectors(conn, "m", "creator"))


def test_prune_keeps_the_active_and_the_newest(feed_url: str) -> None:
    for n in range(6):
        save(feed_url, f"m{n}", activate=(n == 1))
    # created_at is now() of each save's transaction; make the order explicit and distinct.
    run_sql(
        feed_url,
        "UPDATE feed_models SET created_at"
        " = timestamptz '2026-12-01' + substr(version, 2)::int * interval '1 hour'",
    )
    deleted = run(feed_url, lambda conn: prune(conn, keep=2))
    assert deleted == ["m3", "m2", "m0"]
    assert [m.version for m in run(feed_url, list_models)] == ["m5", "m4", "m1"]
    assert active_versions(feed_url) == ["m1"]
    assert run(feed_url, lambda conn: prune(conn, keep=0)) == ["m5", "m4"]
    assert [m.version for m in run(feed_url, list_models)] == ["m1"]
    with pytest.raises(ValueError, match="keep must be >= 0"):
        run(feed_url, lambda conn: prune(conn, keep=-1))


def test_deleting_a_model_deletes_its_vectors(feed_url: str) -> None:
    save(feed_url, "gone")
    save(feed_url, "stays")
    run_sql(feed_url, "DELETE FROM feed_models WHERE version = 'gone'")
    rows = fetch(feed_url, "SELECT DISTINCT model_version FROM feed_embeddings")
    assert [row["model_version"] for row in rows] == ["stays"]
    assert fetch(feed_url, "SELECT count(*) AS n FROM feed_embeddings")[0]["n"] == 12


def test_the_schema_refuses_bad_rows(feed_url: str) -> None:
    cases = [
        (
            "INSERT INTO feed_models (version, kind, dim) VALUES ('x', 'svd', 4)",
            "ck_feed_models_kind",
        ),
        (
            "INSERT INTO feed_models (version, kind, dim) VALUES ('x', 'als', 0)",
            "ck_feed_models_dim_range",
        ),
        (
            "INSERT INTO feed_models (version, kind, dim) VALUES ('x', 'als', 1025)",
            "ck_feed_models_dim_range",
        ),
        (
            "INSERT INTO feed_models (version, kind, dim) VALUES ('', 'als', 4)",
            "ck_feed_models_version_nonempty",
        ),
        (
            "INSERT INTO feed_embeddings VALUES ('m', 'creator', 'c', '\\x00'::bytea)",
            "ck_feed_embeddings_entity_kind",
        ),
        (
            "INSERT INTO feed_embeddings VALUES ('m', 'user', '', '\\x00'::bytea)",
            "ck_feed_embeddings_entity_id_nonempty",
        ),
        (
            "INSERT INTO feed_embeddings VALUES ('m', 'user', 'u', ''::bytea)",
            "ck_feed_embeddings_vector_nonempty",
        ),
        (
            "INSERT INTO feed_embeddings VALUES ('nothing', 'user', 'u', '\\x00'::bytea)",
            "fk_feed_embeddings_model_version_feed_models",
        ),
    ]
    run_sql(feed_url, "INSERT INTO feed_models (version, kind, dim) VALUES ('m', 'als', 4)")
    for sql, constraint in cases:
        with pytest.raises(asyncpg.IntegrityConstraintViolationError) as caught:
            run_sql(feed_url, sql)
        assert caught.value.constraint_name == constraint, sql
    # The module's constants are the schema's.
    assert embeddings.KINDS == ("lightgcn", "als") and embeddings.MAX_DIM == 1024

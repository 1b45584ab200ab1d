"""The in-memory live set against brute force: exact top-k under ties, filters, updates, cache."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest

from app.feed.live import (
    INITIAL_CAPACITY,
    PROBE_ROWS,
    REBUILD_ROOM,
    TRENDING_TTL_S,
    LiveRows,
    LiveSet,
    Vocabulary,
    capacity_for,
)

DIM = 6
CATEGORIES = ("gaming", "music", "chat", "art")
LANGUAGES = ("fr", "en", "ja")


@dataclass
class Stream:
    """What the brute force knows about one live stream."""

    viewers: int
    creator: str
    language: str
    category: str
    vector: np.ndarray | None


def _id(rng: random.Random) -> str:
    # Mixed case, digits, accents and an astral character: code-point order differs
    # from any locale's, and from UTF-16's.
    alphabet = "aBz09_-éÉ\U0001f600"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5)))


def _stream(rng: random.Random, with_vector: float = 0.9) -> Stream:
    vector = None
    if rng.random() < with_vector:
        # Small integers: every dot product is exact in float32, and many tie.
        vector = np.array([rng.randint(-1, 1) for _ in range(DIM)], dtype=np.float32)
    return Stream(
        viewers=rng.choice([0, 1, 2, 5, 5, 10, rng.randint(0, 1000)]),
        creator=f"c{rng.randint(0, 30)}",
        language=rng.choice(LANGUAGES),
        category=rng.choice(CATEGORIES),
        vector=vector,
    )


def _rows(streams: dict[str, Stream]) -> LiveRows:
    ids = list(streams)
    values = [streams[i] for i in ids]
    return LiveRows(
        ids=ids,
        viewers=[s.viewers for s in values],
        creators=[s.creator for s in values],
        languages=[s.language for s in values],
        categories=[s.category for s in values],
        vectors=np.array(
            [s.vector for s in values if s.vector is not None], dtype=np.float32
        ).reshape(-1, DIM),
        has_vector=np.array([s.vector is not None for s in values], dtype=bool),
    )


def _brute_dot(
    streams: dict[str, Stream], q: np.ndarray, k: int, category: str | None
) -> list[tuple[str, float]]:
    scored = [
        (-float(np.dot(s.vector, q)), sid)
        for sid, s in streams.items()
        if s.vector is not None and (category is None or s.category == category)
    ]
    return [(sid, -neg) for neg, sid in sorted(scored)[:k]]


def _brute_trending(
    streams: dict[str, Stream], k: int, language: str | None, category: str | None
) -> list[str]:
    ranked = sorted(
        (-s.viewers, sid)
        for sid, s in streams.items()
        if (language is None or s.language == language)
        and (category is None or s.category == category)
    )
    return [sid for _, sid in ranked[:k]]


def _brute_creators(
    streams: dict[str, Stream], creators: list[str], k: int, category: str | None
) -> list[str]:
    rank: dict[str, int] = {}
    for i, c in enumerate(creators):
        rank.setdefault(c, i)
    ranked = sorted(
        (rank[s.creator], sid)
        for sid, s in streams.items()
        if s.creator in rank and (category is None or s.category == category)
    )
    return [sid for _, sid in ranked[:k]]


class FrozenClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _check_all(live: LiveSet, streams: dict[str, Stream], rng: random.Random) -> None:
    assert len(live) == len(streams) == live.count()
    for category in (None, *CATEGORIES, "nope"):
        expected_count = sum(1 for s in streams.values() if category in (None, s.category))
        assert live.count(category) == expected_count
        for k in (1, 3, 17, 200, 10_000):
            q = np.array([rng.randint(-2, 2) for _ in range(DIM)], dtype=np.float32)
            ids, scores = live.top_by_dot(q, k, category)
            expected = _brute_dot(streams, q, k, category)
            assert ids == [sid for sid, _ in expected]
            assert scores.tolist() == [score for _, score in expected]
            assert scores.dtype == np.float32
            for language in (None, *LANGUAGES):
                assert live.trending(k, language, category) == _brute_trending(
                    streams, k, language, category
                )
            creators = [f"c{rng.randint(0, 35)}" for _ in range(rng.randint(0, 8))]
            assert live.of_creators(creators, k, category) == _brute_creators(
                streams, creators, k, category
            )
    some = [*rng.sample(list(streams), min(5, len(streams))), "absent"]
    assert live.viewers(some) == [streams[s].viewers if s in streams else None for s in some]
    assert all(s in live for s in streams) and "absent" not in live


def test_queries_equal_brute_force_through_random_updates() -> None:
    rng = random.Random(7)
    clock = FrozenClock()
    live = LiveSet(clock=clock)
    streams: dict[str, Stream] = {}
    while len(streams) < 300:
        streams[_id(rng)] = _stream(rng)
    live.replace("v1", DIM, _rows(streams))
    _check_all(live, streams, rng)
    for _ in range(40):
        clock.now += TRENDING_TTL_S  # trending answers must be fresh for the comparison
        going_live = {}
        for _ in range(rng.randint(0, 60)):
            going_live[_id(rng)] = _stream(rng)
        live.add(_rows(going_live))
        streams.update(going_live)
        offline = rng.sample(list(streams), rng.randint(0, min(50, len(streams))))
        assert live.discard([*offline, "never-live"]) == len(offline)
        for sid in offline:
            del streams[sid]
        for sid in rng.sample(list(streams), min(30, len(streams))):
            streams[sid].viewers = rng.randint(0, 20)
            assert live.set_viewers(sid, streams[sid].viewers)
        assert not live.set_viewers("never-live", 3)
        _check_all(live, streams, rng)
    assert live.describe()["live_streams"] == len(streams)
    assert live.describe()["with_embeddings"] == sum(
        1 for s in streams.values() if s.vector is not None
    )


def _spread_stream(rng: random.Random, i: int) -> Stream:
    """A stream whose vector's norm is anywhere over four decades, as ALS's are.

    Small integers times a power of two: every dot product with a small-integer
    query is still exact in float32, and equal products still tie.
    """
    vector = np.array([rng.randint(-3, 3) for _ in range(DIM)], dtype=np.float32)
    return Stream(
        viewers=i,
        creator=f"c{i % 40}",
        language=rng.choice(LANGUAGES),
        category=rng.choice(CATEGORIES),
        vector=vector * np.float32(2.0 ** rng.randint(-6, 6)),
    )


def test_the_norm_bound_keeps_the_top_k_exact_and_reads_a_part_of_the_matrix() -> None:
    """More rows than `PROBE_ROWS`, laid out by norm, then churned: always the brute force.

    After the layout (`replace` lays it out, as the follower does when it builds a
    set) most queries multiply well under half the rows, nearly all of them in the
    prefix multiplied as a view; streams going live later take the free row
    nearest their norm's place, which keeps that so, and the answer stays exact.
    """
    rng = random.Random(5)
    clock = FrozenClock()
    live = LiveSet(clock=clock)
    streams = {f"s{i:05d}": _spread_stream(rng, i) for i in range(3 * PROBE_ROWS)}
    live.replace("v1", DIM, _rows(streams))
    multiplied: list[float] = []
    in_prefix: list[float] = []
    for round_ in range(6):
        for _ in range(25):
            q = np.array([rng.randint(-3, 3) for _ in range(DIM)], dtype=np.float32)
            for k, category in ((200, None), (17, None), (200, "music"), (1, "art")):
                ids, scores = live.top_by_dot(q, k, category)
                expected = _brute_dot(streams, q, k, category)
                assert ids == [sid for sid, _ in expected]
                assert scores.tolist() == [score for _, score in expected]
            if round_ in (0, 5):  # laid out by `replace`, and after five rounds of churn
                valid = live._slot_of >= 0
                rows = live._rows_that_can_win(q, valid, 200)
                multiplied.append(len(rows) / valid.sum())
                # The rows that can win sit in the prefix `_scores` multiplies as a view.
                in_prefix.append(np.count_nonzero(rows < 2 * len(rows)) / len(rows))
        offline = rng.sample(sorted(streams), 300)
        live.discard(offline)
        for sid in offline:
            del streams[sid]
        going_live = {f"n{round_}-{i:04d}": _spread_stream(rng, i) for i in range(300)}
        live.add(_rows(going_live))
        streams.update(going_live)
    assert np.median(multiplied) < 0.5, sorted(multiplied)
    assert min(in_prefix) > 0.9, sorted(in_prefix)
    live.order_rows()
    norms = live._norms[live._slot_of >= 0]
    assert (norms[:-1] >= norms[1:]).all()
    for sid in rng.sample(sorted(streams), 20):  # the layout moved rows, not streams
        q = np.asarray(streams[sid].vector, dtype=np.float32)
        assert live.top_by_dot(q, 50)[0] == [s for s, _ in _brute_dot(streams, q, 50, None)]


def test_a_vocabulary_codes_names_in_first_seen_order_and_keeps_them() -> None:
    vocabulary = Vocabulary()
    assert vocabulary.encode_all([]).tolist() == []
    assert vocabulary.encode_all(["b", "a", "b", "c"]).tolist() == [0, 1, 0, 2]
    # Known and new names mixed, a new one repeated: each new name takes the next code.
    assert vocabulary.encode_all(["c", "é", "a", "é", "z", "b"]).tolist() == [2, 3, 1, 3, 4, 0]
    assert vocabulary.names == ["b", "a", "c", "é", "z"]
    assert vocabulary.encode("a") == 1 and vocabulary.encode("q") == 5
    assert vocabulary.lookup("z") == 4 and vocabulary.lookup("never") == -1


def test_a_snapshot_added_in_parts_then_discard_unmarked_equals_the_snapshot() -> None:
    """The in-place resync's bookkeeping: mark the slots `add` returns, drop the rest.

    The snapshot keeps some streams (some changed, some moved to new creators
    never seen), loses others unheard, and brings enough new ones that the set
    grows while the parts come in, so the marks must follow its capacity.
    """
    rng = random.Random(11)
    clock = FrozenClock()
    live = LiveSet(clock=clock)
    before = {f"old{i:04d}": _stream(rng) for i in range(500)}
    live.replace("v1", DIM, _rows(before))
    snapshot = {sid: _stream(rng) for sid in rng.sample(list(before), 350)}
    for sid in list(snapshot)[:40]:
        snapshot[sid].creator = f"new-creator-{sid}"
    snapshot.update({f"new{i:04d}": _stream(rng) for i in range(2 * INITIAL_CAPACITY)})
    ids = list(snapshot)
    rng.shuffle(ids)
    marked = np.zeros(live.capacity, dtype=bool)
    for start in range(0, len(ids), 300):
        part = {sid: snapshot[sid] for sid in ids[start : start + 300]}
        slots = live.add(_rows(part))
        if len(marked) < live.capacity:
            marked = np.concatenate([marked, np.zeros(live.capacity - len(marked), bool)])
        marked[slots] = True
    assert live.capacity > 500 + INITIAL_CAPACITY  # it grew while the parts came in
    assert live.discard_unmarked(marked) == 150
    clock.now += TRENDING_TTL_S
    _check_all(live, snapshot, rng)
    assert live.discard_unmarked(np.ones(live.capacity, dtype=bool)) == 0
    # A mark array shorter than the set counts its missing tail as unmarked.
    assert live.discard_unmarked(np.ones(0, dtype=bool)) == len(snapshot)
    assert len(live) == 0


def test_growth_past_the_initial_capacity_keeps_every_stream() -> None:
    rng = random.Random(3)
    live = LiveSet()
    live.replace("v1", DIM, _rows({}))
    streams: dict[str, Stream] = {}
    for batch in range(6):
        new = {f"s{batch}_{i:05d}": _stream(rng) for i in range(INITIAL_CAPACITY // 2)}
        live.add(_rows(new))
        streams.update(new)
    live.discard(list(streams)[::3])
    for sid in list(streams)[::3]:
        del streams[sid]
    _check_all(live, streams, rng)


def test_exact_when_everything_ties_at_the_kth_place() -> None:
    streams = {
        f"s{i:04d}": Stream(1, "c", "fr", "gaming", np.ones(DIM, np.float32)) for i in range(500)
    }
    streams["zz_best"] = Stream(1, "c", "fr", "gaming", np.full(DIM, 2, np.float32))
    live = LiveSet()
    live.replace("v1", DIM, _rows(dict(reversed(list(streams.items())))))
    ids, scores = live.top_by_dot(np.ones(DIM), 4)
    assert ids == ["zz_best", "s0000", "s0001", "s0002"]
    assert scores.tolist() == [2.0 * DIM, DIM, DIM, DIM]
    assert live.trending(3) == ["s0000", "s0001", "s0002"]


def test_streams_without_embeddings_are_left_out_of_dot_but_trend() -> None:
    streams = {
        "a": Stream(5, "c1", "fr", "gaming", None),
        "b": Stream(1, "c1", "fr", "gaming", np.ones(DIM, np.float32)),
    }
    live = LiveSet()
    live.replace("v1", DIM, _rows(streams))
    assert live.top_by_dot(np.ones(DIM), 10)[0] == ["b"]
    assert live.trending(10) == ["a", "b"]
    assert live.of_creators(["c1"], 10) == ["a", "b"]


def test_no_model_means_no_dot_results() -> None:
    live = LiveSet()
    assert live.model_version is None and live.dim == 0
    ids, scores = live.top_by_dot(np.zeros(0), 10)
    assert ids == [] and len(scores) == 0
    with pytest.raises(ValueError, match="shape"):
        live.top_by_dot(np.zeros(3), 10)


def test_a_bad_query_vector_is_refused() -> None:
    live = LiveSet()
    live.replace("v1", DIM, _rows({"a": Stream(1, "c", "fr", "art", np.ones(DIM, np.float32))}))
    with pytest.raises(ValueError, match="NaN"):
        live.top_by_dot(np.full(DIM, np.nan), 3)


def test_trending_is_cached_for_at_most_a_second() -> None:
    clock = FrozenClock()
    live = LiveSet(clock=clock)
    rows = {
        "a": Stream(10, "c", "fr", "art", None),
        "b": Stream(5, "c", "fr", "art", None),
    }
    live.replace(None, 0, _rows_nodim(rows))
    assert live.trending(2) == ["a", "b"]
    live.set_viewers("b", 50)
    clock.now += TRENDING_TTL_S * 0.9
    assert live.trending(2) == ["a", "b"]  # cached: at most a second old
    clock.now += TRENDING_TTL_S * 0.2
    assert live.trending(2) == ["b", "a"]
    live.discard(["b"])  # a stream going offline is seen at once
    assert live.trending(2) == ["a"]
    live.add(_rows_nodim({"c": Stream(99, "c", "fr", "art", None)}))  # and one going live
    assert live.trending(2) == ["c", "a"]


def _rows_nodim(streams: dict[str, Stream]) -> LiveRows:
    rows = _rows(streams)
    return LiveRows(
        ids=rows.ids,
        viewers=rows.viewers,
        creators=rows.creators,
        languages=rows.languages,
        categories=rows.categories,
        vectors=np.zeros((0, 0), np.float32),
        has_vector=np.zeros(len(rows.ids), bool),
    )


def test_reload_calls_the_followers_hook() -> None:
    live = LiveSet()
    live.reload()  # no follower: nothing happens
    calls: list[int] = []
    live.on_reload(lambda: calls.append(1))
    live.reload()
    assert calls == [1]


def test_memory_per_live_stream_is_the_embedding_plus_little() -> None:
    n, dim = 20_000, 64
    rng = np.random.default_rng(0)
    live = LiveSet()
    live.replace(
        "v1",
        dim,
        LiveRows(
            ids=[f"stream_{i:06d}" for i in range(n)],
            viewers=rng.integers(0, 100, n),
            creators=[f"creator_{i:06d}" for i in range(n)],
            languages=["fr"] * n,
            categories=["gaming"] * n,
            vectors=rng.standard_normal((n, dim)).astype(np.float32),
            has_vector=np.ones(n, bool),
        ),
    )
    per_stream = live.nbytes() / n
    # The embedding, plus: its id (str, dict entry, slot), its creator when every stream
    # has its own (the same again), ~30 bytes of columns, a sixteenth of spare slots.
    assert 4 * dim < per_stream < 4 * dim * 17 / 16 + 360


def test_a_duplicate_id_in_one_batch_keeps_its_last_row() -> None:
    live = LiveSet()
    one = np.ones(DIM, np.float32)
    rows = LiveRows(
        ids=["a", "b", "a"],
        viewers=[1, 2, 3],
        creators=["c1", "c2", "c3"],
        languages=["fr", "fr", "en"],
        categories=["art", "art", "chat"],
        vectors=np.stack([one, one, 2 * one]),
        has_vector=np.array([True, True, True]),
    )
    live.replace("v1", DIM, rows)
    live.add(rows)
    assert len(live) == 2
    assert live.viewers(["a", "b"]) == [3, 2]
    assert live.of_creators(["c3", "c1"], 5) == ["a"]
    assert live.top_by_dot(one, 5, "chat")[0] == ["a"]
    assert live.top_by_dot(one, 5)[1].tolist() == [2.0 * DIM, DIM]


def _part(rows: LiveRows, start: int, end: int) -> LiveRows:
    """Streams `start:end` of `rows`, with their share of the vectors (a resync's group)."""
    before = int(np.count_nonzero(rows.has_vector[:start]))
    within = int(np.count_nonzero(rows.has_vector[start:end]))
    return LiveRows(
        ids=rows.ids[start:end],
        viewers=rows.viewers[start:end],
        creators=rows.creators[start:end],
        languages=rows.languages[start:end],
        categories=rows.categories[start:end],
        vectors=rows.vectors[before : before + within],
        has_vector=rows.has_vector[start:end],
    )


def test_a_set_sized_then_filled_group_by_group_never_grows_and_takes_over() -> None:
    """The follower's rebuild: count, allocate once, add groups, swap in (`take`)."""
    rng = random.Random(11)
    streams = {f"s{i:05d}": _stream(rng, with_vector=0.4) for i in range(2000)}
    rows = _rows(streams)
    with_vector = len(rows.vectors)
    assert 600 < with_vector < 1000  # the matrix holds only the streams with a vector
    fresh = LiveSet.sized("v2", DIM, streams=len(streams), vectors=with_vector)
    matrix, slots = fresh._matrix, fresh._alive
    for start in range(0, len(streams), 300):
        fresh.add(_part(rows, start, start + 300))
    assert fresh._matrix is matrix and fresh._alive is slots  # sized right: nothing grew
    assert len(matrix) == capacity_for(with_vector) and len(slots) == capacity_for(len(streams))

    old = {f"old{i}": _stream(rng) for i in range(50)}
    live = LiveSet()
    live.replace("v1", DIM, _rows(old))
    live.status.full_syncs = 7
    hook: list[str] = []
    live.on_reload(lambda: hook.append("resync"))
    q = np.array([1, -1, 0, 1, 1, -1], np.float32)
    assert live.trending(5)  # cached in the old set: must not survive the swap
    live.take(fresh)
    assert live.model_version == "v2" and live.dim == DIM
    assert sorted(live.stream_ids()) == sorted(streams)
    assert live.top_by_dot(q, 50)[0] == [sid for sid, _ in _brute_dot(streams, q, 50, None)]
    assert live.trending(5) == _brute_trending(streams, 5, None, None)
    assert live.status.full_syncs == 7
    live.reload()
    assert hook == ["resync"]
    new = {"new": _stream(rng, with_vector=1.0)}
    live.add(_rows(new))
    streams.update(new)
    _check_all(live, streams, rng)


def test_a_set_refreshed_in_place_asks_for_a_rebuild_once_its_vocabularies_outgrow_it() -> None:
    live = LiveSet()
    assert live.needs_rebuild()  # empty: the first sync builds it whole
    rng = random.Random(3)
    streams = {f"s{i}": _stream(rng) for i in range(10)}
    live.replace("v1", DIM, _rows(streams))
    assert not live.needs_rebuild()
    assert sorted(live.stream_ids()) == sorted(streams)
    # Churn: each stream that goes live brings a creator never seen before, and
    # codes are never reused, so the creators' vocabulary only grows.
    for i in range(REBUILD_ROOM + 20):
        one = {f"t{i}": Stream(1, f"new_creator_{i}", "fr", "gaming", None)}
        live.add(_rows(one))
        live.discard([f"t{i}"])
    assert len(live) == 10
    assert live.needs_rebuild()
    live.replace("v1", DIM, _rows(streams))
    assert not live.needs_rebuild()


def test_the_matrix_holds_rows_only_for_streams_with_a_vector_and_reuses_them() -> None:
    """Rows follow the streams with a vector: freed when one goes offline or loses it."""
    rng = random.Random(5)
    streams = {f"s{i:04d}": _stream(rng, with_vector=0.3) for i in range(3000)}
    live = LiveSet()
    live.replace("v1", DIM, _rows(streams))
    rows_at_start = len(live._matrix)
    assert rows_at_start == capacity_for(sum(s.vector is not None for s in streams.values()))
    assert rows_at_start < len(streams) // 2
    for step in range(40):
        # Streams go offline, others go live, and some live ones lose or gain a vector.
        gone = rng.sample(sorted(streams), 50)
        live.discard(gone)
        for sid in gone:
            del streams[sid]
        fresh = {f"n{step:02d}_{i:03d}": _stream(rng, with_vector=0.3) for i in range(50)}
        changed = {sid: _stream(rng, with_vector=0.5) for sid in rng.sample(sorted(streams), 20)}
        live.add(_rows({**fresh, **changed}))
        streams.update(fresh)
        streams.update(changed)
    _check_all(live, streams, rng)
    used = int(np.count_nonzero(live._slot_of >= 0))
    assert used == sum(s.vector is not None for s in streams.values())
    # Freed rows are taken again: the matrix grew at most once, by half.
    assert len(live._matrix) <= rows_at_start + rows_at_start // 2

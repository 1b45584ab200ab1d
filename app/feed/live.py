"""The streams live now, held in memory as numpy columns, and the feed's queries over them.

Stage 1 of the feed needs the exact top 200 live streams by dot product with
the viewer's embedding. A matrix product over the live set's embeddings takes
about a millisecond at 100K streams, far less than any round trip that would
ask PostgreSQL, so each server process keeps the live set here and follows its
changes (app/feed/follow.py).

Layout: one "slot" per stream, in parallel columns (ids, alive mask, viewers,
language, category and creator codes, has-embedding mask), and beside them the
embedding matrix, with one row per live stream that *has* an embedding (a model
covers only the streams it was trained on: about a third of the live ones in the
benchmark world) and a column of which slot each row belongs to. A stream going
live takes a free slot, and a free row if it has a vector (or one past the end,
the columns growing by half, so appends are amortised O(1)); a stream going
offline returns both to their free lists: the matrix is never copied on a
change. A resync under a new model builds new columns aside and swaps them in
(`take`).

The collaborative query is exact but does not multiply every row. By
Cauchy-Schwarz a row scores at most |q|·|row|, so once some k rows score `t`,
a row whose norm bound stays below `t` cannot enter the top k. The matrix keeps
each row's norm (`_norms`) and lays the rows out by norm, largest first, when
the set is built (`order_rows`); a stream that goes live later takes the free
row nearest to where its norm belongs (`_rows_for`), so the layout stays close
to sorted without copying the matrix again. The k-th best of the first
`PROBE_ROWS` rows gives `t`, and the rows that can still beat it are then
mostly one prefix of the matrix, multiplied as a view (no copy). On the
benchmark world's ALS model that prefix is about a fifth of the rows (the norms
spread over four decades). Exactness never depends on the layout: every row is
bounded by its own norm, wherever it sits; only the saving does.

Every method is synchronous and runs on the event loop's thread, with no await
inside: a request never sees half of a change.

Ties: every ranking breaks equal scores by stream id in code-point order (what
Python's `<` on `str` compares), so results are deterministic, and exact even
when many streams tie at the k-th place.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
#: Slots the columns start with; they grow by half when full.
INITIAL_CAPACITY = 1024
#: Seconds a trending answer is reused.
TRENDING_TTL_S = 1.0
#: Trending answers kept at most (one per k, language and category asked).
TRENDING_CACHE_MAX = 4096
#: The code of a language, category or creator the set has never seen (matches nothing).
_UNKNOWN = -1
#: Rows whose scores give the collaborative query its first k-th best (`top_by_dot`).
PROBE_ROWS = 2048
#: Relative room on a row's norm bound: float32 rounding of a 64-term dot product and
#: of the norms is a few 1e-6 of |q|·|row|, far below this.
NORM_SLACK = 1e-4


@dataclass
class LiveStatus:
    """How the set is being followed, written by the follower, shown on the health page."""

    listener_connected: bool = False
    last_full_sync: datetime | None = None
    full_syncs: int = 0
    notifications_applied: int = 0
    last_change_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class LiveRows:
    """Live streams to add, as parallel columns (a resync's or a batch of go-lives).

    `vectors` has one row per stream whose `has_vector` is True, in the streams'
    order (the others have no embedding in the model): the compact form the
    set keeps them in.
    """

    ids: Sequence[str]
    viewers: Sequence[int] | npt.NDArray[np.integer[Any]]
    creators: Sequence[str]
    languages: Sequence[str]
    categories: Sequence[str]
    vectors: FloatArray
    has_vector: npt.NDArray[np.bool_]


def _lookup(
    table: dict[str, int], names: Sequence[str], dtype: type[np.signedinteger[Any]] = np.int32
) -> npt.NDArray[Any]:
    """`table[name]` for each name, -1 for names it lacks: one pass in C."""
    return np.fromiter(
        map(table.get, names, itertools.repeat(_UNKNOWN)), dtype=dtype, count=len(names)
    )


class Vocabulary:
    """Strings to small integer codes and back; codes are never reused."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.names: list[str] = []

    def encode(self, name: str) -> int:
        """The code of `name`, adding it when new."""
        code = self.codes.get(name)
        if code is None:
            code = self.codes[name] = len(self.names)
            self.names.append(name)
        return code

    def encode_all(self, names: Sequence[str]) -> npt.NDArray[np.int32]:
        """Codes of `names`, adding the new ones.

        One dict look-up per name, in C; only the names not known yet take a
        second, Python-level pass. A resync mostly sees known names, and at a
        million live streams a pass over every name that built the set of new
        ones first cost a quarter of the resync's CPU.
        """
        codes = _lookup(self.codes, names)
        missing = np.flatnonzero(codes == _UNKNOWN)
        if len(missing):
            absent = list(map(names.__getitem__, missing.tolist()))
            new = list(dict.fromkeys(absent))
            start = len(self.names)
            self.codes.update(zip(new, range(start, start + len(new)), strict=True))
            self.names += new
            codes[missing] = _lookup(self.codes, absent)
        return codes

    def lookup(self, name: str) -> int:
        """The code of `name`, or -1 when the vocabulary does not have it (matches no stream)."""
        return self.codes.get(name, _UNKNOWN)


class LiveSet:
    """The live streams, with the active model's embeddings; queried by the feed's sources."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        """An empty set (no model), until the follower's first sync fills it.

        Args:
            clock: seconds for the trending cache; tests pass their own.
        """
        self.status = LiveStatus()
        self._clock = clock
        self._reload_hook: Callable[[], None] | None = None
        self._trending: dict[tuple[int, str | None, str | None], tuple[float, list[str]]] = {}
        self._reset(None, 0, 0, 0)

    # --- state ------------------------------------------------------------------

    def _reset(self, model_version: str | None, dim: int, capacity: int, rows: int) -> None:
        """Empty columns for `capacity` slots and `rows` matrix rows (all free)."""
        self._model_version = model_version
        self._dim = dim
        self._ids: npt.NDArray[np.object_] = np.full(capacity, None, dtype=object)
        self._alive = np.zeros(capacity, dtype=bool)
        self._embedded = np.zeros(capacity, dtype=bool)  # alive and has an embedding
        # Viewer counts fit int32 (app.db.limits.VIEWERS; the column is an integer).
        self._viewers = np.zeros(capacity, dtype=np.int32)
        # int16 would do for languages and categories, but a code past 32K would wrap
        # silently; int32 costs 4 bytes a stream more in all.
        self._language = np.full(capacity, _UNKNOWN, dtype=np.int32)
        self._category = np.full(capacity, _UNKNOWN, dtype=np.int32)
        self._creator = np.full(capacity, _UNKNOWN, dtype=np.int32)
        self._slots: dict[str, int] = {}
        self._free: list[int] = list(range(capacity - 1, -1, -1))  # pop() gives the lowest
        # The matrix: a row per stream with a vector. `_row_of[slot]` and
        # `_slot_of[row]` link the two (-1: none).
        self._matrix: FloatArray = np.zeros((rows, dim), dtype=np.float32)
        self._row_of = np.full(capacity, -1, dtype=np.int32)
        self._slot_of = np.full(rows, -1, dtype=np.int32)
        self._norms = np.zeros(rows, dtype=np.float32)  # 0 for a free row
        self._free_rows: list[int] = list(range(rows))  # ascending
        self._languages = Vocabulary()
        self._categories = Vocabulary()
        self._creators = Vocabulary()
        self._trending.clear()

    @classmethod
    def sized(cls, model_version: str | None, dim: int, *, streams: int, vectors: int) -> LiveSet:
        """An empty set under `model_version` with room for a resync's `streams` and `vectors`.

        The follower counts the live streams first and then adds them group by
        group (app/feed/follow.py): the columns and the matrix are allocated once,
        at their final size, and never grown while the set fills.
        """
        live = cls()
        live._reset(model_version, dim, capacity_for(streams), capacity_for(vectors))
        return live

    def replace(self, model_version: str | None, dim: int, rows: LiveRows) -> None:
        """Swap in a whole new live set: `rows` under model `model_version`.

        Args:
            model_version: the active model whose embeddings `rows.vectors` are; None
                when no model is active (then `dim` is 0 and no stream has a vector).
            dim: the model's dimension (columns of `rows.vectors`).
            rows: every live stream; a duplicate id keeps its last row.
        """
        self._reset(
            model_version, dim, capacity_for(len(rows.ids)), capacity_for(len(rows.vectors))
        )
        self.add(rows)
        self.order_rows()

    def order_rows(self) -> None:
        """Lay the matrix rows out by norm, largest first (see the module docstring).

        The matrix keeps its buffer; the permuted copy is held only while it is
        written back (about 10 MB at 100K live streams, a third with vectors), so
        the follower calls this only when it has built a new set, and the
        periodic in-place resyncs rely on `_rows_for`'s placement instead. Rows
        already in order stay put.
        """
        norms = self._norms
        if len(norms) < 2 or bool(np.all(norms[:-1] >= norms[1:])):
            return
        order = np.argsort(-norms, kind="stable")
        self._matrix[:] = self._matrix[order]
        self._norms = norms[order]
        self._slot_of = self._slot_of[order]
        used = np.flatnonzero(self._slot_of >= 0)
        self._row_of[self._slot_of[used]] = used.astype(np.int32)
        self._free_rows = np.flatnonzero(self._slot_of < 0).tolist()

    def take(self, other: LiveSet) -> None:
        """Become `other`, a set built aside (a resync under a new model), in one step.

        What is this set's own stays: its status, clock and reload hook. `other`
        must not be used afterwards: the two share their columns.
        """
        self.__dict__.update(
            (name, value) for name, value in vars(other).items() if name not in _OWN
        )
        self._trending.clear()

    def add(self, rows: LiveRows) -> npt.NDArray[np.int64] | slice:
        """Streams going live (or live ones whose attributes changed), all at once.

        A stream already in the set keeps its slot and takes the new values; one
        that lost its vector gives its matrix row back. Returns the slots the
        streams now hold (for `discard_unmarked`).
        """
        n = len(rows.ids)
        if n == 0:
            return slice(0, 0)
        has_all = np.asarray(rows.has_vector, dtype=bool)
        if has_all.shape != (n,):
            raise ValueError(f"{n} streams need {n} has_vector flags, got {has_all.shape}")
        with_vector = int(np.count_nonzero(has_all))
        if rows.vectors.shape != (with_vector, self._dim):
            raise ValueError(
                f"{with_vector} streams with a vector need a ({with_vector}, {self._dim})"
                f" matrix, got {rows.vectors.shape}"
            )
        ids = list(rows.ids)
        picked: npt.NDArray[np.int64] | slice = slice(None)
        last = dict(zip(ids, range(n), strict=True))  # a duplicate id keeps its last row
        if len(last) < n:
            picked = np.fromiter(last.values(), dtype=np.int64, count=len(last))
            ids = list(last)
        slots = self._slots_for(ids)
        self._ids[slots] = np.asarray(ids, dtype=object)
        self._alive[slots] = True
        self._viewers[slots] = np.asarray(rows.viewers, dtype=np.int32)[picked]
        self._language[slots] = self._languages.encode_all(rows.languages)[picked]
        self._category[slots] = self._categories.encode_all(rows.categories)[picked]
        self._creator[slots] = self._creators.encode_all(rows.creators)[picked]
        has = has_all[picked]
        self._embedded[slots] = has
        if self._dim:
            # Each stream's row in `rows.vectors`: how many streams before it have one.
            source = (np.cumsum(has_all) - 1)[picked][has]
            vectors = rows.vectors[source]
            norms = np.linalg.norm(vectors, axis=1)
            targets = self._rows_for(np.arange(len(self._alive))[slots], has, norms)
            self._matrix[targets] = vectors
            self._norms[targets] = norms
        self._trending.clear()
        return slots

    def _slots_for(self, ids: list[str]) -> npt.NDArray[np.int64] | slice:
        """Slots of distinct `ids`: their own when in the set, free ones for the others.

        Into an empty set (a resync) they go in order from slot 0: a slice, so the
        columns are filled by plain copies rather than fancy indexing.
        """
        if not self._slots and len(self._free) == len(self._alive) >= len(ids):
            self._slots = dict(zip(ids, range(len(ids)), strict=True))
            del self._free[len(self._free) - len(ids) :]  # pop() order: the lowest first
            return slice(0, len(ids))
        found = _lookup(self._slots, ids, dtype=np.int64)
        new = np.flatnonzero(found < 0).tolist()
        while len(self._free) < len(new):
            self._grow()
        for i in new:
            found[i] = self._slots[ids[i]] = self._free.pop()
        return found

    def _rows_for(
        self,
        slots: npt.NDArray[np.int64],
        has: npt.NDArray[np.bool_],
        norms: FloatArray,
    ) -> npt.NDArray[np.int64] | slice:
        """Matrix rows for the `slots` whose `has` is set; rows of the others are freed.

        Into a set with no rows in use (a resync) they go in order from row 0.
        Otherwise a stream new to the matrix takes the free row nearest to where
        its norm (`norms`, one per slot with `has`) falls among the rows laid
        out by norm, so the layout stays close to sorted between full syncs.
        """
        for slot in slots[~has][self._row_of[slots[~has]] >= 0]:
            self._release_row(int(slot))
        wanted = slots[has]
        free = self._free_rows
        if len(free) == len(self._slot_of) >= len(wanted):
            count = len(wanted)
            self._row_of[wanted] = np.arange(count, dtype=np.int32)
            self._slot_of[:count] = wanted
            del free[:count]
            return slice(0, count)
        found = self._row_of[wanted].astype(np.int64)
        new = np.flatnonzero(found < 0)
        while len(free) < len(new):
            self._grow_rows()
        # Where each new norm belongs in the (nearly) descending layout.
        places = np.searchsorted(-self._norms, -norms[new]).tolist()
        for i, place in zip(new.tolist(), places, strict=True):
            at = bisect.bisect_left(free, place)
            if at == len(free) or (at > 0 and place - free[at - 1] <= free[at] - place):
                at -= 1
            row = found[i] = free.pop(at)
            self._row_of[wanted[i]] = row
            self._slot_of[row] = wanted[i]
        return found

    def _release_row(self, slot: int) -> None:
        row = int(self._row_of[slot])
        self._row_of[slot] = -1
        self._slot_of[row] = -1
        self._matrix[row] = 0
        self._norms[row] = 0
        bisect.insort(self._free_rows, row)

    def discard(self, stream_ids: Iterable[str]) -> int:
        """Streams going offline (unknown ids are ignored); returns how many were removed."""
        removed = 0
        for stream_id in stream_ids:
            slot = self._slots.pop(stream_id, None)
            if slot is None:
                continue
            self._alive[slot] = False
            self._embedded[slot] = False
            self._ids[slot] = None
            if self._row_of[slot] >= 0:
                self._release_row(slot)
            self._free.append(slot)
            removed += 1
        if removed:
            self._trending.clear()
        return removed

    def discard_unmarked(self, marked: npt.NDArray[np.bool_]) -> int:
        """Discard every stream whose slot `marked` does not flag; returns how many.

        A resync marks the slots `add` returned for the snapshot's streams: the
        rest went offline unheard. Slots past the end of `marked` count as unmarked.
        """
        kept = np.zeros(len(self._alive), dtype=bool)
        size = min(len(marked), len(kept))
        kept[:size] = marked[:size]
        return self.discard(self._ids[self._alive & ~kept].tolist())

    def set_viewers(self, stream_id: str, viewers: int) -> bool:
        """A live stream's current viewer count; False when the stream is not in the set.

        The trending cache is kept: its answers may be up to `TRENDING_TTL_S` old anyway.
        """
        slot = self._slots.get(stream_id)
        if slot is None:
            return False
        self._viewers[slot] = viewers
        return True

    def _grow(self) -> None:
        """Grow the slot columns by half (the matrix has its own rows: not copied here)."""
        old = len(self._alive)
        new = max(INITIAL_CAPACITY, old + old // 2)
        extra = new - old
        self._ids = np.concatenate([self._ids, np.full(extra, None, dtype=object)])
        self._alive = np.concatenate([self._alive, np.zeros(extra, dtype=bool)])
        self._embedded = np.concatenate([self._embedded, np.zeros(extra, dtype=bool)])
        self._viewers = np.concatenate([self._viewers, np.zeros(extra, dtype=np.int32)])
        for name in ("_language", "_category", "_creator"):
            column = getattr(self, name)
            setattr(self, name, np.concatenate([column, np.full(extra, _UNKNOWN, np.int32)]))
        self._row_of = np.concatenate([self._row_of, np.full(extra, -1, np.int32)])
        self._free.extend(range(new - 1, old - 1, -1))

    def _grow_rows(self) -> None:
        """Grow the matrix by half (the one change that copies it: amortised O(1))."""
        old = len(self._slot_of)
        new = max(INITIAL_CAPACITY, old + old // 2)
        matrix = np.zeros((new, self._dim), dtype=np.float32)
        matrix[:old] = self._matrix
        self._matrix = matrix
        self._slot_of = np.concatenate([self._slot_of, np.full(new - old, -1, np.int32)])
        self._norms = np.concatenate([self._norms, np.zeros(new - old, np.float32)])
        self._free_rows.extend(range(old, new))

    # --- reload -----------------------------------------------------------------

    def reload(self) -> None:
        """Ask the follower for a full resync soon (SIGHUP, a new model); returns at once.

        Without a follower (a set built by hand) this does nothing.
        """
        if self._reload_hook is not None:
            self._reload_hook()

    def on_reload(self, hook: Callable[[], None] | None) -> None:
        """What `reload()` calls: set by the follower while it runs."""
        self._reload_hook = hook

    # --- queries ----------------------------------------------------------------

    @property
    def model_version(self) -> str | None:
        """The model whose stream embeddings the matrix holds; None before a model is seen."""
        return self._model_version

    @property
    def dim(self) -> int:
        """The embedding dimension (0 without a model)."""
        return self._dim

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def capacity(self) -> int:
        """Slots the columns hold now, used or free (the bound of `add`'s slots)."""
        return len(self._alive)

    def stream_ids(self) -> list[str]:
        """Every live stream's id (a copy: the set may change while the caller looks)."""
        return list(self._slots)

    def needs_rebuild(self) -> bool:
        """True when a resync should replace the set rather than refresh it in place.

        Vocabulary codes are never reused, so a set refreshed in place for long
        keeps every creator, language and category it ever saw. Once they are
        more than twice the live streams (plus some room), a rebuild starts the
        vocabularies afresh. An empty set (the first sync) is built whole too.
        """
        if not self._slots:
            return True
        seen = len(self._creators.names) + len(self._languages.names) + len(self._categories.names)
        return seen > 2 * len(self._slots) + REBUILD_ROOM

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._slots

    def count(self, category: str | None = None) -> int:
        """Live streams, all or those of `category`."""
        if category is None:
            return len(self._slots)
        return int(np.count_nonzero(self._in_category(self._alive, category)))

    def viewers(self, stream_ids: Iterable[str]) -> list[int | None]:
        """Current viewers of each stream, None for a stream that is not live."""
        out: list[int | None] = []
        for stream_id in stream_ids:
            slot = self._slots.get(stream_id)
            out.append(None if slot is None else int(self._viewers[slot]))
        return out

    def top_by_dot(
        self, vector: npt.ArrayLike, k: int, category: str | None = None
    ) -> tuple[list[str], FloatArray]:
        """The exact top `k` live streams by dot product with `vector`, best first.

        Only streams with an embedding in the model count; with `category`, only that
        category's. Equal scores go by stream id (code-point order).

        Returns:
            The stream ids and their float32 scores, both best first (at most `k`).

        Raises:
            ValueError: `vector` is not a 1-D array of `dim` finite values.
        """
        query = np.asarray(vector, dtype=np.float32)
        if query.shape != (self._dim,):
            raise ValueError(f"the query vector must have shape ({self._dim},), got {query.shape}")
        if not np.isfinite(query).all():
            raise ValueError("the query vector has NaN or infinite values")
        if k <= 0 or self._dim == 0:
            return [], np.empty(0, dtype=np.float32)
        valid = self._slot_of >= 0
        if category is not None:
            code = self._categories.lookup(category)
            valid &= self._category[np.maximum(self._slot_of, 0)] == code
        rows = self._rows_that_can_win(query, valid, k)
        if len(rows) == 0:
            return [], np.empty(0, dtype=np.float32)
        scores = self._scores(rows, query)
        candidates = self._slot_of[rows].astype(np.intp)
        best = self._top(candidates, scores, k)
        return [str(s) for s in self._ids[candidates[best]]], scores[best]

    def _rows_that_can_win(
        self, query: FloatArray, valid: npt.NDArray[np.bool_], k: int
    ) -> npt.NDArray[np.intp]:
        """The `valid` rows whose norm bound reaches the k-th best of the probe rows.

        Every row left out scores below k rows kept, so the top k of the rows
        kept is the top k of all. Without k valid probe rows, or with a k-th best
        of zero or less (which every row's bound reaches), that is every valid row.
        """
        probe = np.flatnonzero(valid[:PROBE_ROWS])
        magnitude = float(np.linalg.norm(query))
        if len(probe) < k or magnitude == 0.0:
            return np.flatnonzero(valid)
        probed = self._matrix[probe] @ query
        kth = float(np.partition(probed, len(probe) - k)[len(probe) - k])
        if kth <= 0.0:
            return np.flatnonzero(valid)
        floor = kth / (magnitude * (1.0 + NORM_SLACK))
        return np.flatnonzero(valid & (self._norms >= floor))

    def _scores(self, rows: npt.NDArray[np.intp], query: FloatArray) -> FloatArray:
        """`matrix[rows] @ query`: the rows within a dense prefix through a view, the rest gathered.

        After `order_rows` the rows that can win are mostly a prefix; those
        among the first 2·len(rows) rows are multiplied in place (at most half
        of that work wasted on rows between them), the others copied first.
        """
        dense = int(np.searchsorted(rows, 2 * len(rows)))
        scores = np.empty(len(rows), dtype=np.float32)
        if dense:
            head = rows[:dense]
            scores[:dense] = (self._matrix[: head[-1] + 1] @ query)[head]
        if dense < len(rows):
            scores[dense:] = self._matrix[rows[dense:]] @ query
        return scores

    def trending(
        self, k: int, language: str | None = None, category: str | None = None
    ) -> list[str]:
        """The `k` live streams with the most current viewers (ties by id), optionally filtered.

        Answers are reused for up to `TRENDING_TTL_S` (and dropped sooner when a stream
        goes live or offline); viewer counts may be that much behind.
        """
        if k <= 0:
            return []
        key = (k, language, category)
        now = self._clock()
        cached = self._trending.get(key)
        if cached is not None and now - cached[0] < TRENDING_TTL_S:
            return list(cached[1])
        mask = self._alive
        if language is not None:
            mask = mask & (self._language == self._languages.lookup(language))
        if category is not None:
            mask = self._in_category(mask, category)
        candidates = np.flatnonzero(mask)
        best = self._top(candidates, self._viewers[candidates], k)
        result = [str(s) for s in self._ids[candidates[best]]]
        if len(self._trending) >= TRENDING_CACHE_MAX:
            self._trending.clear()
        self._trending[key] = (now, result)
        return list(result)

    def of_creators(
        self, creator_ids: Sequence[str], k: int, category: str | None = None
    ) -> list[str]:
        """Live streams of `creator_ids`: in the order of `creator_ids`, then by stream id.

        The viewer's most-watched creators come first, so their live streams do;
        at most `k`. With `category`, only that category's streams.
        """
        rank: dict[int, int] = {}
        for position, creator in enumerate(creator_ids):
            code = self._creators.lookup(creator)
            if code != _UNKNOWN:
                rank.setdefault(code, position)
        if k <= 0 or not rank:
            return []
        mask = self._alive & np.isin(self._creator, np.fromiter(rank, dtype=np.int32))
        if category is not None:
            mask = self._in_category(mask, category)
        found = [
            (rank[int(code)], str(stream_id))
            for code, stream_id in zip(self._creator[mask], self._ids[mask], strict=True)
        ]
        return [stream_id for _, stream_id in heapq.nsmallest(k, found)]

    def describe(self) -> dict[str, Any]:
        """Facts for the health page: size, model, and how the set is being followed."""
        return {
            "live_streams": len(self._slots),
            "with_embeddings": int(np.count_nonzero(self._embedded)),
            "model_version": self._model_version,
            "dim": self._dim,
            "bytes": self.nbytes(),
            **asdict(self.status),
        }

    def nbytes(self) -> int:
        """Memory held by the columns, the id index, the ids and the vocabularies (estimated).

        Counted from sizes rather than measured, so the health page can show it cheaply
        (a pass over the ids and names, ~10 ms at 100K live streams).
        """
        columns = (
            self._ids,
            self._alive,
            self._embedded,
            self._viewers,
            self._language,
            self._category,
            self._creator,
            self._row_of,
            self._slot_of,
            self._norms,
            self._matrix,
        )
        total = sum(c.nbytes for c in columns) + 8 * (len(self._free) + len(self._free_rows))
        # Per id and per vocabulary name: its str (49 bytes + 1 per ASCII character),
        # a dict entry (about 3 words with its index) and an int object past 256 (28).
        for names in (self._slots, *(v.codes for v in self._vocabularies())):
            total += len(names) * (3 * 8 + 28) + sum(49 + len(name) for name in names)
        return total + 8 * sum(len(v.names) for v in self._vocabularies())

    def _vocabularies(self) -> tuple[Vocabulary, ...]:
        return (self._languages, self._categories, self._creators)

    def _in_category(self, mask: npt.NDArray[np.bool_], category: str) -> npt.NDArray[np.bool_]:
        wanted: npt.NDArray[np.bool_] = self._category == self._categories.lookup(category)
        return mask & wanted

    def _top(
        self, candidates: npt.NDArray[np.intp], values: npt.NDArray[Any], k: int
    ) -> npt.NDArray[np.intp]:
        """Positions in `candidates` (slots) of the `k` best `values`, best first, ties by id.

        Exact whatever the ties: every candidate scoring above the k-th best value is
        in; of those scoring exactly that much, the smallest ids fill the rest.
        """
        positions = np.arange(len(candidates))
        if len(candidates) > k:
            kth = np.partition(values, len(values) - k)[len(values) - k]
            above = positions[values > kth]
            tied = positions[values == kth]
            need = k - len(above)
            if len(tied) > need:
                ids = self._ids[candidates[tied]]
                keep = heapq.nsmallest(need, range(len(tied)), key=ids.__getitem__)
                tied = tied[np.asarray(keep, dtype=np.intp)]
            positions = np.concatenate([above, tied])
        # Best value first, then id: sort by id, then a stable sort by value descending.
        ids = self._ids[candidates[positions]]
        by_id = np.asarray(sorted(range(len(positions)), key=ids.__getitem__), dtype=np.intp)
        positions = positions[by_id]
        return positions[np.argsort(-values[positions], kind="stable")]


#: What `LiveSet.take` keeps of its own: how the set is followed, not what it holds.
_OWN = frozenset({"status", "_clock", "_reload_hook", "_trending"})
#: Vocabulary entries beyond twice the live streams that a refresh in place tolerates.
REBUILD_ROOM = 1024


def capacity_for(n: int) -> int:
    """Slots a resync of `n` live streams gives the set (or rows, for `n` vectors)."""
    return max(INITIAL_CAPACITY, _grown(n))


def _grown(n: int) -> int:
    """Slots for `n` streams plus a sixteenth, room for go-lives before the columns grow."""
    return n + n // 16

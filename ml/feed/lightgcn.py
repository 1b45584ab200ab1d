"""LightGCN (He et al., SIGIR 2020) on numpy and scipy.sparse, without torch.

The model: every user and item has an ego embedding E0. Propagation over the
bipartite interaction graph, with the symmetric normalisation Â = D^-1/2 A D^-1/2,
gives layers E_{l+1} = Â E_l, and the final embedding is their mean,
E = (E0 + E1 + ... + E_L) / (L + 1). A user's score for an item is the dot product of
their final embeddings. Training minimises BPR with one uniformly sampled negative per
positive, plus L2 on the batch's ego embeddings, with Adam.

Why by hand: torch from PyPI pulls about 3 GB of CUDA packages, and RecBole breaks on
current numpy, scipy and torch (see the research notes). The model is small enough not
to need autograd, because the propagation is linear:

- A has no user-user or item-item block, so Â E is two sparse products with the
  normalised interaction matrix Rn = Du^-1/2 R Di^-1/2: users' next layer is Rn @ Ei
  and items' is Rn.T @ Eu.
- E = P E0 with P = (I + Â + ... + Â^L) / (L + 1), and Â is symmetric, so P is too:
  the gradient of the loss with respect to E0 is P applied to its gradient with respect
  to E, that is the same `propagate` run on the (sparse, scattered) gradient.

Every batch therefore costs two propagations (forward, backward), each 2·L sparse
products of a CSR with float32 (n, dim) blocks, and a dense Adam step.

A user or item without interactions has degree 0; its row and column of Rn are empty,
so its propagated layers are zero and its final embedding is E0 / (L + 1). It is never
in a batch, so Adam leaves its (random) ego embedding as initialised.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ml.feed.retrieval import Embeddings, top_k

#: Standard deviation of the ego embeddings' normal initialisation (as in the paper's code).
_INIT_STD = 0.1
#: Rounds of re-drawing negatives that are positives of their user; see `sample_negatives`.
_NEGATIVE_ROUNDS = 10
_ADAM_BETA1 = 0.9
_ADAM_BETA2 = 0.999
_ADAM_EPS = 1e-8


@dataclass(frozen=True)
class LightGCNConfig:
    """Hyper-parameters of one LightGCN fit.

    Attributes:
        dim: embedding dimensions.
        layers: propagation layers L; the final embedding averages L + 1 layers.
        lr: Adam's learning rate.
        l2: weight of the L2 penalty on the batch's ego embeddings (see `bpr_loss_and_grad`).
        batch: positives per gradient step (at least; see `max_batches`).
        max_batches: gradient steps per epoch at most: on a larger graph the batches
            grow, because every step propagates over the whole graph.
        max_epochs: upper bound on passes over the training positives.
        patience: evaluations without a better validation recall before stopping.
        min_gain: how much better (relative, 1%) a recall must be to count as better:
            at a million streams an epoch costs a minute, and the last epochs before
            a plateau add a few ten-thousandths each.
        eval_every: epochs between two validation evaluations (the last epoch is
            always evaluated).
        k: cut-off of the validation Recall@k.
        exclude_seen: leave each user's training positives out of the validation
            ranking (the paper's protocol). The home feed keeps them: coming back to
            a channel is most of what viewers do, and the evaluation ranks them too.
        validation_users: evaluate at most this many validation users (an even,
            fixed sample), so one evaluation stays a fraction of an epoch at 100K users.
        seed: seed of the initialisation, the shuffles and the negatives.
        threads: threads sharing each sparse product (scipy releases the GIL in
            them). Each thread writes its own rows, so the result is bit-identical
            for any number; 2 took an epoch at 10K × 50K from about 10 s to 7 s
            of wall time on the 2-core machine, 1 keeps the fit on one core.
    """

    dim: int = 64
    layers: int = 3
    lr: float = 0.01
    l2: float = 1e-4
    batch: int = 8192
    max_batches: int = 32
    max_epochs: int = 40
    patience: int = 3
    min_gain: float = 0.01
    eval_every: int = 1
    k: int = 100
    exclude_seen: bool = True
    validation_users: int = 3_000
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        numbers = ("dim", "batch", "max_batches", "max_epochs", "patience", "eval_every",
                   "k", "threads", "validation_users")  # fmt: skip
        for name in numbers:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.layers < 0:
            raise ValueError(f"layers must be at least 0, got {self.layers}")


@dataclass(frozen=True)
class LightGCNResult:
    """A fitted LightGCN and how the fit went.

    Attributes:
        embeddings: final (propagated) user and item embeddings of the best epoch.
        best_epoch: epoch (from 1) whose embeddings were kept: the best validation
            recall, or the last epoch without validation.
        epochs_run: epochs trained before stopping.
        history: one dict per epoch: `epoch`, `loss` (mean batch loss), `recall`
            (None when the epoch was not evaluated) and `seconds` (training and
            evaluation).
        seconds: wall time of the whole fit.
    """

    embeddings: Embeddings
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float | int | None]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class NormalizedAdjacency:
    """The bipartite graph's normalised adjacency, as its two off-diagonal blocks.

    Attributes:
        user_items: Rn = Du^-1/2 R Di^-1/2, CSR (n_users, n_items).
        item_users: Rn.T as its own CSR, so both products run row-wise.
        user_item_parts: `user_items` cut into row ranges, one per thread (cut once
            here, because slicing a CSR copies it).
        item_user_parts: `item_users` cut the same way.
    """

    user_items: sp.csr_matrix
    item_users: sp.csr_matrix
    user_item_parts: tuple[tuple[int, int, sp.csr_matrix], ...] = ()
    item_user_parts: tuple[tuple[int, int, sp.csr_matrix], ...] = ()

    @classmethod
    def build(
        cls,
        train: sp.csr_matrix | sp.csr_array,
        *,
        dtype: npt.DTypeLike = np.float32,
        blocks: int = 1,
    ) -> NormalizedAdjacency:
        """Normalise a users × items matrix; entries above 0 count as edges of weight 1."""
        binary = sp.csr_matrix(train > 0, dtype=dtype)
        user_degree = np.asarray(binary.sum(axis=1)).ravel()
        item_degree = np.asarray(binary.sum(axis=0)).ravel()
        # Degree 0 gives factor 0, not inf: an isolated node simply receives nothing.
        user_scale = np.divide(
            1.0, np.sqrt(user_degree), where=user_degree > 0, out=np.zeros_like(user_degree)
        )
        item_scale = np.divide(
            1.0, np.sqrt(item_degree), where=item_degree > 0, out=np.zeros_like(item_degree)
        )
        normalized = sp.csr_matrix(
            sp.diags(user_scale.astype(dtype)) @ binary @ sp.diags(item_scale.astype(dtype)),
            dtype=dtype,
        )
        normalized.sort_indices()
        transposed = sp.csr_matrix(normalized.T, dtype=dtype)
        transposed.sort_indices()
        return cls(
            normalized,
            transposed,
            _row_parts(normalized, blocks),
            _row_parts(transposed, blocks),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """(n_users, n_items)."""
        return (int(self.user_items.shape[0]), int(self.user_items.shape[1]))


def propagate(
    adj: NormalizedAdjacency,
    ego_users: np.ndarray,
    ego_items: np.ndarray,
    layers: int,
    *,
    executor: ThreadPoolExecutor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The mean of layers 0..L of the propagation, P E = (E + Â E + ... + Â^L E) / (L + 1).

    P is symmetric, so this is also the backward pass: applied to the gradient of a
    loss with respect to the final embeddings, it returns the gradient with respect to
    the ego embeddings.

    Args:
        adj: the normalised adjacency.
        ego_users: (n_users, d) layer-0 user embeddings (or gradients).
        ego_items: (n_items, d) layer-0 item embeddings (or gradients).
        layers: L.
        executor: optional thread pool; each sparse product is then split into
            row ranges of `NormalizedAdjacency.build(blocks=...)`, computed concurrently.

    Returns:
        (users, items), each of the input's shape and dtype.
    """
    users_sum = ego_users.copy()
    items_sum = ego_items.copy()
    users, items = ego_users, ego_items
    for _ in range(layers):
        users, items = (
            _spmm(adj.user_items, adj.user_item_parts, items, executor),
            _spmm(adj.item_users, adj.item_user_parts, users, executor),
        )
        users_sum += users
        items_sum += items
    scale = users_sum.dtype.type(1.0 / (layers + 1))
    users_sum *= scale
    items_sum *= scale
    return users_sum, items_sum


class BPRGradient(NamedTuple):
    """Loss of one batch and its gradients, all dense and full-sized.

    Attributes:
        loss: mean BPR loss of the batch plus the L2 term.
        final_users: d loss / d final user embeddings (the BPR term only).
        final_items: d loss / d final item embeddings (the BPR term only).
        ego_users: d loss / d ego user embeddings through the L2 term only.
        ego_items: d loss / d ego item embeddings through the L2 term only.
    """

    loss: float
    final_users: np.ndarray
    final_items: np.ndarray
    ego_users: np.ndarray
    ego_items: np.ndarray


def bpr_loss_and_grad(
    final_users: np.ndarray,
    final_items: np.ndarray,
    ego_users: np.ndarray,
    ego_items: np.ndarray,
    users: np.ndarray,
    positives: np.ndarray,
    negatives: np.ndarray,
    l2: float,
) -> BPRGradient:
    """BPR loss of a batch of (user, positive, negative) triples, and its gradients.

    loss = mean_b softplus(-(s_b+ - s_b-)) + l2 · (|e0_u|² + |e0_i+|² + |e0_i-|²) / (2 B),
    summed over the batch, with s the dot product of final embeddings and e0 the ego
    embeddings. This is the official LightGCN code's regularisation: the penalty is on
    the ego embeddings the batch touches, averaged over the batch, so it does not
    depend on the size of the catalogue.

    The gradients are scattered into full-sized arrays with a sparse (rows × batch)
    matrix product, which sums the contributions of repeated users or items exactly
    and far faster than `np.add.at`.
    """
    size = users.shape[0]
    u, p, n = final_users[users], final_items[positives], final_items[negatives]
    margin = np.einsum("bd,bd->b", u, p - n)
    # softplus(-x) = log(1 + e^-x), written stably for both signs of x.
    bpr = np.logaddexp(0.0, -margin.astype(np.float64))
    e_u, e_p, e_n = ego_users[users], ego_items[positives], ego_items[negatives]
    squares = (
        np.einsum("bd,bd->", e_u, e_u)
        + np.einsum("bd,bd->", e_p, e_p)
        + np.einsum("bd,bd->", e_n, e_n)
    )
    loss = float(bpr.mean() + l2 * float(squares) / (2.0 * size))

    # d softplus(-x) / dx = -sigmoid(-x) = -1 / (1 + e^x)
    weight = (-0.5 * (1.0 - np.tanh(0.5 * margin.astype(np.float64))) / size).astype(u.dtype)
    n_users, n_items = final_users.shape[0], final_items.shape[0]
    batch = np.arange(size)
    to_users = _scatter(users, batch, weight, n_users, size)
    to_items = _scatter(
        np.concatenate([positives, negatives]),
        np.concatenate([batch, batch]),
        np.concatenate([weight, -weight]),
        n_items,
        size,
    )
    grad_final_users = np.asarray(to_users @ (p - n), dtype=u.dtype)
    grad_final_items = np.asarray(to_items @ u, dtype=u.dtype)

    decay = np.full(size, l2 / size, dtype=u.dtype)
    grad_ego_users = np.asarray(_scatter(users, batch, decay, n_users, size) @ e_u, dtype=u.dtype)
    item_decay = _scatter(
        np.concatenate([positives, negatives]),
        np.arange(2 * size),
        np.concatenate([decay, decay]),
        n_items,
        2 * size,
    )
    grad_ego_items = np.asarray(item_decay @ np.concatenate([e_p, e_n]), dtype=u.dtype)
    return BPRGradient(loss, grad_final_users, grad_final_items, grad_ego_users, grad_ego_items)


def loss_and_grad(
    adj: NormalizedAdjacency,
    ego_users: np.ndarray,
    ego_items: np.ndarray,
    users: np.ndarray,
    positives: np.ndarray,
    negatives: np.ndarray,
    *,
    layers: int,
    l2: float,
    executor: ThreadPoolExecutor | None = None,
) -> tuple[float, np.ndarray, np.ndarray]:
    """A batch's loss and its gradient with respect to the ego embeddings.

    Forward propagation, `bpr_loss_and_grad` on the final embeddings, then the same
    propagation applied to the gradient (P is symmetric), plus the L2 term's gradient.

    Returns:
        (loss, d loss / d ego users, d loss / d ego items).
    """
    final_users, final_items = propagate(adj, ego_users, ego_items, layers, executor=executor)
    grad = bpr_loss_and_grad(
        final_users, final_items, ego_users, ego_items, users, positives, negatives, l2
    )
    back_users, back_items = propagate(
        adj, grad.final_users, grad.final_items, layers, executor=executor
    )
    back_users += grad.ego_users
    back_items += grad.ego_items
    return grad.loss, back_users, back_items


def sample_negatives(
    users: np.ndarray,
    positive_keys: np.ndarray,
    n_items: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """One uniform negative item per user, re-drawn when it is one of the user's positives.

    Vectorised: every draw whose (user, item) key is in the sorted `positive_keys`
    (user * n_items + item) is drawn again, for up to `_NEGATIVE_ROUNDS` rounds. A
    collision can survive only for a user whose positives cover most of the catalogue
    (probability density^10); such a pair is kept, a negligible noise in the loss.
    """
    negatives = np.asarray(rng.integers(0, n_items, size=users.shape[0], dtype=np.int64))
    todo = np.arange(users.shape[0])
    for _ in range(_NEGATIVE_ROUNDS):
        keys = users[todo] * n_items + negatives[todo]
        position = np.searchsorted(positive_keys, keys)
        position = np.minimum(position, positive_keys.size - 1)
        todo = todo[positive_keys[position] == keys]
        if todo.size == 0:
            break
        negatives[todo] = rng.integers(0, n_items, size=todo.size, dtype=np.int64)
    return negatives


def recall_at_k(
    embeddings: Embeddings,
    train: sp.csr_matrix,
    validation: sp.csr_matrix,
    k: int,
    *,
    exclude_seen: bool = True,
    max_users: int | None = None,
) -> float:
    """Mean Recall@k over the users with validation positives, train items excluded.

    Recall of a user = validation positives in their top k / their validation
    positives, as in the LightGCN paper's code. Used for early stopping only; the
    offline evaluation has its own metrics. `exclude_seen=False` ranks the train
    items too; `max_users` evaluates an evenly spaced sample of the users.
    """
    counts = np.diff(validation.indptr)
    evaluated = np.flatnonzero(counts > 0)
    if evaluated.size == 0:
        return float("nan")
    if max_users is not None and evaluated.size > max_users:
        evaluated = evaluated[np.linspace(0, evaluated.size - 1, max_users).astype(np.int64)]
    exclude = sp.csr_matrix(train[evaluated]) if exclude_seen else None
    indices, _ = top_k(embeddings.users[evaluated], embeddings.items, k, exclude=exclude)
    n_items = validation.shape[1]
    truth = validation.tocoo()
    truth_keys = np.sort(truth.row.astype(np.int64) * n_items + truth.col)
    keys = evaluated[:, None].astype(np.int64) * n_items + indices
    position = np.minimum(np.searchsorted(truth_keys, keys), truth_keys.size - 1)
    hits = truth_keys[position] == keys
    return float(np.mean(hits.sum(axis=1) / counts[evaluated]))


def fit_lightgcn(
    train: sp.csr_matrix | sp.csr_array,
    validation: sp.csr_matrix | sp.csr_array | None,
    config: LightGCNConfig = LightGCNConfig(),
    progress: Callable[[str], None] | None = None,
) -> LightGCNResult:
    """Train LightGCN on the users and items that have a training positive.

    A user or item without one has no edge: propagation never reaches it, and its
    embedding would only ever be pushed around as a random negative. At a million
    streams most of the catalogue is such, and carrying it through every batch's
    full-graph propagation and Adam step cost most of the time. They are left out
    of the fit and get zero embeddings (a score of 0 for everyone), which is what
    a model that knows nothing about them should say.

    Args and returns as `fit_connected`; the embeddings have the full shape.
    """
    train_bin = sp.csr_matrix(train > 0, dtype=np.float32)
    n_users, n_items = train_bin.shape
    if validation is not None and validation.shape != train_bin.shape:
        raise ValueError(f"validation has shape {validation.shape}, train {train_bin.shape}")
    users = np.flatnonzero(np.diff(train_bin.indptr) > 0)
    items = np.flatnonzero(np.bincount(train_bin.indices, minlength=n_items) > 0)
    part = sp.csr_matrix(train_bin[users][:, items])
    valid_part = (
        None if validation is None else sp.csr_matrix(sp.csr_matrix(validation)[users][:, items])
    )
    if progress is not None and (len(users) < n_users or len(items) < n_items):
        progress(
            f"lightgcn: fitting the {len(users):,} users and {len(items):,} streams with a"
            f" training positive (of {n_users:,} and {n_items:,})"
        )
    result = fit_connected(part, valid_part, config, progress)
    full_users = np.zeros((n_users, config.dim), dtype=np.float32)
    full_items = np.zeros((n_items, config.dim), dtype=np.float32)
    full_users[users] = result.embeddings.users
    full_items[items] = result.embeddings.items
    return replace(result, embeddings=Embeddings(full_users, full_items))


def fit_connected(
    train: sp.csr_matrix | sp.csr_array,
    validation: sp.csr_matrix | sp.csr_array | None,
    config: LightGCNConfig = LightGCNConfig(),
    progress: Callable[[str], None] | None = None,
) -> LightGCNResult:
    """Train LightGCN with BPR and Adam, early-stopped on validation Recall@k.

    Each epoch shuffles all training positives and visits each once, as a batch row
    with a fresh uniform negative. After every `eval_every` epochs the validation
    recall is computed; the fit stops when it has not improved for `patience`
    evaluations and returns the best evaluation's embeddings. Without validation (or
    with no validation positives) it runs `max_epochs` and keeps the last.

    Args:
        train: users × items; entries above 0 are positives (values are ignored).
        validation: held-out positives, same shape; users without any are skipped.
        config: hyper-parameters.
        progress: called once per epoch with a one-line summary.

    Returns:
        The best embeddings, the epoch they come from and the per-epoch history.
    """
    started = time.perf_counter()
    train_bin = sp.csr_matrix(train > 0, dtype=np.float32)
    n_users, n_items = train_bin.shape
    if validation is not None and validation.shape != train_bin.shape:
        raise ValueError(f"validation has shape {validation.shape}, train {train_bin.shape}")
    valid_bin = None if validation is None else sp.csr_matrix(validation > 0, dtype=np.float32)
    if valid_bin is not None and valid_bin.nnz == 0:
        valid_bin = None

    rng = np.random.default_rng(config.seed)
    # Each batch propagates over the whole graph, so an epoch costs its number of
    # batches: past `max_batches` per epoch, the batches grow instead.
    batch = max(config.batch, -(-train_bin.nnz // config.max_batches))
    adj = NormalizedAdjacency.build(train_bin, blocks=config.threads)
    coo = train_bin.tocoo()
    pair_users = coo.row.astype(np.int64)
    pair_items = coo.col.astype(np.int64)
    positive_keys = np.sort(pair_users * n_items + pair_items)

    ego_users = (rng.standard_normal((n_users, config.dim)) * _INIT_STD).astype(np.float32)
    ego_items = (rng.standard_normal((n_items, config.dim)) * _INIT_STD).astype(np.float32)
    adam = _Adam((ego_users, ego_items), config.lr)

    executor = ThreadPoolExecutor(config.threads) if config.threads > 1 else None
    history: list[dict[str, float | int | None]] = []
    best: tuple[float, int, Embeddings] | None = None
    stale = 0
    epoch = 0
    try:
        for epoch in range(1, config.max_epochs + 1):
            epoch_started = time.perf_counter()
            order = rng.permutation(pair_users.size)
            losses = []
            for start in range(0, order.size, batch):
                chosen = order[start : start + batch]
                users, positives = pair_users[chosen], pair_items[chosen]
                negatives = sample_negatives(users, positive_keys, n_items, rng)
                loss, grad_users, grad_items = loss_and_grad(
                    adj, ego_users, ego_items, users, positives, negatives,
                    layers=config.layers, l2=config.l2, executor=executor,
                )  # fmt: skip
                adam.step((grad_users, grad_items))
                losses.append(loss)
            mean_loss = float(np.mean(losses)) if losses else float("nan")

            recall: float | None = None
            last = epoch == config.max_epochs
            if valid_bin is not None and (epoch % config.eval_every == 0 or last):
                final = Embeddings(*propagate(adj, ego_users, ego_items, config.layers,
                                              executor=executor))  # fmt: skip
                recall = recall_at_k(
                    final,
                    train_bin,
                    valid_bin,
                    config.k,
                    exclude_seen=config.exclude_seen,
                    max_users=config.validation_users,
                )
                # The best epoch is kept whatever its margin; only a real gain resets
                # the patience.
                gained = best is None or recall > best[0] * (1.0 + config.min_gain)
                if best is None or recall > best[0]:
                    best = (recall, epoch, final)
                stale = 0 if gained else stale + 1
            seconds = time.perf_counter() - epoch_started
            history.append({"epoch": epoch, "loss": mean_loss, "recall": recall,
                            "seconds": seconds})  # fmt: skip
            if progress is not None:
                shown = "not evaluated" if recall is None else f"{recall:.4f}"
                progress(
                    f"lightgcn epoch {epoch}: loss {mean_loss:.4f}, "
                    f"validation recall@{config.k} {shown}, {seconds:.1f} s"
                )
            if stale >= config.patience:
                break
    finally:
        if executor is not None:
            executor.shutdown()

    if best is None:
        embeddings = Embeddings(*propagate(adj, ego_users, ego_items, config.layers))
        best_epoch = epoch
    else:
        _, best_epoch, embeddings = best
    return LightGCNResult(
        embeddings=embeddings,
        best_epoch=best_epoch,
        epochs_run=epoch,
        history=history,
        seconds=time.perf_counter() - started,
    )


class _Adam:
    """Adam (Kingma and Ba 2015) updating a tuple of arrays in place.

    Dense on purpose: the backward propagation spreads every batch's gradient over
    most rows, so there is no sparse update to exploit.
    """

    def __init__(self, params: tuple[np.ndarray, ...], lr: float) -> None:
        self.params = params
        self.lr = lr
        self.first = [np.zeros_like(p) for p in params]
        self.second = [np.zeros_like(p) for p in params]
        self.scratch = [np.empty_like(p) for p in params]
        self.steps = 0

    def step(self, grads: tuple[np.ndarray, ...]) -> None:
        self.steps += 1
        correction1 = 1.0 - _ADAM_BETA1**self.steps
        correction2 = 1.0 - _ADAM_BETA2**self.steps
        step_size = self.lr * np.sqrt(correction2) / correction1
        for param, grad, first, second, scratch in zip(
            self.params, grads, self.first, self.second, self.scratch, strict=True
        ):
            # In place, through one scratch array: the arrays are the whole model
            # (60K × 64 at 10K × 50K) and temporaries cost as much as the arithmetic.
            first *= _ADAM_BETA1
            np.multiply(grad, 1.0 - _ADAM_BETA1, out=scratch)
            first += scratch
            second *= _ADAM_BETA2
            np.multiply(grad, grad, out=scratch)
            scratch *= 1.0 - _ADAM_BETA2
            second += scratch
            # eps scaled as in the bias-corrected form, so this is the paper's update.
            np.sqrt(second, out=scratch)
            scratch += _ADAM_EPS * np.sqrt(correction2)
            np.divide(first, scratch, out=scratch)
            scratch *= step_size
            param -= scratch


def _spmm(
    matrix: sp.csr_matrix,
    parts: tuple[tuple[int, int, sp.csr_matrix], ...],
    dense: np.ndarray,
    executor: ThreadPoolExecutor | None,
) -> np.ndarray:
    """The product matrix @ dense, its row ranges on the executor's threads if several."""
    if executor is None or len(parts) <= 1:
        return np.asarray(matrix @ dense)
    out = np.empty((matrix.shape[0], dense.shape[1]), dtype=np.result_type(matrix, dense))

    def work(lo: int, hi: int, part: sp.csr_matrix) -> None:
        out[lo:hi] = part @ dense

    for future in [executor.submit(work, *part) for part in parts]:
        future.result()
    return out


def _row_parts(matrix: sp.csr_matrix, blocks: int) -> tuple[tuple[int, int, sp.csr_matrix], ...]:
    """(start, stop, rows) ranges of about equal numbers of stored entries."""
    if blocks <= 1:
        return ()
    targets = np.linspace(0, matrix.nnz, blocks + 1)
    bounds = np.unique(np.searchsorted(matrix.indptr, targets).clip(0, matrix.shape[0]))
    bounds[0], bounds[-1] = 0, matrix.shape[0]
    return tuple(
        (int(lo), int(hi), sp.csr_matrix(matrix[lo:hi]))
        for lo, hi in itertools.pairwise(bounds)
        if hi > lo
    )


def _scatter(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int, n_cols: int
) -> sp.csr_matrix:
    """A sparse (n_rows, n_cols) matrix with values at (rows, cols); products sum duplicates.

    Built as CSR directly (a stable sort by row and a bincount), which is cheaper than
    scipy's COO-to-CSR conversion at batch sizes.
    """
    order = np.argsort(rows, kind="stable")
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return sp.csr_matrix((values[order], cols[order], indptr), shape=(n_rows, n_cols))

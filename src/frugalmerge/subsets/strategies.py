"""The registered subset strategies.

Each takes the training responses, ``k`` and a seeded ``numpy`` generator and returns the chosen
item ids (ordered) plus optional weights (the share of the benchmark each item stands for).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from frugalmerge.estimators.errors import EstimatorError
from frugalmerge.estimators.irt import IRTParams, IRTSettings, calibrate, estimate_ability, fisher_information
from frugalmerge.subsets.core import register_subset

if TYPE_CHECKING:
    from frugalmerge.estimators.responses import ResponseMatrix


def _filled(responses: ResponseMatrix) -> np.ndarray:
    """Responses with missing cells replaced by the item mean (for distance/regression features)."""
    v = responses.values
    col_mean = np.nan_to_num(np.nanmean(v, axis=0), nan=0.5)
    return np.where(np.isnan(v), col_mean[None, :], v)


def _irt(responses: ResponseMatrix, settings: IRTSettings | None) -> IRTParams:
    return calibrate(responses.values, responses.item_ids, settings or IRTSettings())


def _kmeans_anchors(points: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """k-means on ``points`` (items x features); anchor = item nearest each centroid, weight = cluster share."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=3, random_state=int(rng.integers(2**31 - 1))).fit(points)
    anchors, weights = [], []
    for c in range(k):
        members = np.flatnonzero(km.labels_ == c)
        if members.size == 0:
            continue
        dist = ((points[members] - km.cluster_centers_[c]) ** 2).sum(axis=1)
        anchors.append(int(members[np.argmin(dist)]))
        weights.append(members.size / points.shape[0])
    # Empty clusters (rare, duplicate points): fill up with the farthest remaining items.
    taken = set(anchors)
    for i in rng.permutation(points.shape[0]):
        if len(anchors) >= k:
            break
        if int(i) not in taken:
            anchors.append(int(i))
            weights.append(1.0 / points.shape[0])
            taken.add(int(i))
    return np.asarray(anchors), np.asarray(weights)


@register_subset("random")
def random_items(responses: ResponseMatrix, k: int, rng: np.random.Generator) -> tuple[list[str], None]:
    """Uniformly random items (the baseline every other strategy must beat)."""
    cols = rng.choice(responses.n_items, size=k, replace=False)
    return [responses.item_ids[c] for c in cols], None


@register_subset("stratified")
def stratified_items(responses: ResponseMatrix, k: int, rng: np.random.Generator, bins: int = 5) -> tuple[list[str], list[float]]:
    """Random items within strata: the item groups (subjects) when known, else difficulty quantiles.

    Allocation is proportional to stratum size (largest remainder); weights are stratum share /
    items drawn from it, so the weighted mean is the stratified estimator of the full mean.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:  # 0 or 1 bin is plain random
        raise EstimatorError(f"subset 'stratified': bins must be an integer >= 2, got {bins!r}")
    if responses.item_groups is not None:
        labels = np.asarray(responses.item_groups)
    else:
        p = np.nan_to_num(np.nanmean(responses.values, axis=0), nan=0.5)
        edges = np.quantile(p, np.linspace(0, 1, bins + 1)[1:-1])
        labels = np.digitize(p, edges).astype(str)
    strata, inverse = np.unique(labels, return_inverse=True)
    sizes = np.bincount(inverse)
    quota = sizes / sizes.sum() * k
    alloc = np.floor(quota).astype(int)
    for s in np.argsort(-(quota - alloc), kind="stable")[: k - alloc.sum()]:
        alloc[s] += 1
    ids, weights = [], []
    for s in range(len(strata)):
        if alloc[s] == 0:
            continue
        members = rng.choice(np.flatnonzero(inverse == s), size=min(alloc[s], sizes[s]), replace=False)
        ids += [responses.item_ids[c] for c in members]
        weights += [sizes[s] / sizes.sum() / members.size] * members.size
    return ids, weights


@register_subset("anchor_points")
def anchor_points(responses: ResponseMatrix, k: int, rng: np.random.Generator) -> tuple[list[str], list[float]]:
    """Anchor points (Vivek et al.): k-means on the items' correctness patterns over training models."""
    cols, weights = _kmeans_anchors(_filled(responses).T, k, rng)
    return [responses.item_ids[c] for c in cols], weights.tolist()


@register_subset("irt_clustering")
def irt_clustering(responses: ResponseMatrix, k: int, rng: np.random.Generator,
                   irt: IRTSettings | None = None) -> tuple[list[str], list[float]]:
    """tinyBenchmarks' IRT clustering: k-means on item embeddings (discriminations, intercept)."""
    params = _irt(responses, irt)
    emb = np.column_stack([params.a, params.d])
    emb = (emb - emb.mean(axis=0)) / emb.std(axis=0).clip(1e-8)
    cols, weights = _kmeans_anchors(emb, k, rng)
    return [responses.item_ids[c] for c in cols], weights.tolist()


@register_subset("fisher")
def max_fisher(responses: ResponseMatrix, k: int, rng: np.random.Generator,
               irt: IRTSettings | None = None) -> tuple[list[str], None]:
    """Maximum Fisher information over the ability range (metabench).

    Why not plain top-k information at one ability: that picks near-duplicate items and gives
    worst-case errors of tens of points. Instead the k abilities at evenly spaced quantiles of the
    training abilities each take the most informative item not yet taken.
    """
    params = _irt(responses, irt)
    order = np.argsort(params.train_theta[:, 0] if params.dims == 1 else params.train_theta.sum(axis=1))
    picks = order[((np.arange(k) + 0.5) / k * len(order)).astype(int)]
    info = fisher_information(params, params.train_theta[picks])  # (k, items)
    taken: list[int] = []
    free = np.ones(responses.n_items, dtype=bool)
    # Visit the quantiles from the middle outwards: the crowded centre of the population first.
    for q in np.argsort(np.abs(np.arange(k) - (k - 1) / 2), kind="stable"):
        c = int(np.argmax(np.where(free, info[q], -np.inf)))
        taken.append(c)
        free[c] = False
    return [responses.item_ids[c] for c in taken], None


def _exchange(x: np.ndarray, y: np.ndarray, chosen: list[int], lam: float, max_passes: int = 10) -> list[int]:
    """Exchange (Fedorov-style) refinement of a greedy selection: each chosen item in turn is
    replaced by the free item that most increases the ridge fit of the others plus it, until a full
    pass changes nothing. ``x`` (centred, n x m), ``y`` (centred). Greedy forward selection commits
    to early picks that later ones make redundant; swapping undoes that.
    """
    chosen = list(chosen)
    xty = x.T @ y
    diag = (x**2).sum(axis=0) + lam
    rows = x[:, chosen].T @ x  # G[S, :], one row per chosen item
    for _ in range(max_passes):
        changed = False
        for pos in range(len(chosen)):
            rest = [p for p in range(len(chosen)) if p != pos]
            u = rows[rest]  # G[S \ pos, :]
            inv = np.linalg.inv(u[:, [chosen[p] for p in rest]] + lam * np.eye(len(rest)))
            au = inv @ u
            resid = xty - au.T @ xty[[chosen[p] for p in rest]]
            gain = resid**2 / np.maximum(diag - (u * au).sum(axis=0), 1e-12)
            gain[[chosen[p] for p in rest]] = -np.inf
            c = int(np.argmax(gain))
            if c != chosen[pos] and gain[c] > gain[chosen[pos]] * (1 + 1e-9):
                chosen[pos] = c
                rows[pos] = x[:, c] @ x
                changed = True
        if not changed:
            break
    return chosen


@register_subset("predictive")
def predictive_items(responses: ResponseMatrix, k: int, rng: np.random.Generator,
                     ridge: float | None = None, pool: int | None = None,
                     exchange: bool = False) -> tuple[list[str], None]:
    """Greedy forward selection of the items whose responses best predict the full score (ridge R^2
    on training models). Why: it targets what estimators predict, not a proxy such as information.
    The ridge penalty grows as training models get fewer (rule of n) to limit in-sample overfitting.
    ``exchange=True`` refines the greedy set by item swaps (:func:`_exchange`): a better fit of the
    training models, so only worth it with many of them (``default`` uses it from 500 models).
    """
    x = _filled(responses)
    x = x - x.mean(axis=0)
    y = responses.full_scores() - responses.full_scores().mean()
    candidates = np.arange(x.shape[1])
    if pool is not None and pool < x.shape[1]:
        # A seeded random pool of candidates: greedy selection over thousands of items with few
        # models finds items that fit the training scores by chance (selection overfit).
        candidates = np.sort(rng.choice(x.shape[1], size=max(pool, k), replace=False))
        x = x[:, candidates]
    n, m = x.shape
    lam = ridge if ridge is not None else max(1.0, 200.0 / n) * n * 1e-3 + 1.0
    xty = x.T @ y
    diag = (x**2).sum(axis=0) + lam
    jitter = rng.random(m) * 1e-12  # seeded tie-breaking between identical items
    chosen: list[int] = []
    rows = np.empty((0, m))  # G[S, :] = X_S^T X, grown one row per step (never the full m x m Gram)
    inv = np.empty((0, 0))  # (G[S, S] + lam I)^-1
    for _ in range(k):
        # Gain of adding c (block inverse): (xty_c - u^T A xty_S)^2 / (G_cc + lam - u^T A u).
        au = inv @ rows
        resid = xty - au.T @ xty[chosen] if chosen else xty.copy()
        schur = diag - (rows * au).sum(axis=0)
        gain = resid**2 / np.maximum(schur, 1e-12) + jitter
        gain[chosen] = -np.inf
        c = int(np.argmax(gain))
        u = rows[:, c]
        au_c = inv @ u
        sc = max(float(schur[c]), 1e-12)
        new_inv = np.empty((len(chosen) + 1, len(chosen) + 1))
        new_inv[:-1, :-1] = inv + np.outer(au_c, au_c) / sc
        new_inv[:-1, -1] = new_inv[-1, :-1] = -au_c / sc
        new_inv[-1, -1] = 1.0 / sc
        inv = new_inv
        rows = np.vstack([rows, x[:, c] @ x])
        chosen.append(c)
    if exchange and len(chosen) < m:  # with every item chosen there is nothing to swap in
        chosen = _exchange(x, y, chosen, lam)
    return [responses.item_ids[candidates[c]] for c in chosen], None


class AdaptiveSession:
    """Sequential (computerised adaptive) testing: the next item is the one with the most Fisher
    information at the current MAP ability; call :meth:`record` with each observed score."""

    def __init__(self, params: IRTParams) -> None:
        self.params = params
        self.asked: list[int] = []
        self.scores: list[float] = []

    @property
    def theta(self) -> np.ndarray:
        """Current MAP ability (the prior mean before any response)."""
        if not self.asked:
            return np.zeros((1, self.params.dims))
        theta, _ = estimate_ability(self.params, np.asarray([self.scores]), np.asarray(self.asked))
        return theta

    def next_item(self) -> str:
        if len(self.asked) >= len(self.params.item_ids):
            raise EstimatorError("adaptive session: every item has been asked")
        info = fisher_information(self.params, self.theta)[0]
        info[self.asked] = -np.inf
        return self.params.item_ids[int(np.argmax(info))]

    def record(self, item_id: str, score: float) -> None:
        try:
            col = self.params.item_ids.index(item_id)
        except ValueError:
            raise EstimatorError(f"adaptive session: unknown item {item_id!r}") from None
        if col in self.asked:
            raise EstimatorError(f"adaptive session: item {item_id!r} was already recorded")
        if not 0.0 <= float(score) <= 1.0:
            raise EstimatorError(f"adaptive session: score {score!r} outside [0, 1]")
        self.asked.append(col)
        self.scores.append(float(score))


@register_subset("adaptive")
def adaptive_items(responses: ResponseMatrix, k: int, rng: np.random.Generator,
                   irt: IRTSettings | None = None) -> tuple[list[str], None]:
    """A fixed-form version of adaptive testing: the sequence an :class:`AdaptiveSession` asks a model
    of median training ability that answers each item with its most likely response."""
    params = _irt(responses, irt)
    median = np.median(params.train_theta, axis=0, keepdims=True)
    session = AdaptiveSession(params)
    for _ in range(k):
        item = session.next_item()
        col = params.item_ids.index(item)
        session.record(item, float(params.prob(median, np.asarray([col]))[0, 0] >= 0.5))
    return [params.item_ids[c] for c in session.asked], None

"""The estimator benchmark: k-fold cross-validation over models.

For each test model only its responses on the k items the method chose are revealed; the method
predicts the full score (target, else the mean over all items). Estimators share one IRT
calibration per training fold through :func:`frugalmerge.estimators.irt.calibrate`'s cache.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from frugalmerge._atomic import atomic_write_bytes, atomic_write_text
from frugalmerge.estimators.core import Estimates, Estimator, estimator_names, make_estimator
from frugalmerge.estimators.errors import EstimatorError
from frugalmerge.estimators.responses import ResponseMatrix

__all__ = ["parse_ks", "fold_indices", "run_bench", "write_json", "plot_results", "cross_validate"]


def parse_ks(text: str | Sequence[int | str]) -> list[int | str]:
    """``"10,30,all"`` -> ``[10, 30, "all"]``; ``all`` means every item of the matrix."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    out: list[int | str] = []
    for p in parts:
        p = str(p).strip()
        if not p:
            continue
        if p == "all":
            out.append("all")
            continue
        try:
            k = int(p)
        except ValueError:
            raise EstimatorError(f"--k: {p!r} is not an integer or 'all'") from None
        if k < 1:
            raise EstimatorError(f"--k: k must be >= 1, got {k}")
        out.append(k)
    if not out:
        raise EstimatorError("--k: no values given")
    return out


def fold_indices(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """Seeded split of ``n`` rows into ``folds`` test folds."""
    if folds < 2:
        raise EstimatorError(f"--folds must be >= 2, got {folds}")
    if n < folds:
        raise EstimatorError(f"{folds}-fold cross-validation needs at least {folds} models, got {n}")
    return [np.sort(f) for f in np.array_split(np.random.default_rng(seed).permutation(n), folds)]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def cross_validate(responses: ResponseMatrix, method: str, k: int | str, folds: int = 5, seed: int = 0,
                   context: dict[str, Any] | None = None, **params: Any) -> dict[str, float]:
    """CV error of one estimator (used for a card's validation error). ``context`` is passed to
    every fit; its ``endpoints`` (MERGE³'s endpoint models) always stay in training, as they do
    when the card is used, and are never test models."""
    keep = tuple((context or {}).get("endpoints") or ())
    rows = run_bench(responses, [k], [method], folds=folds, seed=seed, params={method: params}, progress=False,
                     context=context, keep_in_train=keep)
    return rows[0]


def predict_revealed(est: Estimator, test: ResponseMatrix, k: int,
                     prior: tuple[float, float] | None = None) -> Estimates:
    """``est``'s estimates for the ``test`` models from only what the method may see: the responses
    on its chosen items (no target), or for a sequential estimator one response per model per step
    through a counting oracle (exactly min(k, available) responses per test model).

    In a sparse matrix a test model may have no response on any chosen item: with ``prior``
    (mean, SD of the training models' scores) it gets that mean and SD, the honest estimate from
    nothing; without, the estimator's error stands."""
    if est.sequential:
        from frugalmerge.estimators.adaptive import ResponseOracle

        oracle = ResponseOracle(test.reveal(test.item_ids))
        out = est.predict_sequential(oracle)
        oracle.check(k)
        return out
    seen = ~np.isnan(test.take_items(est.selected_items_)).all(axis=1)
    if prior is None or seen.all():
        return est.predict(test.reveal(est.selected_items_))
    score, se = np.full(test.n_models, prior[0]), np.full(test.n_models, prior[1])
    if seen.any():
        out = est.predict(test.select_models(np.flatnonzero(seen)).reveal(est.selected_items_))
        score[seen], se[seen] = out.score, out.se
    return Estimates(test.model_ids, score, se)


def run_bench(
    responses: ResponseMatrix,
    ks: Sequence[int | str],
    methods: Sequence[str] | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
    params: dict[str, dict[str, Any]] | None = None,
    progress: bool = True,
    context: dict[str, Any] | None = None,
    keep_in_train: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Run the benchmark; one row per (method, k) with mae, max_abs_error, spearman, n_test
    (errors in score units) plus ``rmse``, ``seconds``, ``mean_se`` (mean reported standard error)
    and ``within_2se`` (the fraction of test models whose |error| is at most twice the standard
    error reported with the estimate: how honest the reported uncertainty is)."""
    names = list(methods) if methods else estimator_names()
    known = estimator_names()
    for m in names:
        if m not in known:
            raise EstimatorError(f"unknown method {m!r} (known: {', '.join(known)})")
    k_values = [responses.n_items if k == "all" else min(int(k), responses.n_items) for k in ks]
    k_values = list(dict.fromkeys(k_values))
    truth = responses.full_scores()
    pred = {(m, k): np.full(responses.n_models, np.nan) for m in names for k in k_values}
    se = {(m, k): np.full(responses.n_models, np.nan) for m in names for k in k_values}
    secs = {(m, k): 0.0 for m in names for k in k_values}
    # Models in keep_in_train are never tested: the folds split the others.
    index = {m: r for r, m in enumerate(responses.model_ids)}
    unknown = [m for m in keep_in_train if m not in index]
    if unknown:
        raise EstimatorError(f"{unknown[0]!r} is not a model of {responses.name}")
    testable = np.setdiff1d(np.arange(responses.n_models), [index[m] for m in keep_in_train])
    split = [testable[f] for f in fold_indices(testable.size, folds, seed)]
    total = len(split) * len(names) * len(k_values)

    def work(tick) -> None:
        for f, test_rows in enumerate(split):
            train_rows = np.setdiff1d(np.arange(responses.n_models), test_rows)
            train = responses.select_models(train_rows)
            test = responses.select_models(test_rows)
            train_scores = train.full_scores()
            prior = (float(train_scores.mean()), float(train_scores.std()))
            for m in names:
                for k in k_values:
                    start = time.perf_counter()
                    est = make_estimator(m, **(params or {}).get(m, {})).fit(train, k=k, seed=seed + f,
                                                                            **(context or {}))
                    out = predict_revealed(est, test, k, prior)
                    pred[(m, k)][test_rows] = out.score
                    se[(m, k)][test_rows] = out.se
                    secs[(m, k)] += time.perf_counter() - start
                    tick(f"fold {f + 1}/{len(split)} {m} k={k}")

    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      transient=True) as bar:
            task = bar.add_task("estimators bench", total=total)
            work(lambda d: bar.update(task, advance=1, description=d))
    else:
        work(lambda d: None)

    rows = []
    for m in names:
        for k in k_values:
            p, t, s_ = pred[(m, k)][testable], truth[testable], se[(m, k)][testable]
            err = np.abs(p - t)
            rows.append({"method": m, "k": int(k), "mae": float(err.mean()), "max_abs_error": float(err.max()),
                         "spearman": _spearman(p, t), "n_test": int(err.size),
                         "rmse": float(np.sqrt(np.mean(err**2))), "mean_se": float(np.mean(s_)),
                         "within_2se": float(np.mean(err <= 2 * s_)), "seconds": round(secs[(m, k)], 3)})
    return rows


CONTRACT_KEYS = ("method", "k", "mae", "max_abs_error", "spearman", "n_test")
# Beyond the contract, kept apart in the JSON's "extra" list so "results" stays exactly the contract.
EXTRA_KEYS = ("rmse", "mean_se", "within_2se", "seconds")


def nan_to_none(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (JSON null: NaN is not JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    return obj


def write_json(rows: list[dict[str, Any]], path: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Atomically write ``{"results": [...contract keys...], "meta": {...}, "extra": [...]}``."""
    path = Path(path)
    doc: dict[str, Any] = {"results": [{k: r[k] for k in CONTRACT_KEYS} for r in rows]}
    doc["extra"] = [{"method": r["method"], "k": r["k"], **{x: r[x] for x in EXTRA_KEYS}} for r in rows]
    if meta:
        doc["meta"] = meta
    # Strict JSON: a NaN (e.g. the Spearman correlation of a constant target) is written as null.
    atomic_write_text(path, json.dumps(nan_to_none(doc), indent=2, allow_nan=False))


def plot_results(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> None:
    """PNG: MAE (points) vs k, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r["k"], 100 * r["mae"]) for r in rows if r["method"] == m)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m,
                linewidth=2.5 if m == "default" else 1.2)
    ax.set_xscale("log")
    ax.set_xlabel("k (items revealed per model)")
    ax.set_ylabel("MAE (score points)")
    ax.set_title(title or "estimator error vs k")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())

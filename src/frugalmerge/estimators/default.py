"""``default``: the estimator frugalmerge recommends.

A calibrated stacker. From a model's k revealed responses it computes features

* ``theta``, ``theta_sd`` - MAP ability and its posterior SD (2PL calibrated on all training items),
* ``pirt`` - the p-IRT estimate, ``wmean`` - the (anchor-)weighted subset mean,
* ``impute_ridge`` - a ridge fitted on the training models' FULL item matrix, applied to the
  revealed responses with the unseen items filled in by IRT probabilities,
* ``sub_ridge`` - a ridge on the k responses, ``knn`` - mean target of the nearest training
  models on the k items (leaderboards are full of near-duplicate fine-tunes),
* ``krr_1``, ``krr_3``, ``krr_10`` (``n >= 500`` only) - kernel ridge regressions on the k
  responses (RBF kernels of three widths on the fraction of disagreeing items): smooth,
  similarity-weighted versions of ``knn`` that also interpolate between model families,
* ``lridge`` (``n >= 500`` only) - the prototype local ridge of ``adaptive`` on the k items:
  the neighbours' mean corrected linearly,
* ``nn_score``, ``nn_dist``, ``nn_ties``, ``nn_w0.5``, ``nn_w1``, ``nn_w2`` (``n >= 500`` only) -
  near-duplicate features: the mean target of the training models nearest to the query, their
  distance and how many tie, and kernel means sharply centred on that distance (with 100+ items a
  zero or one-item distance means a re-upload or a near-copy),
* plus the k responses themselves,

and learns the map to the target on the training models. Ridge features (and, from 500 models,
every neighbour feature: ``knn``, ``krr_*``, ``lridge``, ``nn_*``) are cross-fitted by folds so
the stacker sees honest (out-of-fold) values (:func:`crossfit_rows` says why not leave-one-out).
One recipe for every data set, chosen by a rule of the number of training models ``n`` (never by
data set):

* ``n >= 500``: gradient-boosted trees on all features blended with a linear stacker on the
  summary features, fitted by least absolute deviations (the metric is the MAE); the blend weight
  comes from inner cross-validation on the training models, and the stacker is refitted without
  the training models it misses by more than 5 robust SDs (leaderboard outliers); the standard
  error is a boosted model of the first round's out-of-fold absolute residuals.
* ``30 <= n < 500``: ridge stacker on the summary features; SE = out-of-fold RMSE.
* ``n < 30``: ridge stacker on (pirt, wmean, sub_ridge) only; SE = out-of-fold RMSE.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from frugalmerge.estimators.components import (column_means, crossfit_ridge, crossfit_rows, fit_hgb, fit_lad, fit_ridge,
                                               fold_splits, pack, predict_hgb, robust_inliers, unpack,
                                               weighted_local_ridge)
from frugalmerge.estimators.core import register_estimator
from frugalmerge.estimators.irt import calibrate, estimate_ability
from frugalmerge.estimators.methods import IRT_PARAMS, _check_int, _IRTBased, _weighted_mean
from frugalmerge.estimators.responses import ResponseMatrix

FULL_TIER_MIN = 500
SMALL_TIER_MAX = 30
SUMMARY = ("theta", "theta_sd", "pirt", "wmean", "impute_ridge", "sub_ridge", "knn")
SMALL_SUMMARY = ("pirt", "wmean", "sub_ridge")
# Kernel ridge constants: kernels exp(-gamma * mean squared difference of the k responses) (for
# binary responses, the fraction of items on which two models disagree), one feature per gamma
# (a narrow kernel acts like near-duplicate matching, a wide one like a smooth regression), and the
# ridge penalty on the centred target. Chosen on an inner split of fold 0's TRAINING models (arc,
# gsm8k, mmlu at k = 30 and all items; flat optimum), fixed for every data set.
KRR_GAMMAS = (1.0, 3.0, 10.0)
KRR_ALPHA = 0.03
KRR_SUMMARY = SUMMARY + tuple(f"krr_{g:g}" for g in KRR_GAMMAS)


def _sqdist(q: np.ndarray, t: np.ndarray) -> np.ndarray:
    return (q**2).sum(axis=1)[:, None] + (t**2).sum(axis=1)[None, :] - 2.0 * q @ t.T


def knn_mean(query: np.ndarray, train: np.ndarray, target: np.ndarray, n_neighbors: int,
             exclude_self: bool = False, chunk: int = 512) -> np.ndarray:
    """Mean target of the ``n_neighbors`` training rows nearest to each query row (squared L2,
    i.e. Hamming distance on binary responses); ``exclude_self`` for the training rows themselves."""
    nn = max(1, min(n_neighbors, train.shape[0] - (1 if exclude_self else 0)))
    out = np.empty(query.shape[0])
    for s in range(0, query.shape[0], chunk):
        d = _sqdist(query[s:s + chunk], train)
        if exclude_self:
            d[np.arange(d.shape[0]), np.arange(s, s + d.shape[0])] = np.inf
        # Tiny index-based jitter: deterministic tie-breaking among equal Hamming distances.
        d = d + np.arange(train.shape[0])[None, :] * 1e-9
        idx = np.argpartition(d, nn - 1, axis=1)[:, :nn]
        out[s:s + chunk] = target[idx].mean(axis=1)
    return out


def _kernel(d: np.ndarray, m: int, gamma: float) -> np.ndarray:
    return np.exp(-gamma * np.maximum(d, 0.0) / m)


def fit_krr(x: np.ndarray, y: np.ndarray, gammas: tuple[float, ...] = KRR_GAMMAS,
            alpha: float = KRR_ALPHA) -> tuple[np.ndarray, float]:
    """Kernel ridge on the centred target, one RBF width per column: (dual coefficients (n, G), target mean)."""
    from scipy.linalg import solve

    mu = float(np.mean(y))
    d = _sqdist(x, x)
    dual = np.empty((x.shape[0], len(gammas)))
    for j, g in enumerate(gammas):
        k = _kernel(d, x.shape[1], g)
        k[np.diag_indices_from(k)] += alpha
        dual[:, j] = solve(k, y - mu, assume_a="pos", overwrite_a=True)
    return dual, mu


def predict_krr(q: np.ndarray, train: np.ndarray, dual: np.ndarray, mu: float,
                gammas: tuple[float, ...] = KRR_GAMMAS, chunk: int = 1024) -> np.ndarray:
    """Kernel ridge predictions (n_query, G) for the query rows, one column per RBF width."""
    out = np.empty((q.shape[0], len(gammas)))
    for s in range(0, q.shape[0], chunk):
        d = _sqdist(q[s:s + chunk], train)
        for j, g in enumerate(gammas):
            out[s:s + chunk, j] = _kernel(d, q.shape[1], g) @ dual[:, j] + mu
    return out


def crossfit_krr(x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold kernel ridge predictions (n, G) for the training rows (the stacker sees honest values)."""
    return crossfit_rows(lambda q, tx, ty: predict_krr(q, tx, *fit_krr(tx, ty)), x, y, folds, seed)


# Prototype local ridge (``lridge``, n >= 500 only): the fixed-form counterpart of ``adaptive``'s
# estimate with the k selected items asked. Same constants as ``adaptive`` (log-weight lost per
# disagreeing item 1, times 30 / k beyond k = 30; ridge penalty 0.1). Inner split of fold 0's
# training models (k = 30 / all items): arc 1.418 / 1.003 -> 1.392 / 0.952, gsm8k 2.553 / 1.115 ->
# 2.531 / 1.063, mmlu 1.220 / 0.802 -> 1.203 / 0.782.
LR_GAMMA, LR_ALPHA, LR_REF_K = 1.0, 0.1, 30
# Full tier (n >= 500): the linear stacker is a least-absolute-deviations fit (the metric is the
# MAE) and the stacker is refitted without training models whose out-of-fold residual exceeds
# TRIM_SD robust SDs. Inner split of fold 0's training models (k = 30 / all items, MAE points):
# arc 1.394 / 0.952 -> 1.392 / 0.940, gsm8k 2.531 / 1.063 -> 2.502 / 1.053, mmlu 1.205 / 0.782 ->
# 1.187 / 0.768.
TRIM_SD = 5.0
# Near-duplicate features (n >= 500): kernel means with weights exp(-g * (distance - nearest
# distance)), one per g. Inner split of fold 0's training models (MAE points, all items): arc
# 0.940 -> 0.911, gsm8k 1.053 -> 1.052, mmlu 0.768 -> 0.716. Session 6 kept them to 100+ items
# because they hurt at k = 30 (arc 1.392 -> 1.455), but that was the leave-one-out leak (see
# crossfit_rows): cross-fitted, they help at k = 30 / 50 too (gsm8k 2.496 -> 2.465, mmlu 1.190 ->
# 1.152 at k = 30), so from session 7 they apply at every k.
NN_GAMMAS = (0.5, 1.0, 2.0)
NN_SUMMARY = ("nn_score", "nn_dist", "nn_ties") + tuple(f"nn_w{g:g}" for g in NN_GAMMAS)


def local_ridge(q: np.ndarray, train: np.ndarray, t: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Posterior-weighted local ridge of ``t`` on the training rows, evaluated at each query row.

    Weights ``exp(-gamma * squared distance)`` (the number of disagreeing items on binary rows,
    gamma = 1 up to 30 items, 30 / m beyond), a weighted ridge (penalty ``LR_ALPHA``) of the target
    on the items around the weighted mean, evaluated at the query: the neighbours' mean score
    corrected linearly for where the query differs from them."""
    m = train.shape[1]
    g = LR_GAMMA * min(1.0, LR_REF_K / m)
    out = np.empty(q.shape[0])
    for s in range(0, q.shape[0], chunk):
        lw = -g * np.maximum(_sqdist(q[s:s + chunk], train), 0.0)
        w = np.exp(lw - lw.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        for i in range(w.shape[0]):
            out[s + i] = weighted_local_ridge(w[i], train, t, q[s + i], LR_ALPHA)
    return out


def nearest_features(query: np.ndarray, train: np.ndarray, target: np.ndarray,
                     chunk: int = 512) -> dict[str, np.ndarray]:
    """Near-duplicate features of each query row against the training rows (``NN_SUMMARY``).

    Squared L2 distances (the number of disagreeing items on binary rows): the mean target of the
    training rows at the smallest distance, that distance, log(1 + number of rows at it), and per
    g in ``NN_GAMMAS`` the target mean with weights ``exp(-g * (distance - smallest distance))``."""
    cols = np.empty((query.shape[0], len(NN_SUMMARY)))
    for s in range(0, query.shape[0], chunk):
        d = np.maximum(_sqdist(query[s:s + chunk], train), 0.0)
        dmin = d.min(axis=1)
        gap = d - dmin[:, None]
        nearest = gap <= 1e-6
        ties = nearest.sum(axis=1)
        block = [nearest @ target / ties, dmin, np.log1p(ties)]
        for g in NN_GAMMAS:
            w = np.exp(-g * gap)
            block.append(w @ target / w.sum(axis=1))
        cols[s:s + chunk] = np.column_stack(block)
    return {name: cols[:, j] for j, name in enumerate(NN_SUMMARY)}


def _krr_features(f: dict[str, np.ndarray], values: np.ndarray) -> None:
    for j, g in enumerate(KRR_GAMMAS):
        f[f"krr_{g:g}"] = values[:, j]


@register_estimator("default")
class Default(_IRTBased):
    """Calibrated stacking estimator with per-model standard errors (see module docstring)."""

    default_subset = "predictive"
    # no `calibration`: the stacker is the map to the target
    param_names = ("subset",) + IRT_PARAMS + ("n_neighbors", "folds")

    def _check_params(self) -> None:
        super()._check_params()  # irt_model / dims (no calibration parameter to check here)
        _check_int(self.name, self.params, "n_neighbors", 1)
        _check_int(self.name, self.params, "folds", 2)

    def _subset_params(self, name: str) -> dict[str, Any]:
        # From 500 training models the greedy items are refined by swaps (better fit, no selection
        # overfit with thousands of models); below, the plain greedy set as before.
        if name == "predictive" and getattr(self, "_n_fit", 0) >= FULL_TIER_MIN:
            return {"exchange": True}
        return super()._subset_params(name)

    # -- features -----------------------------------------------------------------------------
    def _base_features(self, y: np.ndarray) -> dict[str, np.ndarray]:
        params = self.irt_params()
        cols = np.asarray(self.sel_cols_)
        theta, sd = estimate_ability(params, y, cols)
        p_all = params.prob(theta)
        y_imp = np.where(np.isnan(y), p_all[:, cols], y)
        full = p_all.copy()
        full[:, cols] = y_imp
        pirt = full.mean(axis=1)
        return {"theta": theta[:, 0], "theta_sd": sd[:, 0], "pirt": pirt,
                "wmean": _weighted_mean(y_imp, np.asarray(self.weights_)), "y_imp": y_imp, "full": full}

    def _summary_names(self) -> tuple[str, ...]:
        if self.tier_ == "small":
            return SMALL_SUMMARY
        # Cards saved before the kernel ridge / local ridge / near-duplicate features existed lack
        # ``krr_dual_`` / ``lridge_`` / ``nn_``: same features as then.
        if getattr(self, "lridge_", False):
            return KRR_SUMMARY + ("lridge",) + (NN_SUMMARY if getattr(self, "nn_", False) else ())
        return KRR_SUMMARY if getattr(self, "krr_dual_", None) is not None else SUMMARY

    def _matrix(self, f: dict[str, np.ndarray]) -> np.ndarray:
        summary = np.column_stack([f[n] for n in self._summary_names()])
        if self.tier_ != "full":
            return summary
        return np.column_stack([summary, f["y_imp"]])

    def _ridge_stack(self, x: np.ndarray) -> np.ndarray:
        s = len(self._summary_names())
        return ((x[:, :s] - self.stack_mu_) / self.stack_sigma_) @ self.stack_coef_ + self.stack_b_

    # -- fit ----------------------------------------------------------------------------------
    def _fit(self, train: ResponseMatrix, k: int, seed: int, **context: Any) -> None:
        self._n_fit = train.n_models
        # Set below in the full tier only; a refit must not keep a stale one (and below 500 models
        # the fitted state stays exactly what it was before this feature existed).
        for stale in ("krr_dual_", "krr_mu_", "lridge_", "nn_", "n_trimmed_"):
            self.__dict__.pop(stale, None)
        self._select(train, k, seed)
        settings = self._settings()
        params = calibrate(train.values, train.item_ids, settings)
        self.irt_a_, self.irt_d_, self.irt_theta_ = params.a, params.d, params.train_theta
        self.irt_settings_ = settings.model_dump()
        n = train.n_models
        self.tier_ = "full" if n >= FULL_TIER_MIN else ("ridge" if n >= SMALL_TIER_MAX else "small")
        folds = int(self.params.get("folds", 5))
        target = train.full_scores()
        y_train = train.take_items(self.selected_)
        f = self._base_features(y_train)
        if self.tier_ != "full":
            # With few models per item, in-sample IRT features are far too good (each model's own
            # responses shaped the item parameters): cross-fit them like the ridge features.
            f = self._crossfit_irt_features(train, y_train, f, folds, seed)

        # impute-ridge: fitted on the FULL training matrix, applied to "revealed + IRT-imputed" rows.
        col_mean = column_means(train.values)
        x_full = np.where(np.isnan(train.values), col_mean[None, :], train.values)
        oof_ir = np.empty(n)
        for keep, held in fold_splits(n, folds, seed):
            coef, b = fit_ridge(x_full[keep], target[keep])
            oof_ir[held] = f["full"][held] @ coef + b
        self.ir_coef_, self.ir_b_ = fit_ridge(x_full, target)
        f["impute_ridge"] = oof_ir
        f["sub_ridge"], self.sr_coef_, self.sr_b_ = crossfit_ridge(f["y_imp"], target, folds, seed + 1)
        self.knn_x_ = f["y_imp"].astype(np.float32)
        self.knn_y_ = target.astype(np.float64)
        self.n_neighbors_ = int(self.params.get("n_neighbors", 20))
        if self.tier_ != "full":
            f["knn"] = knn_mean(f["y_imp"], f["y_imp"], target, self.n_neighbors_, exclude_self=True)
        else:
            # Same float32 training rows as predict() uses. Every neighbour feature is cross-fitted
            # by folds, not left one out: see crossfit_rows (the trees decode leave-one-out means).
            xk = np.asarray(self.knn_x_, np.float64)
            nn_k = self.n_neighbors_
            f.update(crossfit_rows(lambda q, tx, ty: {"knn": knn_mean(q, tx, ty, nn_k), "lridge": local_ridge(q, tx, ty),
                                                      **nearest_features(q, tx, ty)}, xk, target, folds, seed + 6))
            _krr_features(f, crossfit_krr(xk, target, folds, seed + 5))
            self.krr_dual_, self.krr_mu_ = fit_krr(xk, target)
            self.lridge_ = True
            self.nn_ = True

        x = self._matrix(f)
        s = len(self._summary_names())
        full = self.tier_ == "full"
        rows = np.arange(n)
        oof = self._stack(x, target, rows, s, folds, seed)
        resid = np.abs(oof - target)
        if full:
            # Refit without the training models the first stacker misses by more than TRIM_SD
            # robust SDs (leaderboard outliers: odd eval settings, broken runs). The residuals and
            # the SE model below stay those of the first round over every model (outliers happen
            # to new models too).
            rows = np.flatnonzero(robust_inliers(oof - target, TRIM_SD))
            if rows.size < n:
                self._stack(x, target, rows, s, folds, seed)
            self.n_trimmed_ = int(n - rows.size)
        self.cv_mae_ = float(resid.mean())
        self.se_const_ = float(np.sqrt(np.mean(resid**2)))
        self.se_inflation_ = 1.0
        if not full and self.subset_strategy_ == "predictive":
            self.se_inflation_ = self._selection_inflation(train, k, seed, folds)
            self.se_const_ *= self.se_inflation_
        if full:
            # Conditional SE: E|r| given the summary features, times sqrt(pi/2) (normal residuals).
            pack(self, "se_", fit_hgb(x[:, :s], resid, seed, max_iter=100, max_leaf_nodes=7, min_samples_leaf=50))

    def _stack(self, x: np.ndarray, target: np.ndarray, rows: np.ndarray, s: int, folds: int,
               seed: int) -> np.ndarray:
        """Fit the stacker on the training ``rows``: a linear stacker on the standardised summary
        features (full tier: least absolute deviations, the benchmark's metric; else ridge) and, in
        the full tier, boosted trees on every feature blended by the weight that minimises the
        out-of-fold MAE. Sets the fitted stacker (and ``blend_w_``); returns the out-of-fold predictions."""
        full = self.tier_ == "full"
        x, target = x[rows], target[rows]
        n = rows.size
        linear = fit_lad if full else fit_ridge
        self.stack_mu_ = x[:, :s].mean(axis=0)
        self.stack_sigma_ = x[:, :s].std(axis=0).clip(1e-9)
        xs = (x[:, :s] - self.stack_mu_) / self.stack_sigma_
        inner = 3 if n >= 2000 else folds  # fold_splits clips it to [2, n]
        oof_lin = np.empty(n)
        oof_hgb = np.empty(n)
        for keep, held in fold_splits(n, inner, seed + 2):
            coef, b = linear(xs[keep], target[keep])
            oof_lin[held] = xs[held] @ coef + b
            if full:
                oof_hgb[held] = predict_hgb(fit_hgb(x[keep], target[keep], seed), x[held])
        self.stack_coef_, self.stack_b_ = linear(xs, target)
        if not full:
            self.blend_w_ = 0.0
            return oof_lin
        pack(self, "hgb_", fit_hgb(x, target, seed))
        grid = np.linspace(0.0, 1.0, 21)
        maes = [np.mean(np.abs(g * oof_hgb + (1 - g) * oof_lin - target)) for g in grid]
        self.blend_w_ = float(grid[int(np.argmin(maes))])
        return self.blend_w_ * oof_hgb + (1 - self.blend_w_) * oof_lin

    def _crossfit_irt_features(self, train: ResponseMatrix, y: np.ndarray, f: dict[str, np.ndarray],
                               folds: int, seed: int) -> dict[str, np.ndarray]:
        """Out-of-fold IRT features: each training model's features come from an IRT calibration
        without that model (the final calibration on all training models is restored after)."""
        n = train.n_models
        keep_all = (self.irt_a_, self.irt_d_, self.irt_theta_)
        out = {key: np.array(value, copy=True) for key, value in f.items()}
        settings = self._settings()
        try:
            for keep, held in fold_splits(n, folds, seed + 3):
                sub = train.select_models(keep)
                if (~np.isnan(sub.values)).any(axis=0).all() and len(keep) >= 2:
                    params = calibrate(sub.values, sub.item_ids, settings)
                    self.irt_a_, self.irt_d_, self.irt_theta_ = params.a, params.d, params.train_theta
                    fold = self._base_features(y[held])
                    for key in out:
                        out[key][held] = fold[key]
        finally:
            self.irt_a_, self.irt_d_, self.irt_theta_ = keep_all
        return out

    def _selection_inflation(self, train: ResponseMatrix, k: int, seed: int, folds: int) -> float:
        """How much out-of-fold errors understate the truth because the items were chosen with
        every training model's score: the ratio of the RMSE of "select items within the fold, then
        ridge" to that of "ridge on the items chosen with all models", both out of fold (>= 1)."""
        from frugalmerge.subsets import select_subset

        n = train.n_models
        target = train.full_scores()
        col_mean = column_means(train.values)
        x = np.where(np.isnan(train.values), col_mean[None, :], train.values)
        chosen = np.asarray(self.sel_cols_)
        honest, naive = np.empty(n), np.empty(n)
        for keep, held in fold_splits(n, folds, seed + 4):
            sub = select_subset("predictive", train.select_models(keep), k, seed)
            cols = train.columns(sub.item_ids)
            coef, b = fit_ridge(x[keep][:, cols], target[keep])
            honest[held] = x[held][:, cols] @ coef + b
            coef, b = fit_ridge(x[keep][:, chosen], target[keep])
            naive[held] = x[held][:, chosen] @ coef + b
        ratio = np.sqrt(np.mean((honest - target) ** 2)) / max(np.sqrt(np.mean((naive - target) ** 2)), 1e-9)
        return float(np.clip(ratio, 1.0, 10.0))

    # -- predict ------------------------------------------------------------------------------
    def _predict(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = self._base_features(y)
        f["impute_ridge"] = f["full"] @ self.ir_coef_ + self.ir_b_
        f["sub_ridge"] = f["y_imp"] @ self.sr_coef_ + self.sr_b_
        # the training rows of the neighbour features, converted once (stored as float32)
        train_x, train_y = np.asarray(self.knn_x_, np.float64), np.asarray(self.knn_y_)
        f["knn"] = knn_mean(f["y_imp"], train_x, train_y, self.n_neighbors_)
        if getattr(self, "krr_dual_", None) is not None:
            _krr_features(f, predict_krr(f["y_imp"], train_x, np.asarray(self.krr_dual_), float(self.krr_mu_)))
        if getattr(self, "lridge_", False):
            f["lridge"] = local_ridge(f["y_imp"], train_x, train_y)
        if getattr(self, "nn_", False):
            f.update(nearest_features(f["y_imp"], train_x, train_y))
        x = self._matrix(f)
        score = self._ridge_stack(x)
        if self.tier_ == "full":
            score = self.blend_w_ * predict_hgb(unpack(self, "hgb_"), x) + (1 - self.blend_w_) * score
            s = len(self._summary_names())
            se = np.sqrt(np.pi / 2) * predict_hgb(unpack(self, "se_"), x[:, :s])
            se = np.clip(se, 0.25 * self.se_const_, None)
        else:
            se = np.full(y.shape[0], self.se_const_)
        return score, se

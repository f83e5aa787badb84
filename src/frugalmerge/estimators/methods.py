"""The registered estimators.

tinyBenchmarks family (Polo et al., 2024): ``random_mean``, ``anchor``, ``irt``, ``pirt``, ``gpirt``;
MERGE³'s merged-model variants: ``mpirt``, ``gmpirt``; the reference ``ridge``; and ``default``,
the library's recommendation (a calibrated stacker over IRT, p-IRT, anchor, ridge and neighbour
features with validated blending and a per-model standard error).

Every raw estimate is mapped to the target by a calibration fitted on the training models (the
item pool is often itself a selected subset, so raw item means are biased); the calibration family
follows a rule of the number of training models (see :func:`components.calibration_kind`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit as _expit

from frugalmerge.estimators.components import (
    apply_calibration,
    calibration_kind,
    column_means,
    crossfit_ridge,
    fill_missing,
    fit_calibration,
)
from frugalmerge.estimators.core import Estimator, register_estimator
from frugalmerge.estimators.errors import EstimatorError
from frugalmerge.estimators.irt import IRTParams, IRTSettings, calibrate, estimate_ability
from frugalmerge.estimators.responses import ResponseMatrix
from frugalmerge.subsets import select_subset

#: parameters of every calibrated estimator, and of those built on an IRT model
CALIBRATED_PARAMS = ("subset", "calibration")
IRT_PARAMS = ("irt_model", "dims")
CALIBRATIONS = ("auto", "isotonic", "linear", "none")


def _check_int(name: str, params: dict[str, Any], key: str, lo: int) -> None:
    value = params.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < lo):
        raise EstimatorError(f"estimator {name!r}: {key} must be an integer >= {lo}, got {value!r}")


def _weighted_mean(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Row means of ``y`` with column weights ``w``; missing cells drop out and weights renormalise."""
    m = ~np.isnan(y)
    ww = np.where(m, w[None, :], 0.0)
    return (np.where(m, y, 0.0) * ww).sum(axis=1) / ww.sum(axis=1).clip(1e-12)


class _Calibrated(Estimator):
    """Shared machinery: subset selection, a raw estimate, calibration to the target, constant SE."""

    default_subset = "random"
    param_names = CALIBRATED_PARAMS

    def _check_params(self) -> None:
        kind = self.params.get("calibration", "auto")
        if kind not in CALIBRATIONS:
            raise EstimatorError(f"estimator {self.name!r}: calibration must be one of {', '.join(CALIBRATIONS)}, "
                                 f"got {kind!r}")

    def _select(self, train: ResponseMatrix, k: int, seed: int) -> None:
        name = self.params.get("subset", self._subset_for(train.n_models))
        sub = select_subset(name, train, k, seed, **self._subset_params(name))
        self.selected_ = list(sub.item_ids)
        self.subset_hash_ = sub.hash
        self.subset_strategy_ = sub.strategy
        w = np.full(len(sub.item_ids), 1.0 / len(sub.item_ids)) if sub.weights is None else np.asarray(sub.weights)
        self.weights_ = w
        self.sel_cols_ = train.columns(self.selected_)

    def _subset_for(self, n_models: int) -> str:
        """The subset strategy used when none is given (may depend on the number of models)."""
        return self.default_subset

    def _subset_params(self, name: str) -> dict[str, Any]:
        return {}

    def _fit(self, train: ResponseMatrix, k: int, seed: int, **context: Any) -> None:
        self._select(train, k, seed)
        self._fit_model(train, seed, **context)
        raw = self._raw(train.take_items(self.selected_))
        target = train.full_scores()
        # In a sparse matrix some training models answered none of the chosen items: no raw
        # estimate, so they cannot inform the calibration.
        seen = np.isfinite(raw)
        if seen.sum() < 2:
            raise EstimatorError(f"estimator {self.name!r}: fewer than 2 training models answered any of the "
                                 f"{len(self.selected_)} chosen items; cannot calibrate")
        raw, target = raw[seen], target[seen]
        kind = self.params.get("calibration", "auto")
        kind = calibration_kind(int(seen.sum())) if kind == "auto" else kind
        self.cal_kind_ = kind
        self.cal_x_, self.cal_y_ = fit_calibration(raw, target, kind)
        resid = self._calibrate(raw) - target
        self.se_const_ = float(np.sqrt(np.mean(resid**2)))

    def _calibrate(self, raw: np.ndarray) -> np.ndarray:
        return apply_calibration(raw, self.cal_x_, self.cal_y_, linear=self.cal_kind_ != "isotonic")

    def _predict(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        score = self._calibrate(self._raw(y))
        return score, np.full(y.shape[0], self.se_const_)

    def _fit_model(self, train: ResponseMatrix, seed: int, **context: Any) -> None:
        """Learn whatever the raw estimate needs (default: nothing)."""

    def _raw(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@register_estimator("random_mean")
class RandomMean(_Calibrated):
    """Seeded random subset, plain mean of the revealed scores (then calibrated)."""

    def _raw(self, y: np.ndarray) -> np.ndarray:
        # nanmean without its warning: a model with none of the items is NaN (handled by the caller)
        seen = (~np.isnan(y)).sum(axis=1)
        return np.divide(np.nansum(y, axis=1), seen, out=np.full(y.shape[0], np.nan), where=seen > 0)


@register_estimator("anchor")
class Anchor(_Calibrated):
    """Anchor points: k-means on correctness patterns; cluster-weighted mean of the anchors."""

    default_subset = "anchor_points"

    def _raw(self, y: np.ndarray) -> np.ndarray:
        return _weighted_mean(y, self.weights_)


@register_estimator("ridge")
class RidgeReference(_Calibrated):
    """Reference: ridge regression from the k revealed responses (random items) to the full score."""

    def _fit_model(self, train: ResponseMatrix, seed: int, **context: Any) -> None:
        y = train.take_items(self.selected_)
        self.fill_ = column_means(y)
        x = fill_missing(y, self.fill_)
        oof, self.coef_, b = crossfit_ridge(x, train.full_scores(), folds=5, seed=seed)
        self.intercept_ = b
        self.se_oof_ = float(np.sqrt(np.mean((oof - train.full_scores()) ** 2)))

    def _fit(self, train: ResponseMatrix, k: int, seed: int, **context: Any) -> None:
        super()._fit(train, k, seed, **context)
        self.se_const_ = self.se_oof_  # honest out-of-fold error rather than in-sample

    def _raw(self, y: np.ndarray) -> np.ndarray:
        return fill_missing(y, self.fill_) @ self.coef_ + self.intercept_


class _IRTBased(_Calibrated):
    """Estimators that calibrate an IRT model on all training items (shared, cached fit)."""

    default_subset = "irt_clustering"
    param_names = CALIBRATED_PARAMS + IRT_PARAMS

    def _check_params(self) -> None:
        super()._check_params()
        model = self.params.get("irt_model", "2pl")
        if model not in ("1pl", "2pl", "md2pl"):
            raise EstimatorError(f"estimator {self.name!r}: irt_model must be 1pl, 2pl or md2pl, got {model!r}")
        _check_int(self.name, self.params, "dims", 1)
        dims = self.params.get("dims")
        # 1pl/2pl are unidimensional and md2pl has at least 2 dimensions: any other dims was changed silently
        if dims is not None and (dims != 1 if model != "md2pl" else dims < 2):
            need = "dims >= 2" if model == "md2pl" else "dims 1 (give irt_model: md2pl for more)"
            raise EstimatorError(f"estimator {self.name!r}: irt_model {model} needs {need}, got dims {dims}")

    def _settings(self) -> IRTSettings:
        return IRTSettings(model=self.params.get("irt_model", "2pl"), dims=int(self.params.get("dims", 1)))

    def _subset_params(self, name: str) -> dict[str, Any]:
        if name in ("irt_clustering", "fisher", "adaptive"):
            return {"irt": self._settings()}
        return {}

    def _fit_model(self, train: ResponseMatrix, seed: int, **context: Any) -> None:
        settings = self._settings()
        params = calibrate(train.values, train.item_ids, settings)
        self.irt_a_, self.irt_d_, self.irt_theta_ = params.a, params.d, params.train_theta
        self.irt_settings_ = settings.model_dump()
        self._fit_extra(train, params, seed, **context)

    def _fit_extra(self, train: ResponseMatrix, params: IRTParams, seed: int, **context: Any) -> None:
        """Hook for subclasses (after the IRT fit)."""

    def irt_params(self) -> IRTParams:
        s = self.irt_settings_
        return IRTParams(np.asarray(self.irt_a_), np.asarray(self.irt_d_), float(s["theta_sd"]),
                         tuple(self.all_item_ids_), np.asarray(self.irt_theta_), s["model"])

    def _theta(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return estimate_ability(self.irt_params(), y, np.asarray(self.sel_cols_))

    def _pirt_from_theta(self, y: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """p-IRT: observed scores on the revealed items, IRT probabilities on the others (λ = k/N)."""
        p = self.irt_params().prob(theta)
        cols = np.asarray(self.sel_cols_)
        obs = np.where(np.isnan(y), p[:, cols], y)
        return (obs.sum(axis=1) + p.sum(axis=1) - p[:, cols].sum(axis=1)) / p.shape[1]


@register_estimator("irt")
class IRTEstimate(_IRTBased):
    """IRT: the mean predicted probability over all items at the MAP ability."""

    def _raw(self, y: np.ndarray) -> np.ndarray:
        theta, _ = self._theta(y)
        return self.irt_params().prob(theta).mean(axis=1)


@register_estimator("pirt")
class PIRT(_IRTBased):
    """p-IRT (tinyBenchmarks): revealed scores + IRT predictions for unseen items."""

    def _raw(self, y: np.ndarray) -> np.ndarray:
        return self._pirt_from_theta(y, self._theta(y)[0])


class _GeneralisedMixin:
    """gp-IRT's blend: λ' anchor mean + (1 - λ') p-IRT, λ' = b² / (b² + v) from training errors
    (b² = MSE of the p-IRT-type estimate, v = MSE of the weighted subset mean)."""

    def _fit_lambda(self, train: ResponseMatrix, base: np.ndarray) -> None:
        y = train.take_items(self.selected_)  # type: ignore[attr-defined]
        target = train.full_scores()
        b2 = float(np.mean((base - target) ** 2))
        v = float(np.mean((_weighted_mean(y, self.weights_) - target) ** 2))  # type: ignore[attr-defined]
        self.gp_lambda_ = b2 / (b2 + v) if b2 + v > 0 else 0.5

    def _blend(self, y: np.ndarray, base: np.ndarray) -> np.ndarray:
        return self.gp_lambda_ * _weighted_mean(y, self.weights_) + (1 - self.gp_lambda_) * base  # type: ignore[attr-defined]


@register_estimator("gpirt")
class GPIRT(_GeneralisedMixin, PIRT):
    """gp-IRT (tinyBenchmarks' IRT++): p-IRT blended with the anchor-weighted mean."""

    def _fit_extra(self, train: ResponseMatrix, params: IRTParams, seed: int, **context: Any) -> None:
        y = train.take_items(self.selected_)
        self._fit_lambda(train, PIRT._raw(self, y))

    def _raw(self, y: np.ndarray) -> np.ndarray:
        return self._blend(y, PIRT._raw(self, y))


def merged_theta(params: IRTParams, y: np.ndarray, cols: np.ndarray, endpoints: np.ndarray,
                 steps: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """MERGE³: the merged model's ability as a convex combination ``Σ w_j θ_j`` of the endpoint
    models' abilities; ``w`` (softmax-parametrised) maximises the likelihood of the revealed
    responses. Vectorised gradient ascent over all models at once; returns (theta, w)."""
    a, d = params.a[cols], params.d[cols]
    mask = ~np.isnan(y)
    y0 = np.where(mask, y, 0.0)
    n_obs = mask.sum(axis=1, keepdims=True).clip(1)
    z = np.zeros((y.shape[0], endpoints.shape[0]))
    for _ in range(steps):
        w = np.exp(z - z.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        theta = w @ endpoints
        p = _expit(theta @ a.T + d)
        g = np.where(mask, y0 - p, 0.0) @ a  # d loglik / d theta
        gw = g @ endpoints.T
        z += 4.0 * w * (gw - (w * gw).sum(axis=1, keepdims=True)) / n_obs
    w = np.exp(z - z.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    return w @ endpoints, w


@register_estimator("mpirt")
class MPIRT(_IRTBased):
    """MERGE³'s mp-IRT: p-IRT with the merged model's ability constrained to a convex combination
    of its endpoint models' abilities.

    ``fit(responses, k, endpoints=[model ids])``: the endpoints must be training models (rows of
    ``responses``). Without endpoints, the training models at the lowest, median and highest
    ability stand in (then the constraint is only "inside the training ability range").
    """

    uses_endpoints = True

    def _fit_extra(self, train: ResponseMatrix, params: IRTParams, seed: int, **context: Any) -> None:
        endpoints = context.get("endpoints")
        if endpoints:
            index = {m: r for r, m in enumerate(train.model_ids)}
            unknown = [e for e in endpoints if e not in index]
            if unknown:
                raise EstimatorError(f"estimator {self.name!r}: endpoint {unknown[0]!r} is not a training model")
            rows = [index[e] for e in endpoints]
        else:
            order = np.argsort(params.train_theta.sum(axis=1))
            rows = [int(order[0]), int(order[len(order) // 2]), int(order[-1])]
        self.endpoint_ids_ = [train.model_ids[r] for r in rows]
        self.endpoint_theta_ = params.train_theta[rows]

    def _merged(self, y: np.ndarray) -> np.ndarray:
        theta, _ = merged_theta(self.irt_params(), y, np.asarray(self.sel_cols_), np.asarray(self.endpoint_theta_))
        return self._pirt_from_theta(y, theta)

    def _raw(self, y: np.ndarray) -> np.ndarray:
        return self._merged(y)


@register_estimator("gmpirt")
class GMPIRT(_GeneralisedMixin, MPIRT):
    """MERGE³'s gmp-IRT: mp-IRT blended with the anchor-weighted mean (gp-IRT's rule)."""

    def _fit_extra(self, train: ResponseMatrix, params: IRTParams, seed: int, **context: Any) -> None:
        MPIRT._fit_extra(self, train, params, seed, **context)
        self._fit_lambda(train, self._merged(train.take_items(self.selected_)))

    def _raw(self, y: np.ndarray) -> np.ndarray:
        return self._blend(y, self._merged(y))

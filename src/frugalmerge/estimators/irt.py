"""Item response theory in plain torch/numpy: calibration (1PL, 2PL, multidimensional 2PL) and
ability estimation with fixed items (vectorised Newton MAP, EAP on a grid).

Model: ``P(correct | theta_m, item i) = sigmoid(theta_m . a_i + d_i)`` with ``theta ~ N(0, s^2 I)``.
1PL fixes ``a_i = 1`` (D = 1); 2PL has ``a_i = exp(l_i) > 0`` with ``l_i ~ N(0, s_a^2)``;
the multidimensional 2PL has ``a_i in R^D_+``. ``d_i ~ N(0, s_d^2)``. Graded responses ``y in [0, 1]``
enter as Bernoulli on the score (soft-label cross-entropy). Calibration is a joint MAP over
abilities and item parameters by full-batch L-BFGS; missing responses (NaN) are masked out. The
priors keep every parameter finite, even for items every model got right.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import expit as _expit
from pydantic import BaseModel, ConfigDict, Field

from frugalmerge.estimators.components import column_means
from frugalmerge.estimators.errors import EstimatorError, ResponseError

__all__ = ["IRTSettings", "IRTParams", "fit_irt", "calibrate", "estimate_ability", "fisher_information"]


class IRTSettings(BaseModel):
    """How to calibrate: model family, dimensions and priors (all fields have sensible defaults)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Literal["1pl", "2pl", "md2pl"] = "2pl"
    dims: int = Field(1, ge=1, le=16)
    theta_sd: float = Field(1.0, gt=0)
    log_a_sd: float = Field(1.0, gt=0)
    d_sd: float = Field(3.0, gt=0)
    max_iter: int = Field(400, ge=1)
    tol: float = Field(1e-6, gt=0)
    constant_items: Literal["keep", "raise"] = "keep"
    backend: Literal["torch", "py-irt"] = "torch"
    seed: int = 0

    def effective_dims(self) -> int:
        if self.model == "1pl":
            return 1
        if self.model == "md2pl":
            return max(self.dims, 2)
        return self.dims


@dataclass(frozen=True)
class IRTParams:
    """Calibrated item parameters (and the training abilities they came with)."""

    a: np.ndarray  # (n_items, D) discriminations
    d: np.ndarray  # (n_items,) intercepts
    theta_sd: float
    item_ids: tuple[str, ...]
    train_theta: np.ndarray  # (n_train, D) MAP abilities of the calibration models
    model: str = "2pl"

    @property
    def dims(self) -> int:
        return self.a.shape[1]

    @property
    def difficulty(self) -> np.ndarray:
        """Unidimensional difficulty ``b = -d / |a|`` (the ability at which P = 0.5)."""
        return -self.d / np.linalg.norm(self.a, axis=1).clip(1e-8)

    def logits(self, theta: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        a = self.a if cols is None else self.a[cols]
        d = self.d if cols is None else self.d[cols]
        return np.asarray(theta, dtype=np.float64).reshape(-1, self.dims) @ a.T + d

    def prob(self, theta: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """P(correct) for abilities ``theta`` (n, D) on all items (or the columns ``cols``)."""
        return _expit(self.logits(theta, cols))

    def subset(self, cols: np.ndarray) -> IRTParams:
        return IRTParams(self.a[cols], self.d[cols], self.theta_sd, tuple(self.item_ids[c] for c in cols),
                         self.train_theta, self.model)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"irt_a": self.a, "irt_d": self.d, "irt_train_theta": self.train_theta}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], theta_sd: float, item_ids: tuple[str, ...], model: str) -> IRTParams:
        return cls(np.asarray(arrays["irt_a"], np.float64), np.asarray(arrays["irt_d"], np.float64), theta_sd,
                   tuple(item_ids), np.asarray(arrays["irt_train_theta"], np.float64), model)


def _init_theta(y: np.ndarray, mask: np.ndarray, dims: int) -> np.ndarray:
    """Start abilities from the leading principal components of the centred responses."""
    filled = np.where(mask, y, column_means(np.where(mask, y, np.nan))[None, :])
    centred = filled - filled.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    comps = u[:, :dims] * s[:dims]
    comps = comps / comps.std(axis=0).clip(1e-8)
    # Orient each component so that it correlates positively with the mean score (a > 0 then fits).
    sign = np.sign(np.array([np.corrcoef(comps[:, j], filled.mean(axis=1))[0, 1] if comps[:, j].std() > 0 else 1.0
                             for j in range(comps.shape[1])]))
    sign[sign == 0] = 1.0
    out = np.zeros((y.shape[0], dims))
    out[:, : comps.shape[1]] = comps * sign
    return out


def fit_irt(values: np.ndarray, item_ids: tuple[str, ...] | None = None, settings: IRTSettings | None = None) -> IRTParams:
    """Calibrate an IRT model on ``values`` (models x items in [0, 1], NaN = missing) by MAP."""
    import torch

    settings = settings or IRTSettings()
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 2 or y.size == 0:
        raise ResponseError(f"IRT calibration needs a non-empty 2-D matrix, got shape {y.shape}")
    n, m = y.shape
    item_ids = tuple(item_ids) if item_ids is not None else tuple(str(i) for i in range(m))
    mask = ~np.isnan(y)
    if not mask.any(axis=0).all():
        raise ResponseError(f"IRT calibration: item {item_ids[int(np.argmin(mask.any(axis=0)))]!r} has no responses")
    if settings.constant_items == "raise":
        lo, hi = np.nanmin(y, axis=0), np.nanmax(y, axis=0)
        const = np.flatnonzero(lo == hi)
        if const.size:
            raise ResponseError(
                f"IRT calibration: item {item_ids[const[0]]!r} has the same score for every model "
                f"({const.size} such items); drop them or use constant_items='keep'"
            )
    if n < 2:
        raise ResponseError("IRT calibration needs at least 2 models")
    if settings.backend == "py-irt":
        return _fit_pyirt(y, item_ids, settings)
    dims = settings.effective_dims()
    torch.manual_seed(settings.seed)
    dtype = torch.float64 if n * m < 20_000 else torch.float32  # tiny problems: double for accuracy
    yt = torch.tensor(np.nan_to_num(y, nan=0.0), dtype=dtype)
    mt = torch.tensor(mask, dtype=dtype)
    theta = torch.tensor(_init_theta(y, mask, dims), dtype=dtype, requires_grad=True)
    p0 = np.clip(column_means(np.where(mask, y, np.nan)), 0.02, 0.98)
    d = torch.tensor(np.log(p0 / (1 - p0)), dtype=dtype, requires_grad=True)
    params = [theta, d]
    if settings.model != "1pl":
        la = torch.zeros((m, dims), dtype=dtype, requires_grad=True)
        params.append(la)
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=settings.max_iter, tolerance_grad=settings.tol,
                            tolerance_change=1e-10, history_size=20, line_search_fn="strong_wolfe")
    inv_ts2 = 1.0 / settings.theta_sd**2
    inv_la2 = 1.0 / settings.log_a_sd**2
    inv_d2 = 1.0 / settings.d_sd**2
    scale = 1.0 / float(mask.sum())  # average loss: L-BFGS tolerances independent of size


    def closure():
        opt.zero_grad()
        a = torch.ones((m, 1), dtype=dtype) if settings.model == "1pl" else torch.exp(la)
        th = theta
        logits = th @ a.T + d
        nll = (torch.nn.functional.binary_cross_entropy_with_logits(logits, yt, reduction="none") * mt).sum()
        prior = 0.5 * inv_ts2 * (th**2).sum() + 0.5 * inv_d2 * (d**2).sum()
        if settings.model != "1pl":
            prior = prior + 0.5 * inv_la2 * (la**2).sum()
        loss = (nll + prior) * scale
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        a_np = np.ones((m, 1)) if settings.model == "1pl" else torch.exp(la).double().numpy()
        theta_np = theta.double().numpy().copy()
        d_np = d.double().numpy().copy()
    # Why: the joint MAP's N(0, s^2) prior on the abilities shrinks their scale (and inflates the
    # discriminations); rescale so the calibration models' abilities have mean 0 and SD s, which
    # keeps every probability unchanged and makes the prior right for new models. (Fitting on
    # standardised abilities instead removes the prior's pull on each ability and lets the joint
    # likelihood diverge to huge discriminations.)
    mu = theta_np.mean(axis=0)
    scale = theta_np.std(axis=0).clip(1e-6) / settings.theta_sd
    if settings.model == "1pl":
        scale = np.ones_like(scale)  # 1PL fixes a = 1: only shift
    d_np = d_np + a_np @ mu
    a_np = a_np * scale[None, :]
    theta_np = (theta_np - mu) / scale
    out = IRTParams(a_np, d_np, settings.theta_sd, item_ids, theta_np, settings.model)
    if not (np.isfinite(out.a).all() and np.isfinite(out.d).all()):
        raise EstimatorError("IRT calibration diverged (non-finite parameters)")
    return out


def _fit_pyirt(y: np.ndarray, item_ids: tuple[str, ...], settings: IRTSettings) -> IRTParams:
    """Optional parity backend: py-irt's 2PL (extra ``irt``; needs Python < 3.12)."""
    try:
        from py_irt.config import IrtConfig  # type: ignore[import-not-found]
        from py_irt.dataset import Dataset  # type: ignore[import-not-found]
        from py_irt.training import IrtModelTrainer  # type: ignore[import-not-found]
    except ImportError:
        raise EstimatorError(
            "the py-irt backend needs the optional extra: pip install 'frugalmerge[irt]' (Python < 3.12); "
            "the default torch backend needs nothing else"
        ) from None
    if settings.model != "2pl" or settings.effective_dims() != 1:
        raise EstimatorError("the py-irt backend supports only the unidimensional 2PL")
    import pandas as pd

    frame = pd.DataFrame(np.where(np.isnan(y), np.nan, (y >= 0.5).astype(float)), columns=list(item_ids))
    frame.insert(0, "subject_id", [f"m{i}" for i in range(y.shape[0])])
    dataset = Dataset.from_pandas(frame, subject_column="subject_id", item_columns=list(item_ids))
    trainer = IrtModelTrainer(config=IrtConfig(model_type="2pl", epochs=2000, seed=settings.seed),
                              data_path=None, dataset=dataset, verbose=False)
    trainer.train(device="cpu")
    best = trainer.best_params
    # py-irt: P = sigmoid(disc * (ability - diff)) -> a = disc, d = -disc * diff.
    index = {iid: i for i, iid in best["item_ids"].items()}
    order = [index[i] for i in item_ids]
    disc = np.asarray(best["disc"])[order]
    diff = np.asarray(best["diff"])[order]
    ability = np.asarray(best["ability"])
    return IRTParams(disc.reshape(-1, 1), -disc * diff, settings.theta_sd, item_ids, ability.reshape(-1, 1), "2pl")


_CACHE: OrderedDict[str, IRTParams] = OrderedDict()
_CACHE_SIZE = 32  # a bench fold x cross-fitting folds; parameters are small


def calibrate(values: np.ndarray, item_ids: tuple[str, ...], settings: IRTSettings | None = None) -> IRTParams:
    """:func:`fit_irt` with a small in-process cache keyed by the data and settings.

    Why: a benchmark runs many estimators on the same training fold; they all share one fit.
    """
    settings = settings or IRTSettings()
    h = hashlib.sha256(np.ascontiguousarray(values, dtype="<f8").tobytes())
    h.update("\x1f".join(item_ids).encode())
    h.update(settings.model_dump_json().encode())
    key = h.hexdigest()
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    params = fit_irt(values, item_ids, settings)
    _CACHE[key] = params
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return params


def estimate_ability(
    params: IRTParams,
    values: np.ndarray,
    cols: np.ndarray | None = None,
    *,
    method: Literal["map", "eap"] = "map",
    max_iter: int = 30,
    grid: int = 161,
) -> tuple[np.ndarray, np.ndarray]:
    """Abilities (n, D) and their posterior standard deviations (n, D) with items fixed.

    ``values`` (n, k) are responses to the items ``cols`` (indices into ``params``; all items if
    None); NaN responses are ignored. MAP: vectorised Newton-Raphson on the log posterior;
    EAP: posterior mean on a grid (unidimensional models only).
    """
    y = np.atleast_2d(np.asarray(values, dtype=np.float64))
    a = params.a if cols is None else params.a[cols]
    d = params.d if cols is None else params.d[cols]
    if y.shape[1] != a.shape[0]:
        raise EstimatorError(f"ability estimation: {y.shape[1]} responses for {a.shape[0]} items")
    mask = ~np.isnan(y)
    y0 = np.where(mask, y, 0.0)
    inv_s2 = 1.0 / params.theta_sd**2
    n, dims = y.shape[0], a.shape[1]
    if method == "eap":
        if dims != 1:
            raise EstimatorError("EAP on a grid is implemented for unidimensional models; use method='map'")
        g = np.linspace(-5 * params.theta_sd, 5 * params.theta_sd, grid)
        logit = g[:, None] * a[:, 0][None, :] + d[None, :]  # (grid, k)
        log_p, log_q = -np.logaddexp(0, -logit), -np.logaddexp(0, logit)
        ll = (y0 * mask) @ log_p.T + ((1 - y0) * mask) @ log_q.T - 0.5 * inv_s2 * g[None, :] ** 2
        w = np.exp(ll - ll.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        mean = w @ g
        sd = np.sqrt(np.clip(w @ g**2 - mean**2, 0, None))
        return mean[:, None], sd[:, None]
    theta = np.zeros((n, dims))
    eye = np.eye(dims)
    ym = y0 * mask
    nm = (1 - y0) * mask

    def log_post(t: np.ndarray) -> np.ndarray:
        z = t @ a.T + d
        return (ym * -np.logaddexp(0, -z) + nm * -np.logaddexp(0, z)).sum(axis=1) - 0.5 * inv_s2 * (t**2).sum(axis=1)

    current = log_post(theta)
    for _ in range(max_iter):
        p = _expit(theta @ a.T + d)
        r = np.where(mask, y0 - p, 0.0)
        grad = r @ a - inv_s2 * theta
        w = np.where(mask, p * (1 - p), 0.0)
        hess = np.einsum("nk,ki,kj->nij", w, a, a) + inv_s2 * eye  # negative Hessian, PD
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        # Safeguarded Newton: halve the step for rows whose log posterior would not increase
        # (plain Newton oscillates on very discriminating items).
        scale = np.ones(n)
        for _ in range(30):
            cand = theta + scale[:, None] * step
            new = log_post(cand)
            bad = new < current - 1e-12
            if not bad.any():
                break
            scale = np.where(bad, scale * 0.5, scale)
        theta, current = cand, np.maximum(new, current)
        if np.abs(scale[:, None] * step).max() < 1e-7:
            break
    p = _expit(theta @ a.T + d)
    w = np.where(mask, p * (1 - p), 0.0)
    hess = np.einsum("nk,ki,kj->nij", w, a, a) + inv_s2 * eye
    sd = np.sqrt(np.diagonal(np.linalg.inv(hess), axis1=1, axis2=2))
    return theta, sd


def fisher_information(params: IRTParams, theta: np.ndarray) -> np.ndarray:
    """Item information ``|a|^2 p (1 - p)`` at abilities ``theta`` (n, D): shape (n, n_items)."""
    p = params.prob(theta)
    return p * (1 - p) * (params.a**2).sum(axis=1)[None, :]

"""Surrogate fitness: pool the noisy cheap estimates of ALL evaluated candidates.

A cheap estimate (10 items + an estimator) of one candidate is coarse: it takes a handful of
values and cannot separate good from better near the optimum. But nearby genotypes have nearby
accuracies, so a smoother over every candidate the run has evaluated gives each one a value that
borrows strength from its neighbours - far less noisy than its own estimate.

Registered smoothers (``@register_surrogate``; chosen by ``fidelity.surrogate`` in the config):

* ``gp`` - Gaussian-process regression with a constant mean, a squared-exponential kernel over the
  continuous genes (one length scale) times a categorical factor for the method gene (1 for the same
  method, ``rho`` otherwise), and heteroscedastic noise: observation i has variance
  ``noise * se_i**2`` (its estimator's standard error, so promoted candidates weigh more). The
  hyper-parameters (length scale, rho, signal variance, noise scale) maximise the marginal
  likelihood over a fixed grid: deterministic, no optimiser state to checkpoint.

The smoother has no state of its own: the loop refits it from the run's evaluated candidates (the
checkpointed cache) after every generation, so a resumed run rebuilds exactly the same surrogate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from frugalmerge.search.errors import ConfigError


class Surrogate(Protocol):
    """A smoother over genotypes: ``fit`` on observations, ``predict`` posterior mean and SD."""

    def fit(self, Z: np.ndarray, groups: np.ndarray, y: np.ndarray, se: np.ndarray) -> Surrogate: ...

    def predict(self, Z: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


SURROGATES: dict[str, Callable[..., Surrogate]] = {}


def register_surrogate(name: str) -> Callable[[Callable[..., Surrogate]], Callable[..., Surrogate]]:
    """Decorator adding a surrogate factory under ``name``."""

    def deco(factory: Callable[..., Surrogate]) -> Callable[..., Surrogate]:
        SURROGATES[name] = factory
        return factory

    return deco


def surrogate_names() -> list[str]:
    return sorted(SURROGATES)


def make_surrogate(name: str, **params: Any) -> Surrogate:
    """A fresh surrogate ``name`` (one clear error naming the unknown one)."""
    if name not in SURROGATES:
        raise ConfigError(f"unknown surrogate {name!r} (known: {', '.join(surrogate_names())})")
    return SURROGATES[name](**params)


#: The hyper-parameter grid of the ``gp`` surrogate (marginal likelihood picks one point).
LENGTH_SCALES = (0.08, 0.12, 0.18, 0.27, 0.4, 0.6, 1.0)
METHOD_RHOS = (0.0, 0.5, 0.9)
SIGNAL_SCALES = (0.25, 0.5, 1.0, 2.0)  # x the variance of the observations
NOISE_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # x each observation's se**2
SE_FLOOR = 1e-3  # an estimate reported with SE 0 still has some noise


@dataclass
class GPSurrogate:
    """Gaussian-process smoother (see the module docstring); hyper-parameters by grid marginal
    likelihood unless fixed (``length_scale``, ``rho``, ``noise`` given). The grid search runs on at
    most ``grid_points`` observations (an evenly spaced deterministic subsample: a long run's
    thousands of candidates would make ~600 Cholesky factorisations slow); the posterior then uses
    every observation with the chosen hyper-parameters."""

    length_scale: float | None = None
    rho: float | None = None
    noise: float | None = None
    grid_points: int = 300

    def __post_init__(self) -> None:
        self._fitted: dict[str, Any] | None = None

    @staticmethod
    def _sqdist(A: np.ndarray, B: np.ndarray) -> np.ndarray:
        return ((A[:, None, :] - B[None, :, :]) ** 2).sum(axis=-1)

    @staticmethod
    def _corr(d2: np.ndarray, same: np.ndarray, ls: float, rho: float) -> np.ndarray:
        return np.exp(-0.5 * d2 / ls**2) * np.where(same, 1.0, rho)

    @staticmethod
    def _solve(R: np.ndarray, y: np.ndarray, se2: np.ndarray, sf: float, lam: float,
               jitter: float) -> dict[str, Any] | None:
        """Factorise sf R + lam diag(se2); GLS constant mean; log marginal likelihood (None: singular)."""
        n = len(y)
        try:
            L = np.linalg.cholesky(sf * R + np.diag(lam * se2) + jitter * np.eye(n))
        except np.linalg.LinAlgError:
            return None
        ones = np.ones(n)
        ci_1 = _chol_solve(L, ones)
        mean = float(ci_1 @ y / (ci_1 @ ones))
        r = y - mean
        alpha = _chol_solve(L, r)
        ll = -0.5 * float(r @ alpha) - float(np.log(np.diag(L)).sum())
        return {"L": L, "alpha": alpha, "mean": mean, "loglik": ll}

    def fit(self, Z: np.ndarray, groups: np.ndarray, y: np.ndarray, se: np.ndarray) -> GPSurrogate:
        """Fit on ``Z`` (n, d) continuous features, ``groups`` (n,) method labels, ``y`` values and
        ``se`` their standard errors."""
        y = np.asarray(y, dtype=np.float64)
        n = len(y)
        if n == 0:
            raise ValueError("the surrogate needs at least one observation")
        Z = np.asarray(Z, dtype=np.float64).reshape(n, -1)
        groups = np.asarray(groups)
        se2 = np.maximum(np.asarray(se, dtype=np.float64), SE_FLOOR) ** 2
        var_y = float(y.var()) if n > 1 else 0.0
        base_var = max(var_y, float(se2.mean()), 1e-8)
        jitter = 1e-10 * base_var
        sub = np.unique(np.linspace(0, n - 1, min(n, self.grid_points)).round().astype(int))
        d2 = self._sqdist(Z[sub], Z[sub])
        same = groups[sub][:, None] == groups[sub][None, :]
        best: tuple[float, tuple[float, float, float, float]] | None = None
        for ls in (LENGTH_SCALES if self.length_scale is None else (self.length_scale,)):
            for rho in (METHOD_RHOS if self.rho is None else (self.rho,)):
                R = self._corr(d2, same, ls, rho)
                for sf in SIGNAL_SCALES:
                    for lam in (NOISE_SCALES if self.noise is None else (self.noise,)):
                        sol = self._solve(R, y[sub], se2[sub], sf * base_var, lam, jitter)
                        if sol is not None and (best is None or sol["loglik"] > best[0] + 1e-12):
                            best = (sol["loglik"], (ls, rho, sf * base_var, lam))
        if best is None:
            raise ValueError("the surrogate's covariance is singular for every hyper-parameter")
        ls, rho, sf, lam = best[1]
        R = self._corr(self._sqdist(Z, Z), groups[:, None] == groups[None, :], ls, rho)
        sol = self._solve(R, y, se2, sf, lam, jitter)
        if sol is None:
            raise ValueError("the surrogate's covariance is singular on all observations")
        self._fitted = {**sol, "ls": ls, "rho": rho, "sf": sf, "noise": lam, "Z": Z, "groups": groups}
        return self

    @property
    def hyperparameters(self) -> dict[str, float]:
        """The chosen length scale, rho, signal variance, noise scale, mean and log likelihood."""
        if self._fitted is None:
            raise RuntimeError("fit() first")
        return {k: float(self._fitted[k]) for k in ("ls", "rho", "sf", "noise", "mean", "loglik")}

    def predict(self, Z: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and SD of the noise-free value at ``Z`` / ``groups``."""
        f = self._fitted
        if f is None:
            raise RuntimeError("fit() first")
        groups = np.asarray(groups)
        Z = np.asarray(Z, dtype=np.float64).reshape(len(groups), -1)
        Ks = f["sf"] * self._corr(self._sqdist(Z, f["Z"]), groups[:, None] == f["groups"][None, :],
                                  f["ls"], f["rho"])
        mean = f["mean"] + Ks @ f["alpha"]
        v = np.linalg.solve(f["L"], Ks.T)
        var = np.maximum(f["sf"] - (v**2).sum(axis=0), 0.0)
        return mean, np.sqrt(var)


def _chol_solve(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.linalg import solve_triangular

    return solve_triangular(L.T, solve_triangular(L, b, lower=True), lower=False)


@register_surrogate("gp")
def _gp(**params: Any) -> Surrogate:
    return GPSurrogate(**params)


def genotype_features(space: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(continuous features, method labels) of genotypes ``X`` for a surrogate.

    The method gene (when searched) becomes a categorical label; genes of parameters the chosen
    method does not read (e.g. density under task arithmetic) are set to 0.5, so they add no
    distance between two candidates of that method."""
    from frugalmerge.search.config import METHOD_MODEL_PARAMS

    X = np.clip(np.asarray(X, dtype=np.float64).reshape(len(X), -1), 0.0, 1.0)
    if not getattr(space, "slots", ()) or not space.config.method.is_gene:
        return X, np.zeros(len(X), dtype=np.int64)
    choices = list(space.config.method.choices)
    labels = np.asarray([choices.index(space.method_of(x)) for x in X], dtype=np.int64)
    Z = X[:, 1:].copy()
    for slot in space.slots:
        if slot.model is None:
            continue
        cols = slice(slot.start - 1, slot.start - 1 + slot.size)
        for i, x in enumerate(X):
            if slot.param not in METHOD_MODEL_PARAMS.get(space.method_of(x), frozenset({slot.param})):
                Z[i, cols] = 0.5
    return Z, labels

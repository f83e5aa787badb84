"""``adaptive``: per-model adaptive item selection over the training models as prototypes.

Computerised adaptive testing without an ability model: the training models are the prior's
support. A test model starts with equal weight on every training model; after each revealed
response ``y`` on item ``c`` each training model ``j``'s log-weight drops by
``gamma * |x_jc - y|`` (one disagreement costs ``gamma``: 1 up to k = 30, 30 / k beyond).
The next item is the one that minimises
the expected posterior variance of the full score,
``p(1) * Var_{w|y=1}(t) + p(0) * Var_{w|y=0}(t)``, so each model is asked what best separates the
training models it still resembles (a leaderboard of near-duplicate fine-tunes is where this pays:
the fixed-form ``default`` must spend its k items on everybody's average question).

After k responses the estimate is a posterior-weighted ridge regression ("local ridge") of the
training targets on the k asked items' responses, evaluated at the model's answers: the
weighted mean of the neighbours' scores, corrected linearly for where the model differs from them.
The standard error is the posterior SD of the target, scaled by a factor validated on training
models run through the same procedure with themselves removed from the prototypes.

Protocol: ``fit(train, k)``; then either ``predict(observed)`` (runs the adaptive procedure on
the observed responses, asking at most k per model; items a model lacks are never asked), or
``predict_sequential(oracle)`` with a :class:`ResponseOracle` that reveals ONE response per model
per step and counts them (the benchmark's path), or ``session()`` for one model step by step
(``next_item`` / ``record`` / ``estimate``: the search's sequential mode). ``selected_items_`` is
the item pool the estimator may ask; which k of them differ per model. Deterministic (ties go to
the lowest item index); the seed only picks the training models used to validate the SE.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from frugalmerge.estimators.components import column_means, weighted_local_ridge
from frugalmerge.estimators.core import Estimates, Estimator, register_estimator
from frugalmerge.estimators.errors import EstimatorError
from frugalmerge.estimators.responses import ResponseMatrix

__all__ = ["Adaptive", "AdaptiveBatch", "ResponseOracle", "PrototypeSession"]

# One recipe for every data set. Chosen on an inner split of fold 0's TRAINING models of the three
# metabench sets (k = 30, gamma in {0.5, 1, 1.5, 2}, alpha in {0.01, 0.1, 1}; flat around these).
GAMMA = 1.0  # log-weight lost per disagreeing item, for k <= REFERENCE_K
# Beyond REFERENCE_K items the per-item weight shrinks as REFERENCE_K / k, so the kernel stays a
# function of the FRACTION of disagreeing items (exp(-30 x fraction)): with gamma fixed at 1, 249
# asked items leave one near-duplicate with all the weight (inner split, all items: gsm8k 1.82 with
# gamma 1 vs 1.06 with 0.1, arc 0.99 vs 0.95 with 0.3; mmlu 0.79 vs 0.85 the other way; k = 50 flat).
REFERENCE_K = 30
ALPHA = 0.1  # ridge penalty of the local regression (posterior weights sum to 1)
SE_SAMPLE = 500  # training models re-run (self excluded) to validate the standard error
CHUNK = 512  # test models processed together (bounds memory: chunk x n_train weights)


class ResponseOracle:
    """Reveals the responses of ``responses``'s models one item at a time and counts them.

    ``ask(cols, rows)`` returns the responses of models ``rows`` on one item each (``cols``, item
    indices of ``responses``; -1 = nothing asked of that model). Asking an unavailable (NaN) or an
    already revealed item is an error: an estimator cannot learn more than it asked for.
    """

    def __init__(self, responses: ResponseMatrix) -> None:
        self.responses = responses
        self._values = np.asarray(responses.values, dtype=np.float64)
        self.available = ~np.isnan(self._values)
        self.revealed = np.zeros(self._values.shape, dtype=bool)

    @property
    def counts(self) -> np.ndarray:
        """Responses revealed so far, per model."""
        return self.revealed.sum(axis=1)

    def ask(self, cols: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        rows = np.arange(self._values.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        if cols.shape != rows.shape:
            raise EstimatorError(f"oracle: {cols.size} items asked for {rows.size} models")
        out = np.full(rows.size, np.nan)
        on = cols >= 0
        r, c = rows[on], cols[on]
        if (c >= self._values.shape[1]).any():
            raise EstimatorError(f"oracle: item index {int(c.max())} out of range ({self._values.shape[1]} items)")
        bad = ~self.available[r, c] | self.revealed[r, c]
        if bad.any():
            i = int(np.argmax(bad))
            what = "was already revealed" if self.revealed[r[i], c[i]] else "was not evaluated"
            raise EstimatorError(f"oracle: item {self.responses.item_ids[c[i]]!r} of model "
                                 f"{self.responses.model_ids[r[i]]!r} {what}")
        self.revealed[r, c] = True
        out[on] = self._values[r, c]
        return out

    def check(self, k: int) -> None:
        """Assert every model revealed exactly ``min(k, its available items)`` responses."""
        want = np.minimum(k, self.available.sum(axis=1))
        got = self.counts
        if (got != want).any():
            i = int(np.argmax(got != want))
            raise EstimatorError(f"oracle: model {self.responses.model_ids[i]!r} revealed {int(got[i])} "
                                 f"responses, expected {int(want[i])}")


def _softmax_rows(log_w: np.ndarray) -> np.ndarray:
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    return w / w.sum(axis=1, keepdims=True)


class AdaptiveBatch:
    """The adaptive procedure for a batch of models stepping together (vectorised over models)."""

    def __init__(self, est: Adaptive, available: np.ndarray, exclude: np.ndarray | None = None) -> None:
        x, _ = est._arrays()
        q = available.shape[0]
        self.est = est
        self.budget = int(est.k_)
        self.log_w = np.zeros((q, x.shape[0]))
        if exclude is not None:
            # Training models validated on themselves: their own row is not a prototype.
            self.log_w[np.arange(q), exclude] = -np.inf
        self.open = np.asarray(available, dtype=bool).copy()
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []

    def next_items(self) -> np.ndarray:
        """Per model, the open item of least expected posterior variance of the target (-1 if none)."""
        cols = np.where(self.open.any(axis=1), np.argmax(self.open, axis=1), -1)
        # Models whose open items all fit in the remaining budget get every one of them in any
        # order (the estimate depends only on the set asked): no choice to compute (k = all is cheap).
        choose = np.flatnonzero(self.open.sum(axis=1) > self.budget - len(self.cols))
        if choose.size:
            cols[choose] = self._best(choose)
        return cols

    def _best(self, rows: np.ndarray) -> np.ndarray:
        lik = self.est._likelihoods()
        w = _softmax_rows(self.log_w[rows])
        obj = np.zeros((rows.size, self.open.shape[1]))
        # p(y) * Var_{w|y}(t) = (E_w[L_y t^2] - E_w[L_y t]^2 / E_w[L_y]) / E_w[L_0 + L_1], summed
        # over y in {0, 1} (L_y = exp(-gamma |x - y|) is each prototype's likelihood of answering y).
        for z, m1, m2 in lik:
            obj += w @ m2 - (w @ m1) ** 2 / np.maximum(w @ z, 1e-300)
        obj /= w @ (lik[0][0] + lik[1][0])
        obj[~self.open[rows]] = np.inf
        return np.argmin(obj, axis=1)

    def record(self, cols: np.ndarray, values: np.ndarray) -> None:
        """Update the weights with one revealed response per model (``cols`` -1 = none)."""
        x, _ = self.est._arrays()
        on = np.flatnonzero(cols >= 0)
        if on.size:
            v = np.asarray(values, dtype=np.float64)[on]
            if np.isnan(v).any() or (v < 0).any() or (v > 1).any():
                raise EstimatorError("adaptive: revealed responses must be scores in [0, 1]")
            self.log_w[on] -= self.est.gamma_ * np.abs(x[:, cols[on]].T - v[:, None])
            self.open[on, cols[on]] = False
        self.cols.append(np.asarray(cols, dtype=np.int64))
        self.vals.append(np.asarray(values, dtype=np.float64))

    def estimate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(score, posterior SD of the target, local-ridge score) per model."""
        x, t = self.est._arrays()
        w = _softmax_rows(self.log_w)
        mean = w @ t
        sd = np.sqrt(np.maximum(w @ t**2 - mean**2, 0.0))
        cols = np.column_stack(self.cols) if self.cols else np.zeros((w.shape[0], 0), np.int64)
        vals = np.column_stack(self.vals) if self.vals else np.zeros((w.shape[0], 0))
        score = np.array([self._local_ridge(w[i], cols[i], vals[i], mean[i]) for i in range(w.shape[0])])
        return score, sd, mean

    def _local_ridge(self, w: np.ndarray, cols: np.ndarray, vals: np.ndarray, mean: float) -> float:
        """Weighted ridge of the target on the asked items, evaluated at this model's answers."""
        x, t = self.est._arrays()
        on = cols >= 0
        cols, vals = cols[on], vals[on]
        if cols.size == 0:
            return float(mean)
        return weighted_local_ridge(w, x[:, cols], t, vals, self.est.alpha_)


def run_batch(est: Adaptive, ask, available: np.ndarray, exclude: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """k adaptive steps for the models of ``available`` (rows); ``ask(cols) -> responses``.

    Returns (score, se)."""
    score, sd, _ = _steps(est, ask, available, exclude).estimate()
    return score, est._se(sd)


def _steps(est: Adaptive, ask, available: np.ndarray, exclude: np.ndarray | None) -> AdaptiveBatch:
    """The k ask/record steps of a batch (``ask(cols) -> responses``, -1 = nothing asked)."""
    batch = AdaptiveBatch(est, available, exclude)
    for _ in range(est.k_):
        cols = batch.next_items()
        batch.record(cols, ask(cols))
    return batch


@register_estimator("adaptive")
class Adaptive(Estimator):
    """Per-model adaptive item selection with prototype posteriors (see module docstring)."""

    param_names = ("gamma", "alpha")
    sequential: ClassVar[bool] = True

    def _fit(self, train: ResponseMatrix, k: int, seed: int, **context: Any) -> None:
        gamma = float(self.params.get("gamma", GAMMA))
        self.alpha_ = float(self.params.get("alpha", ALPHA))
        if not gamma > 0 or not self.alpha_ > 0:
            raise EstimatorError(f"estimator 'adaptive': gamma and alpha must be > 0, got {gamma}, {self.alpha_}")
        self.gamma_ = gamma * min(1.0, REFERENCE_K / k)
        values = np.asarray(train.values, dtype=np.float64)
        # Prototypes need a full row: unevaluated cells take the item's mean over the training models.
        self.x_ = np.where(np.isnan(values), column_means(values)[None, :], values).astype(np.float32)
        self.t_ = np.asarray(train.full_scores(), dtype=np.float64)
        self.selected_ = list(train.item_ids)
        self.__dict__.pop("_cache", None)
        self.__dict__.pop("_lik", None)
        self.se_scale_ = 1.0
        self.se_floor_ = 0.0
        self._validate_se(seed)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(prototype responses, targets) as float64, cached."""
        cache = self.__dict__.get("_cache")
        if cache is None:
            cache = (np.asarray(self.x_, dtype=np.float64), np.asarray(self.t_, dtype=np.float64))
            self.__dict__["_cache"] = cache
        return cache

    def _likelihoods(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]:
        """Per answer y in (1, 0): (L_y, L_y * t, L_y * t^2) over prototypes x items, cached."""
        lik = self.__dict__.get("_lik")
        if lik is None:
            x, t = self._arrays()
            g = float(self.gamma_)
            # L_1 = exp(-gamma (1 - x)), L_0 = exp(-gamma x): each prototype's likelihood of y
            lik = tuple((e, e * t[:, None], e * (t**2)[:, None])
                        for e in (np.exp(-g * (1.0 - x)), np.exp(-g * x)))
            self.__dict__["_lik"] = lik
        return lik

    def _validate_se(self, seed: int) -> None:
        """Run up to SE_SAMPLE training models through the procedure without themselves as
        prototypes; the SE is their posterior SD scaled to match the errors actually made."""
        x, t = self._arrays()
        n = x.shape[0]
        rows = np.sort(np.random.default_rng(seed).permutation(n)[:min(n, SE_SAMPLE)])
        score, sd, _ = self._run_rows(x[rows], exclude=rows)
        resid = np.clip(score, 0.0, 1.0) - t[rows]
        rmse = float(np.sqrt(np.mean(resid**2)))
        rms_sd = float(np.sqrt(np.mean(sd**2)))
        self.cv_mae_ = float(np.mean(np.abs(resid)))
        self.se_scale_ = rmse / rms_sd if rms_sd > 1e-12 else 1.0
        # Near-certain posteriors (sd -> 0) still carry the regression's error.
        self.se_floor_ = 0.25 * rmse

    def _run_rows(self, values: np.ndarray, exclude: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Adaptive run where the responses are known in full (training validation)."""
        def ask(cols: np.ndarray) -> np.ndarray:
            got = np.full(cols.size, np.nan)
            on = cols >= 0
            got[on] = values[np.flatnonzero(on), cols[on]]
            return got

        return _steps(self, ask, ~np.isnan(values), exclude).estimate()

    def _se(self, sd: np.ndarray) -> np.ndarray:
        return np.maximum(float(self.se_scale_) * sd, float(self.se_floor_))

    # -- prediction -----------------------------------------------------------------------------
    def predict_sequential(self, oracle: ResponseOracle) -> Estimates:
        """Ask ``oracle`` one response per model per step, k steps; estimate from what was revealed.

        The oracle's items are matched to the training items by id; items the training data lacks
        are never asked."""
        if not hasattr(self, "x_"):
            raise EstimatorError("estimator 'adaptive' is not fitted")
        obs = oracle.responses
        pool = np.array([obs._col.get(i, -1) for i in self.selected_], dtype=np.int64)
        if (pool < 0).all():
            raise EstimatorError(f"estimator 'adaptive': the responses share no item with the training data "
                                 f"(first training item {self.selected_[0]!r})")
        avail_all = np.zeros((obs.n_models, len(self.selected_)), dtype=bool)
        avail_all[:, pool >= 0] = oracle.available[:, pool[pool >= 0]]
        empty = ~avail_all.any(axis=1)
        if empty.any():
            raise EstimatorError(f"estimator 'adaptive': model {obs.model_ids[int(np.argmax(empty))]!r} has no "
                                 "response on any training item")
        score = np.empty(obs.n_models)
        se = np.empty(obs.n_models)
        for s in range(0, obs.n_models, CHUNK):
            rows = np.arange(s, min(s + CHUNK, obs.n_models))

            def ask(cols: np.ndarray, rows: np.ndarray = rows) -> np.ndarray:
                return oracle.ask(np.where(cols >= 0, pool[np.maximum(cols, 0)], -1), rows)

            score[rows], se[rows] = run_batch(self, ask, avail_all[rows])
        return Estimates(obs.model_ids, np.clip(score, 0.0, 1.0), se)

    def predict(self, observed: ResponseMatrix) -> Estimates:
        """Adaptive run on ``observed``: at most k responses per model are read, chosen one by one."""
        return self.predict_sequential(ResponseOracle(observed))

    def session(self) -> PrototypeSession:
        """A one-model interactive session (``next_item`` / ``record`` / ``estimate``)."""
        if not hasattr(self, "x_"):
            raise EstimatorError("estimator 'adaptive' is not fitted")
        return PrototypeSession(self)

    def _predict(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Never reached through the public API (predict is overridden); a subclass calling the
        # fixed-form path by mistake gets a clear error rather than a silent wrong answer.
        raise EstimatorError("estimator 'adaptive' chooses its items per model: use predict() or session()")


class PrototypeSession:
    """One model tested adaptively: ``next_item()`` -> item id, ``record(item_id, score)``, and
    ``estimate()`` -> (score, se) from the responses so far; at most k items are asked."""

    def __init__(self, est: Adaptive) -> None:
        self.est = est
        self._batch = AdaptiveBatch(est, np.ones((1, len(est.selected_)), dtype=bool))
        self.asked: list[str] = []

    @property
    def done(self) -> bool:
        return len(self.asked) >= self.est.k_ or not self._batch.open.any()

    def next_item(self) -> str:
        if self.done:
            raise EstimatorError(f"adaptive session: all {len(self.asked)} items have been asked")
        return self.est.selected_[int(self._batch.next_items()[0])]

    def record(self, item_id: str, score: float) -> None:
        try:
            col = self.est.selected_.index(item_id)
        except ValueError:
            raise EstimatorError(f"adaptive session: unknown item {item_id!r}") from None
        if not self._batch.open[0, col]:
            raise EstimatorError(f"adaptive session: item {item_id!r} was already recorded")
        if self.done:
            raise EstimatorError(f"adaptive session: already {len(self.asked)} items recorded (k = {self.est.k_})")
        if not 0.0 <= float(score) <= 1.0:
            raise EstimatorError(f"adaptive session: score {score!r} outside [0, 1]")
        self._batch.record(np.array([col]), np.array([float(score)]))
        self.asked.append(item_id)

    def estimate(self) -> tuple[float, float]:
        score, sd, _ = self._batch.estimate()
        return float(np.clip(score[0], 0.0, 1.0)), float(self.est._se(sd)[0])

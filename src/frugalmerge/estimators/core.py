"""Estimator base class, :class:`Estimates` and the decorator-based estimator registry.

An estimator is sklearn-like: ``__init__`` only stores parameters; ``fit(responses, k=..., seed=...)``
chooses the items it wants revealed (``selected_items_``) and learns from the training models;
``predict(observed)`` returns a score and a standard error per model from the revealed responses.
Fitted state is plain JSON + numpy arrays (attributes ending in ``_``), so cards need no pickle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from frugalmerge.estimators.errors import CardError, EstimatorError, UnknownNameError
from frugalmerge.estimators.responses import ResponseMatrix

__all__ = ["Estimates", "Estimator", "ESTIMATORS", "register_estimator", "make_estimator", "estimator_names"]


@dataclass(frozen=True)
class Estimates:
    """Estimated full-benchmark score (fraction in [0, 1]) and its standard error, per model."""

    model_ids: tuple[str, ...]
    score: np.ndarray
    se: np.ndarray

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {m: {"score": float(s), "se": float(e)} for m, s, e in zip(self.model_ids, self.score, self.se)}


ESTIMATORS: dict[str, type[Estimator]] = {}


def register_estimator(name: str) -> Callable[[type[Estimator]], type[Estimator]]:
    """Class decorator adding an estimator to the registry under ``name``."""

    def deco(cls: type[Estimator]) -> type[Estimator]:
        cls.name = name
        ESTIMATORS[name] = cls
        return cls

    return deco


def _load_methods() -> None:
    from frugalmerge.estimators import adaptive, default, methods  # noqa: F401  (registers the estimators)


def estimator_names() -> list[str]:
    """Registered estimator names, in registration order."""
    _load_methods()
    return list(ESTIMATORS)


def uses_endpoints(name: str) -> bool:
    """Whether estimator ``name`` reads MERGE³ endpoint models from its fit context."""
    _load_methods()
    if name not in ESTIMATORS:
        raise UnknownNameError(f"unknown estimator {name!r} (known: {', '.join(ESTIMATORS)})")
    return ESTIMATORS[name].uses_endpoints


def make_estimator(name: str, **params: Any) -> Estimator:
    """Instantiate a registered estimator (no work is done until ``fit``)."""
    _load_methods()
    if name not in ESTIMATORS:
        raise UnknownNameError(f"unknown estimator {name!r} (known: {', '.join(ESTIMATORS)})")
    return ESTIMATORS[name](**params)


class Estimator:
    """Base class. Subclasses implement ``_fit(train, k, seed, **context)`` and ``_predict(y)``.

    ``y`` given to ``_predict`` is the (n, k) array of revealed responses on ``selected_items_``
    (NaN where a selected item was not evaluated).
    """

    name: ClassVar[str] = "base"
    #: True for estimators that choose items per model, one response at a time
    #: (``predict_sequential(oracle)``); the benchmark then reveals responses through an oracle.
    sequential: ClassVar[bool] = False
    #: True for estimators that read ``endpoints`` (MERGE³'s endpoint model ids) from ``fit``'s context
    uses_endpoints: ClassVar[bool] = False
    #: parameter names accepted by ``__init__`` (validated, stored in cards)
    param_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.param_names))
        if unknown:
            raise EstimatorError(f"estimator {self.name!r}: unknown parameter {unknown[0]!r} "
                                 f"(accepted: {', '.join(self.param_names) or 'none'})")
        self.params = dict(params)
        self._check_params()

    def _check_params(self) -> None:
        """Refuse parameter values the estimator would ignore or change (no work, just checks)."""

    # -- public API ---------------------------------------------------------------------------
    def fit(self, responses: ResponseMatrix, k: int, seed: int = 0, **context: Any) -> Estimator:
        """Choose ``k`` items and learn from ``responses`` (the training models)."""
        if responses.n_models < 2:
            raise EstimatorError(f"estimator {self.name!r}: need at least 2 training models, got {responses.n_models}")
        if int(k) < 1:
            raise EstimatorError(f"estimator {self.name!r}: k must be >= 1, got {k}")
        self.k_ = int(min(int(k), responses.n_items))
        self.seed_ = int(seed)
        self.n_train_ = responses.n_models
        self.all_item_ids_ = list(responses.item_ids)
        self._fit(responses, self.k_, self.seed_, **context)
        return self

    @property
    def selected_items_(self) -> list[str]:
        """Item ids whose responses ``predict`` needs (set by ``fit``)."""
        if not hasattr(self, "selected_"):
            raise EstimatorError(f"estimator {self.name!r} is not fitted")
        return list(self.selected_)

    def predict(self, observed: ResponseMatrix) -> Estimates:
        """Estimate each observed model's full score from its responses to ``selected_items_``."""
        missing = [i for i in self.selected_items_ if i not in observed._col]
        if missing:
            raise EstimatorError(f"estimator {self.name!r}: observed responses lack selected item {missing[0]!r} "
                                 f"({len(missing)} of {len(self.selected_items_)} missing)")
        y = observed.take_items(self.selected_items_)
        empty = np.isnan(y).all(axis=1)
        if empty.any():
            raise EstimatorError(f"estimator {self.name!r}: model {observed.model_ids[int(np.argmax(empty))]!r} "
                                 "has no response on the selected items")
        score, se = self._predict(y)
        return Estimates(observed.model_ids, np.clip(score, 0.0, 1.0), np.asarray(se, dtype=np.float64))

    def predict_one(self, scores: dict[str, float], model_id: str = "candidate") -> tuple[float, float]:
        """Convenience for search loops: ``{item_id: score}`` of one model -> (estimate, standard error).

        Items not in ``selected_items_`` are ignored; selected items absent from ``scores`` count
        as missing (at least one must be present).
        """
        ids = self.selected_items_
        row = np.array([[float(scores[i]) if i in scores else np.nan for i in ids]])
        obs = ResponseMatrix(row, [model_id], ids)
        out = self.predict(obs)
        return float(out.score[0]), float(out.se[0])

    # -- state (cards) ------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able metadata, named arrays) of the fitted state: attributes ending in ``_``."""
        meta: dict[str, Any] = {"estimator": self.name, "params": self.params}
        arrays: dict[str, np.ndarray] = {}
        fitted: dict[str, Any] = {}
        for key, value in vars(self).items():
            if not key.endswith("_") or key.startswith("_"):
                continue
            if isinstance(value, np.ndarray):
                arrays[key] = value
            elif isinstance(value, (int, float, str, bool, list, tuple, dict)) or value is None:
                fitted[key] = value
            else:
                raise EstimatorError(f"estimator {self.name!r}: fitted attribute {key} is not serialisable")
        meta["fitted"] = fitted
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Estimator:
        _load_methods()
        name = meta.get("estimator")
        if name not in ESTIMATORS:
            raise CardError(f"card names unknown estimator {name!r}")
        est = ESTIMATORS[name](**meta.get("params", {}))
        for key, value in meta.get("fitted", {}).items():
            setattr(est, key, value)
        for key, value in arrays.items():
            setattr(est, key, value)
        return est

    # -- to implement -------------------------------------------------------------------------
    def _fit(self, train: ResponseMatrix, k: int, seed: int, **context: Any) -> None:
        raise NotImplementedError

    def _predict(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

"""Estimators: predict full-benchmark accuracy from a few revealed items.

Public API: :class:`ResponseMatrix` and :func:`load_responses` (inputs), :func:`make_estimator`
(registry: ``random_mean``, ``anchor``, ``ridge``, ``irt``, ``pirt``, ``gpirt``, ``mpirt``,
``gmpirt``, ``default``), :class:`Estimates`, the IRT tools in :mod:`frugalmerge.estimators.irt`,
cards (:func:`save_card`, :func:`load_card`) and the benchmark (:func:`run_bench`).
Importing this package is cheap: heavy modules load on first use.
"""

from __future__ import annotations

from frugalmerge._lazy import lazy_getattr

from frugalmerge.estimators.errors import CardError, EstimatorError, ResponseError, UnknownNameError

__all__ = [
    "ResponseMatrix", "load_responses", "make_estimator", "estimator_names", "Estimates", "Estimator",
    "save_card", "load_card", "run_bench", "EstimatorError", "ResponseError", "CardError", "UnknownNameError",
]

_LAZY = {
    "ResponseMatrix": "frugalmerge.estimators.responses",
    "load_responses": "frugalmerge.estimators.responses",
    "make_estimator": "frugalmerge.estimators.core",
    "estimator_names": "frugalmerge.estimators.core",
    "Estimates": "frugalmerge.estimators.core",
    "Estimator": "frugalmerge.estimators.core",
    "save_card": "frugalmerge.estimators.card",
    "load_card": "frugalmerge.estimators.card",
    "run_bench": "frugalmerge.estimators.bench",
}


__getattr__ = lazy_getattr(__name__, _LAZY)

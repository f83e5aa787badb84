"""Subset extraction: choose k representative items of a benchmark from training responses.

``select_subset(name, responses, k, seed)`` dispatches through a decorator-based registry:
``random``, ``stratified``, ``anchor_points``, ``irt_clustering``, ``fisher``, ``predictive`` and
``adaptive`` (see :mod:`frugalmerge.subsets.strategies`). Every :class:`Subset` is seeded and
carries its item ids, optional per-item weights and a hash; ``Subset.save`` / ``Subset.load``.
For truly sequential testing use :class:`AdaptiveSession`.
"""

from frugalmerge.subsets.core import SUBSETS, Subset, register_subset, select_subset
from frugalmerge.subsets.strategies import AdaptiveSession

__all__ = ["SUBSETS", "Subset", "register_subset", "select_subset", "AdaptiveSession"]

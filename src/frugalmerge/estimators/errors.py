"""Exceptions of the subsets/estimators stage: one clear message naming the culprit."""

from __future__ import annotations


class EstimatorError(ValueError):
    """Base class of every error raised by ``frugalmerge.estimators`` and ``frugalmerge.subsets``."""


class ResponseError(EstimatorError):
    """A response matrix (or the file it came from) is invalid."""


class CardError(EstimatorError):
    """An estimator card directory is missing, corrupt or incompatible with the given responses."""


class UnknownNameError(EstimatorError):
    """A registry lookup (estimator, subset strategy, loader) used an unknown name."""

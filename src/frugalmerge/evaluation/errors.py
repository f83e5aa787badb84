"""Errors of the evaluation stage."""

from __future__ import annotations


class EvaluationError(Exception):
    """An evaluation could not run (bad settings, unknown items, unusable model output)."""


class BenchmarkFormatError(EvaluationError):
    """A benchmark file could not be read; the message names the file and, where known, the line."""

"""Scoring several models into a response matrix (the CSV format subsets and estimators read)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from frugalmerge._atomic import atomic_write_text
from frugalmerge.evaluation.errors import EvaluationError


def write_responses_csv(path: str | Path, scores: Mapping[str, Mapping[str, float]],
                        item_ids: Sequence[str] | None = None) -> Path:
    """Write ``{model: {item id: score}}`` as a response-matrix CSV, atomically.

    Layout (see CONTRACTS.md): first column ``model``, one column per item id (``item_ids``, or
    every id seen in first-seen order); an empty cell means not evaluated.
    """
    if not scores:
        raise EvaluationError("no model scores to write")
    if item_ids is None:
        item_ids = list(dict.fromkeys(i for per in scores.values() for i in per))
    if "model" in item_ids:
        raise EvaluationError("an item id cannot be 'model' (the first column's name)")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", *item_ids])
    for model, per in scores.items():
        writer.writerow([model, *(_cell(per.get(i)) for i in item_ids)])
    target = Path(path)
    atomic_write_text(target, buffer.getvalue())
    return target


def _cell(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))

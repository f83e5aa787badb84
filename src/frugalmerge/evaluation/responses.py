"""Scoring several models into a response matrix (the CSV format subsets and estimators read)."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

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
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _cell(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))

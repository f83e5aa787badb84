"""Cheap REAL objectives for the search tests: functions of the recipe (no model evaluation).

Importable by the ``evolve`` subprocesses of the tests (``tests/`` is put on PYTHONPATH).
"""

from __future__ import annotations

import os
import time
from typing import Any

TARGET = {"model_a": 0.8, "model_b": 0.3}


def _weights(recipe: dict[str, Any]) -> list[float]:
    out = []
    for m in recipe["models"]:
        w = m["parameters"].get("weight", 0.0)
        out.append(sum(w) / len(w) if isinstance(w, list) else float(w))
    return out


def closeness(recipe: dict[str, Any], split: str = "search") -> float:
    """1 - squared distance of the (layer-mean) weights to (0.8, 0.3, ...); max 1 at the target.

    ``FM_TEST_SLEEP`` seconds per call slow the run so a test can kill it mid-generation."""
    delay = float(os.environ.get("FM_TEST_SLEEP", "0"))
    if delay:
        time.sleep(delay)
    w = _weights(recipe)
    target = [0.8, 0.3, 0.5, 0.5][: len(w)]
    return 1.0 - sum((a - b) ** 2 for a, b in zip(w, target))


def noisy_closeness(recipe: dict[str, Any], split: str = "search") -> tuple[float, float]:
    """:func:`closeness` plus deterministic noise (SD 0.05, seeded by the recipe), with its SE:
    a stand-in for a cheap estimate, for the surrogate tests. The test split is noise-free."""
    import hashlib
    import json

    import numpy as np

    value = closeness(recipe, split)
    if split != "search":
        return value, 0.0
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).digest()
    noise = np.random.default_rng(int.from_bytes(digest[:8], "little")).normal(0.0, 0.05)
    return value + float(noise), 0.05


def first_weight(recipe: dict[str, Any], split: str = "search") -> float:
    """Objective 1 of a 2-objective trade-off: the first model's weight."""
    return closeness(recipe, split) * 0 + _weights(recipe)[0]


def second_weight(recipe: dict[str, Any], split: str = "search") -> float:
    """Objective 2: 1 - first weight + half the second (conflicts with objective 1)."""
    w = _weights(recipe)
    return 1.0 - w[0] + 0.5 * w[1]


def depth_five(recipe: dict[str, Any], split: str = "search") -> float:
    """Layer stacking: best at five stacked layers, with model_b's layers preferred (ties broken).

    Baselines (sources, naive average) are whole 4-layer models."""
    if "slices" not in recipe:
        return -1.0
    slices = recipe["slices"]
    from_b = sum("model_b" in s["sources"][0]["model"] for s in slices)
    return -abs(len(slices) - 5) + 0.01 * from_b


def coarse_closeness(recipe: dict[str, Any], split: str = "search") -> tuple[float, float]:
    """:func:`closeness` rounded to 0.1 with SE 0.05 on the search split: a stand-in for a coarse
    estimate whose values tie near the optimum (the surrogate tie-break tests). Test split exact."""
    value = closeness(recipe, split)
    if split != "search":
        return value, 0.0
    return round(value, 1), 0.05


def not_a_number(recipe: dict[str, Any], split: str = "search") -> float:
    """A broken objective (NaN): the search must refuse it, not rank with it."""
    return float("nan")

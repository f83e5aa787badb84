"""The :class:`Subset` record and the subset-strategy registry."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, model_validator

from frugalmerge._atomic import atomic_write_text
from frugalmerge.estimators.errors import EstimatorError, UnknownNameError

if TYPE_CHECKING:
    from frugalmerge.estimators.responses import ResponseMatrix

__all__ = ["Subset", "SUBSETS", "register_subset", "select_subset", "subset_hash"]


def subset_hash(item_ids: tuple[str, ...] | list[str]) -> str:
    """sha256 over the ordered item ids (identifies a subset independently of how it was chosen)."""
    return hashlib.sha256("\n".join(item_ids).encode()).hexdigest()


class Subset(BaseModel):
    """k chosen items (ordered), optional weights summing to 1 (anchor/cluster weights) and provenance."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: str
    k: int
    seed: int
    item_ids: tuple[str, ...]
    weights: tuple[float, ...] | None = None
    data_sha256: str = ""
    hash: str = ""

    @model_validator(mode="before")
    @classmethod
    def _fill_hash(cls, data: Any) -> Any:
        if isinstance(data, dict):
            ids = tuple(data.get("item_ids", ()))
            expected = subset_hash(ids)
            if data.get("hash") and data["hash"] != expected:
                raise ValueError(f"subset hash {data['hash']!r} does not match its item ids (expected {expected})")
            data = {**data, "hash": expected}
        return data

    @model_validator(mode="after")
    def _check(self) -> Subset:
        if not self.item_ids:
            raise ValueError("a subset needs at least one item")
        if len(set(self.item_ids)) != len(self.item_ids):
            raise ValueError("duplicate item ids in subset")
        if self.weights is not None and len(self.weights) != len(self.item_ids):
            raise ValueError("one weight per item is required")
        return self

    def save(self, path: str | Path) -> None:
        """Write as JSON atomically."""
        atomic_write_text(path, json.dumps(self.model_dump(mode="json"), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Subset:
        try:
            return cls.model_validate_json(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise EstimatorError(f"{path}: not a valid subset file ({e})") from None


Strategy = Callable[..., tuple[list[str], list[float] | None]]
SUBSETS: dict[str, Strategy] = {}


def register_subset(name: str) -> Callable[[Strategy], Strategy]:
    """Decorator: ``f(responses, k, rng, **params) -> (item_ids, weights or None)``."""

    def deco(fn: Strategy) -> Strategy:
        SUBSETS[name] = fn
        return fn

    return deco


def select_subset(name: str, responses: ResponseMatrix, k: int, seed: int = 0, **params: Any) -> Subset:
    """Choose ``k`` items of ``responses`` with strategy ``name`` (seeded, deterministic)."""
    import numpy as np

    from frugalmerge.subsets import strategies  # noqa: F401  (registers the strategies)

    if name not in SUBSETS:
        raise UnknownNameError(f"unknown subset strategy {name!r} (known: {', '.join(sorted(SUBSETS))})")
    if int(k) < 1:
        raise EstimatorError(f"subset size k must be >= 1, got {k}")
    k = int(k)
    if k >= responses.n_items:
        ids, weights = list(responses.item_ids), None
    else:
        ids, weights = SUBSETS[name](responses, k, np.random.default_rng(seed), **params)
    if weights is not None:
        total = float(sum(weights))
        weights = [float(w) / total for w in weights]
    return Subset(strategy=name, k=len(ids), seed=seed, item_ids=tuple(ids),
                  weights=None if weights is None else tuple(weights), data_sha256=responses.sha256())

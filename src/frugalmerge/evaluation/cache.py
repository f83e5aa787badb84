"""The evaluation cache: one score per (model fingerprint, item id, task-settings hash)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from frugalmerge._atomic import atomic_write_text
from frugalmerge.evaluation.errors import EvaluationError

CacheKey = tuple[str, str, str]


class EvalCache:
    """Scores already computed, so no item is scored twice for the same model and settings.

    ``hits`` / ``misses`` count lookups. With ``path``, an existing file is loaded and
    :meth:`save` rewrites it atomically (temporary file + rename). The cache pickles (plain
    dicts), so a search checkpoint can hold it.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._scores: dict[CacheKey, float] = {}
        self.hits = 0
        self.misses = 0
        if self.path is not None and self.path.exists():
            self._load(self.path)

    def __len__(self) -> int:
        return len(self._scores)

    def __contains__(self, key: object) -> bool:
        return key in self._scores

    def get(self, fingerprint: str, item_id: str, settings: str) -> float | None:
        """The cached score, or None (counted as a hit or a miss)."""
        value = self._scores.get((fingerprint, item_id, settings))
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, fingerprint: str, item_id: str, settings: str, score: float) -> None:
        """Store one score."""
        self._scores[(fingerprint, item_id, settings)] = float(score)

    def scores_for(self, fingerprint: str) -> dict[str, float]:
        """Every cached item score of one model (across settings, last one wins)."""
        return {item: s for (fp, item, _), s in self._scores.items() if fp == fingerprint}

    def stats(self) -> dict[str, int]:
        """``{'entries', 'hits', 'misses'}``."""
        return {"entries": len(self._scores), "hits": self.hits, "misses": self.misses}

    def clear_counters(self) -> None:
        """Reset the hit/miss counters (entries are kept)."""
        self.hits = self.misses = 0

    # --- persistence ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready snapshot: ``{"version": 1, "entries": [[fp, item, settings, score], ...]}``."""
        entries = [[fp, item, st, score] for (fp, item, st), score in sorted(self._scores.items())]
        return {"version": 1, "entries": entries}

    def save(self, path: str | Path | None = None) -> Path:
        """Write the cache atomically to ``path`` (default: the path it was opened with)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise EvaluationError("EvalCache.save needs a path (the cache was opened without one)")
        atomic_write_text(target, json.dumps(self.to_json()))
        return target

    def _load(self, path: Path) -> None:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            entries = raw["entries"]
            for fp, item, st, score in entries:
                self._scores[(str(fp), str(item), str(st))] = float(score)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EvaluationError(f"cannot read evaluation cache {path}: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> EvalCache:
        """Open the cache file at ``path`` (which must exist)."""
        if not Path(path).is_file():
            raise EvaluationError(f"evaluation cache {path} does not exist")
        return cls(path)

    def update(self, other: EvalCache) -> None:
        """Add every entry of ``other``."""
        self._scores.update(other._scores)


def model_fingerprint(model) -> str:
    """sha256 (16 hex digits) of a model's parameter and buffer bytes, names, dtypes and shapes.

    Reads every weight once (~ms for the zoo's models; for large models pass your own
    fingerprint, such as a hash of the merge recipe, to ``evaluate``).
    """
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            t = tensor.detach()
            digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
            flat = t.contiguous().view(-1)
            if flat.dtype == torch.bfloat16:
                flat = flat.view(torch.int16)
            digest.update(flat.cpu().numpy().tobytes())
    return digest.hexdigest()[:16]

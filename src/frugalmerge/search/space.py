"""The search space: genotype (a vector in [0, 1]^n) -> mergekit recipe, as a pure function.

Every gene lives in [0, 1] so that every algorithm sees the same box; decoding scales it into the
configured bounds and rounds to ``precision`` decimals (equal recipes then share one cache entry,
and recipes stay readable). Layout, in order: the method gene (when the method is searched), then
for each model each searched per-model parameter (1 value, ``groups`` layer values, or one value
per filter plus a default), then the searched global parameters.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frugalmerge.search.config import METHOD_GLOBAL_PARAMS, METHOD_MODEL_PARAMS, GeneSpec, SearchConfig
from frugalmerge.search.errors import ConfigError


@dataclass(frozen=True)
class Slot:
    """Where one searched value lives: parameter, model (None for a global) and its genes."""

    param: str
    model: str | None
    spec: GeneSpec
    start: int
    size: int


def model_num_layers(model_dir: str | Path) -> int:
    """``num_hidden_layers`` (or ``n_layer``) of a Hugging Face model directory's config.json."""
    path = Path(model_dir) / "config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(cfg.get(key), int):
            return int(cfg[key])
    raise ConfigError(f"{path}: no num_hidden_layers: cannot size per-layer genes (give `groups`)")


def _slot_size(spec: GeneSpec, num_layers: int | None) -> int:
    if spec.per == "value":
        return 1
    if spec.per == "filters":
        return len(spec.filters) + 1
    if spec.groups is not None:
        return spec.groups
    if num_layers is None:
        raise ConfigError("per: layers without `groups` needs the models' layer count")
    return max(2, num_layers)


class SearchSpace:
    """Maps genotypes to recipe dicts for one :class:`SearchConfig`."""

    def __init__(self, config: SearchConfig, num_layers: int | None = None) -> None:
        self.config = config
        needs_layers = any(s.per == "layers" and s.groups is None
                           for s in (*config.search.values(), *config.global_search.values()))
        if needs_layers and num_layers is None:
            num_layers = model_num_layers(config.base_model or next(iter(config.models.values())))
        self.num_layers = num_layers
        slots: list[Slot] = []
        pos = 1 if config.method.is_gene else 0
        for model in config.models:
            for param, spec in config.search.items():
                size = _slot_size(spec, num_layers)
                slots.append(Slot(param, model, spec, pos, size))
                pos += size
        for param, spec in config.global_search.items():
            size = _slot_size(spec, num_layers)
            slots.append(Slot(param, None, spec, pos, size))
            pos += size
        self.slots = tuple(slots)
        self.n_var = pos
        if self.n_var == 0:
            raise ConfigError("empty search space: no genes")

    @property
    def gene_names(self) -> list[str]:
        """Human-readable name of every gene, in genotype order."""
        names = ["method"] if self.config.method.is_gene else []
        for s in self.slots:
            owner = f"{s.model}." if s.model else ""
            if s.size == 1:
                names.append(f"{owner}{s.param}")
            elif s.spec.per == "filters":
                names += [f"{owner}{s.param}[{f}]" for f in s.spec.filters] + [f"{owner}{s.param}[*]"]
            else:
                names += [f"{owner}{s.param}[{i}]" for i in range(s.size)]
        return names

    def method_of(self, x: np.ndarray) -> str:
        choices = self.config.method.choices
        if len(choices) == 1:
            return choices[0]
        return choices[min(int(float(x[0]) * len(choices)), len(choices) - 1)]

    def _value(self, slot: Slot, x: np.ndarray) -> Any:
        lo, hi = slot.spec.bounds
        genes = np.clip(np.asarray(x[slot.start:slot.start + slot.size], dtype=np.float64), 0.0, 1.0)
        vals = [round(float(lo + g * (hi - lo)), self.config.precision) for g in genes]
        if slot.spec.per == "value":
            return vals[0]
        if slot.spec.per == "layers":
            return vals  # a mergekit gradient: interpolated over the layers
        return [{"filter": f, "value": v} for f, v in zip(slot.spec.filters, vals)] + [{"value": vals[-1]}]

    def decode(self, x: np.ndarray) -> dict[str, Any]:
        """The mergekit-format recipe dict of genotype ``x`` (pure: same x, same dict)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.shape[0] != self.n_var:
            raise ValueError(f"genotype has {x.shape[0]} genes, the space has {self.n_var}")
        cfg = self.config
        method = self.method_of(x)
        used = METHOD_MODEL_PARAMS[method]
        gused = METHOD_GLOBAL_PARAMS[method]
        per_model: dict[str, dict[str, Any]] = {
            m: {k: v for k, v in cfg.fixed.model_parameters.items() if k in used} for m in cfg.models
        }
        globals_: dict[str, Any] = {k: v for k, v in cfg.fixed.parameters.items() if k in gused}
        for slot in self.slots:
            if slot.model is not None and slot.param in used:
                per_model[slot.model][slot.param] = self._value(slot, x)
            elif slot.model is None and slot.param in gused:
                globals_[slot.param] = self._value(slot, x)
        recipe: dict[str, Any] = {"merge_method": method}
        if cfg.base_model is not None and method != "linear":
            recipe["base_model"] = cfg.base_model
        recipe["models"] = [
            {"model": path, "parameters": per_model[name]} for name, path in cfg.models.items()
        ]
        if globals_:
            recipe["parameters"] = globals_
        recipe["dtype"] = cfg.dtype
        return recipe

    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` uniformly random genotypes."""
        return rng.random((n, self.n_var))


def recipe_key(recipe: dict[str, Any]) -> str:
    """Canonical hash of a recipe dict: the evaluation-cache key (dedups equal recipes)."""
    blob = json.dumps(recipe, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def to_merge_recipe(recipe: dict[str, Any]) -> Any:
    """Validate a recipe dict into :class:`frugalmerge.merging.MergeRecipe`."""
    from frugalmerge.merging import MergeRecipe

    return MergeRecipe.model_validate(recipe)


def average_recipe(config: SearchConfig) -> dict[str, Any]:
    """The naive baseline: a linear average of the models (mergekit ``linear``, equal weights)."""
    return {
        "merge_method": "linear",
        "models": [{"model": path, "parameters": {"weight": 1.0}} for path in config.models.values()],
        "parameters": {"normalize": True},
        "dtype": config.dtype,
    }

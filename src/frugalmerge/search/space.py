"""The search space: genotype (a vector in [0, 1]^n) -> mergekit recipe, as a pure function.

Every gene lives in [0, 1] so that every algorithm sees the same box; decoding scales it into the
configured bounds and rounds to ``precision`` decimals (equal recipes then share one cache entry,
and recipes stay readable). Layout, in order: the method gene (when the method is searched), then
for each model each searched per-model parameter (1 value, ``groups`` layer values, or one value
per filter plus a default), then the searched global parameters. A layer-stacking space
(``stacking:``) has instead one use gene per layer slot, then (with ``scale``) one scale gene each.
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
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(cfg, dict):  # as merging.Checkpoint: anything but an object has no keys to read
        raise ConfigError(f"{path}: expected a JSON object, got {type(cfg).__name__}")
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
        self.stack_slots: tuple[tuple[str, int], ...] = ()
        if config.stacking is not None:
            self._init_stacking(config)
            return
        layered = [(name, s) for name, s in (*config.search.items(), *config.global_search.items())
                   if s.per == "layers"]
        if layered and num_layers is None:
            num_layers = model_num_layers(config.base_model or next(iter(config.models.values())))
        for name, s in layered:
            # each layer reads an interpolation of the gradient's points: more points than layers
            # add genes without adding control (a typo, e.g. groups: 32 on a 4-layer model)
            if s.groups is not None and num_layers is not None and s.groups > num_layers:
                raise ConfigError(f"config: {name}: groups {s.groups} exceeds the models' {num_layers} layers")
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

    def _init_stacking(self, config: SearchConfig) -> None:
        spec = config.stacking
        names = spec.models or tuple(config.models)
        layers = {m: model_num_layers(config.models[m]) for m in names}
        self.num_layers = None
        self.slots = ()
        # Sakana's layout: every model's layers in order, the whole sequence `repeats` times
        self.stack_slots = tuple((m, i) for _ in range(spec.repeats) for m in names for i in range(layers[m]))
        self.n_var = len(self.stack_slots) * (2 if spec.scale is not None else 1)

    @property
    def gene_names(self) -> list[str]:
        """Human-readable name of every gene, in genotype order."""
        if self.stack_slots:
            names = [f"use[{t}:{m}.{i}]" for t, (m, i) in enumerate(self.stack_slots)]
            if self.config.stacking.scale is not None:
                names += [f"scale[{t}:{m}.{i}]" for t, (m, i) in enumerate(self.stack_slots)]
            return names
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
        if self.stack_slots:
            return self._decode_stack(x)
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

    def _decode_stack(self, x: np.ndarray) -> dict[str, Any]:
        """A passthrough recipe of one-layer slices: the used slots, in slot order."""
        cfg, spec = self.config, self.config.stacking
        n = len(self.stack_slots)
        use = np.clip(x[:n], 0.0, 1.0)
        chosen = [t for t in range(n) if use[t] > 0.5]
        limit = spec.max_layers or n
        if len(chosen) > limit:  # keep the most wanted slots, still in slot order
            chosen = sorted(sorted(chosen, key=lambda t: (-use[t], t))[:limit])
        if not chosen:  # a model needs a layer: the most wanted slot
            chosen = [int(np.argmax(use))]
        slices = []
        for t in chosen:
            model, layer = self.stack_slots[t]
            source: dict[str, Any] = {"model": cfg.models[model], "layer_range": [layer, layer + 1]}
            if spec.scale is not None:
                lo, hi = spec.scale
                g = float(np.clip(x[n + t], 0.0, 1.0))
                value = round(lo + g * (hi - lo), cfg.precision)
                source["parameters"] = {"scale": [{"filter": f, "value": value} for f in spec.scale_filters]
                                        + [{"value": 1.0}]}
            slices.append({"sources": [source]})
        return {"merge_method": "passthrough", "slices": slices, "dtype": cfg.dtype}

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

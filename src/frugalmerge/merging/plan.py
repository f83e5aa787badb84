"""From a recipe and the models' metadata to one job per output tensor (no tensor data touched).

mergekit's planning rules: ``models:`` becomes one output slice over all layers (the base model is
appended as an input when not listed); layer tensors get ``t = i / (n - 1)`` within their output
slice; tensors outside the layer stack (embeddings, final norm, lm_head) use ``t = 0``, the first
slice's inputs for the embeddings and the last slice's for the rest. ``lm_head.weight`` is produced
only when some input stores it; inputs with tied embeddings then contribute their embedding matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from frugalmerge.merging.checkpoint import LAYER_RE, LM_HEAD, Checkpoint, resolve_name
from frugalmerge.merging.errors import RecipeError
from frugalmerge.merging.methods import MergeMethod, get_method
from frugalmerge.merging.recipe import ConditionalParameter, MergeRecipe, OutputSlice, evaluate_setting

_MISSING = object()


@dataclass(frozen=True)
class TensorJob:
    """One output tensor: its inputs (model, tensor name), base position and parameters.

    Input names are logical: a tied ``lm_head.weight`` is read from the embedding by the readers.
    """

    out_name: str
    sources: tuple[tuple[str, str], ...]
    base_index: Optional[int]
    shared: dict[str, Any]
    per_input: tuple[dict[str, Any], ...]  # aligned with ``sources``; base's entry is for 'input' scope


@dataclass(frozen=True)
class MergePlan:
    """Every output tensor's job, in checkpoint order, and the output layer count."""

    method: MergeMethod
    jobs: tuple[TensorJob, ...]
    num_layers: int


def _normalized_slices(recipe: MergeRecipe, ckpts: dict[str, Checkpoint]) -> list[OutputSlice]:
    from frugalmerge.merging.recipe import InputSlice

    if recipe.slices:
        return list(recipe.slices)
    sources = []
    base_included = False
    for m in recipe.models or []:
        base_included |= m.model == recipe.base_model
        sources.append(InputSlice(model=m.model, layer_range=(0, ckpts[m.model].num_layers), parameters=m.parameters))
    if recipe.base_model and not base_included:
        sources.append(InputSlice(model=recipe.base_model, layer_range=(0, ckpts[recipe.base_model].num_layers)))
    return [OutputSlice(sources=sources)]


class _Resolver:
    """Parameter resolution with mergekit's precedence (input > slice > top level) and defaults."""

    def __init__(self, recipe: MergeRecipe, method: MergeMethod):
        self.recipe = recipe
        self.method = method
        self._memo: dict[tuple, Any] = {}

    def shared(self, sl: OutputSlice, tensor: str, t: float) -> dict[str, Any]:
        scopes = (sl.parameters, self.recipe.parameters)
        return {p.name: self._resolve(p, scopes, tensor, t, None) for p in self.method.shared_params}

    def per_input(self, sl: OutputSlice, model: str, tensor: str, t: float, is_base: bool) -> dict[str, Any]:
        own = tuple(src.parameters for src in sl.sources if src.model == model)
        scopes = (*own, sl.parameters, self.recipe.parameters)
        return {
            p.name: self._resolve(p, scopes, tensor, t, model)
            for p in self.method.input_params
            if not is_base or p.scope == "input"
        }

    def _evaluate(self, spec, setting: Any, tensor: str, t: float) -> Any:
        """``evaluate_setting`` memoized per (setting, parameter, t): one recipe resolves each
        distinct value once instead of once per tensor and input (the search calls this a lot)."""
        if isinstance(setting, list) and setting and isinstance(setting[0], ConditionalParameter):
            for cond in setting:
                if cond.filter is None or cond.filter == "*" or (tensor and cond.filter in tensor):
                    return self._evaluate(spec, cond.value, tensor, t)
            return None
        if isinstance(setting, ConditionalParameter):
            return self._evaluate(spec, [setting], tensor, t)
        key = (id(setting), spec.name, t if isinstance(setting, list) else None)
        value = self._memo.get(key, _MISSING)
        if value is _MISSING:
            value = evaluate_setting(tensor, setting, t, spec.validate)
            self._memo[key] = value
        return value

    def _resolve(self, spec, scopes, tensor: str, t: float, model: Optional[str]) -> Any:
        for scope in scopes:
            if scope is not None and spec.name in scope:
                value = self._evaluate(spec, scope[spec.name], tensor, t)
                if value is not None:
                    return value
        if spec.required:
            where = f"{model}: {tensor}" if model else tensor
            raise RecipeError(f"missing required parameter {spec.name!r} for {where}")
        return spec.default


def build_plan(recipe: MergeRecipe, ckpts: dict[str, Checkpoint]) -> MergePlan:
    """Resolve every output tensor of ``recipe`` over the loaded checkpoints ``ckpts``."""
    method = get_method(recipe.merge_method)
    slices = _normalized_slices(recipe, ckpts)
    resolver = _Resolver(recipe, method)
    for i, sl in enumerate(slices):
        _check_contract(method, recipe, sl, i)
    ref_model = recipe.base_model or slices[0].sources[0].model
    ref = ckpts[ref_model]
    jobs: list[TensorJob] = []

    def job(sl: OutputSlice, out_name: str, in_names: list[str], t: float) -> Optional[TensorJob]:
        base = sl.base_model or recipe.base_model
        if method.base == "ignored":
            base = None
        models = [s.model for s in sl.sources]
        sources, per_input = [], []
        for model, in_name in zip(models, in_names):
            if resolve_name(ckpts[model], in_name) is None:
                raise RecipeError(f"tensor {in_name} is missing from {model}")
            sources.append((model, in_name))
            per_input.append(resolver.per_input(sl, model, in_name, t, model == base))
        base_index = models.index(base) if base is not None else None
        return TensorJob(out_name, tuple(sources), base_index, resolver.shared(sl, out_name, t), tuple(per_input))

    layer_names = [n for n in ref.names if LAYER_RE.match(n)]
    templates = []  # per-layer suffixes in checkpoint order, from layer 0
    for n in layer_names:
        m = LAYER_RE.match(n)
        if int(m.group(2)) == 0:
            templates.append((m.group(1), m.group(3)))
    pre = [n for n in ref.names if not LAYER_RE.match(n) and "embed" in n]
    post = [n for n in ref.names if not LAYER_RE.match(n) and "embed" not in n and n != LM_HEAD]
    has_head = any(ckpts[s.model].has(LM_HEAD) for s in slices[-1].sources)
    if has_head:
        post.append(LM_HEAD)

    first, last = slices[0], slices[-1]
    for name in pre:
        jobs.append(job(first, name, [name] * len(first.sources), 0.0))
    out_layer = 0
    for sl in slices:
        length = sl.sources[0].layer_range[1] - sl.sources[0].layer_range[0]
        for offset in range(length):
            t = offset / (length - 1) if length > 1 else 1.0
            for prefix, suffix in templates:
                in_names = []
                for src in sl.sources:
                    layer = src.layer_range[0] + offset
                    if layer >= ckpts[src.model].num_layers or layer < 0:
                        raise RecipeError(
                            f"layer_range {list(src.layer_range)} is out of range for {src.model} "
                            f"({ckpts[src.model].num_layers} layers)"
                        )
                    in_names.append(f"{prefix}{layer}{suffix}")
                jobs.append(job(sl, f"{prefix}{out_layer}{suffix}", in_names, t))
            out_layer += 1
    for name in post:
        jobs.append(job(last, name, [name] * len(last.sources), 0.0))
    return MergePlan(method, tuple(jobs), out_layer)


def _check_contract(method: MergeMethod, recipe: MergeRecipe, sl: OutputSlice, index: int) -> None:
    models = [s.model for s in sl.sources]
    where = f"slices[{index}]" if recipe.slices else "models"
    if len(set(models)) != len(models):
        raise RecipeError(f"{where}: a model is listed twice")
    base = sl.base_model or recipe.base_model
    if method.base == "required":
        if base is None:
            raise RecipeError(f"merge_method {method.name} needs a base_model")
        if base not in models:
            raise RecipeError(f"{where}: base_model {base} is not among the inputs")
    if len(models) < method.min_inputs or (method.max_inputs is not None and len(models) > method.max_inputs):
        expected = (
            f"exactly {method.min_inputs}" if method.min_inputs == method.max_inputs
            else f"at most {method.max_inputs}" if method.max_inputs else f"at least {method.min_inputs}"
        )
        raise RecipeError(f"{where}: {method.name} takes {expected} input model(s), got {len(models)}")


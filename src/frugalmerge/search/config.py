"""The search configuration (YAML), validated completely before any work starts.

A config names the models, the merge method (fixed or a gene), which merge parameters are searched
(with bounds and a granularity: one value, per-layer(-group) gradients, or per-filter values), the
fixed values, the objectives, the algorithm and the budget. Relative paths are resolved against the
directory of the config file. Every problem raises :class:`ConfigError` naming the culprit.

Example::

    name: cross_domain
    seed: 0
    zoo: ../zoo                      # optional: benchmarks (and model names) from a zoo manifest
    base_model: base                 # a path, or a zoo model name
    models: [math_en, lang_de]
    method: task_arithmetic          # or {choices: [task_arithmetic, ties]} to search it
    search:
      weight: {bounds: [0.0, 1.5], per: layers, groups: 2}
      density: {bounds: [0.2, 1.0]}
    fixed: {parameters: {normalize: false}}
    objectives:
      - {name: math_de, benchmark: math_de, k: 30, estimator: default}
    algorithm: {name: ga, pop_size: 8}
    budget: {generations: 10}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from frugalmerge._yaml import safe_load_unique, yaml_error_text
from frugalmerge.search.errors import ConfigError

#: Merge parameters each method uses per model (mergekit 0.1.5 semantics); others are dropped
#: from the recipe when the method is a gene and the chosen method does not use them.
METHOD_MODEL_PARAMS: dict[str, frozenset[str]] = {
    "linear": frozenset({"weight"}),
    "task_arithmetic": frozenset({"weight"}),
    "ties": frozenset({"weight", "density"}),
    "dare_ties": frozenset({"weight", "density"}),
    "dare_linear": frozenset({"weight", "density"}),
    "breadcrumbs": frozenset({"weight", "density", "gamma"}),
    "breadcrumbs_ties": frozenset({"weight", "density", "gamma"}),
}
#: Global (recipe-level) parameters each method reads.
METHOD_GLOBAL_PARAMS: dict[str, frozenset[str]] = {
    "linear": frozenset({"normalize"}),
    "task_arithmetic": frozenset({"normalize", "lambda", "rescale"}),
    "ties": frozenset({"normalize", "int8_mask", "lambda"}),
    "dare_ties": frozenset({"normalize", "int8_mask", "lambda", "rescale"}),
    "dare_linear": frozenset({"normalize", "int8_mask", "lambda", "rescale"}),
    "breadcrumbs": frozenset({"normalize", "int8_mask", "lambda"}),
    "breadcrumbs_ties": frozenset({"normalize", "int8_mask", "lambda"}),
}
NEEDS_BASE = frozenset(METHOD_MODEL_PARAMS) - {"linear"}
#: Layer stacking (``stacking:``): its genes pick and scale layers, the recipe is a passthrough.
STACKING_METHOD = "passthrough"


class _Frozen(BaseModel):
    # No NaN/Inf in any config number: .inf z-scores or tie-breaks turned every told value into NaN
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class GeneSpec(_Frozen):
    """A searched merge parameter: bounds and granularity.

    ``per``: ``value`` (one number), ``layers`` (a mergekit gradient of ``groups`` values
    interpolated over the layers; ``groups`` defaults to the number of layers, i.e. one value per
    layer), or ``filters`` (one value per entry of ``filters`` plus a default for other tensors).
    """

    bounds: tuple[float, float]
    per: Literal["value", "layers", "filters"] = "value"
    groups: int | None = Field(default=None, ge=2)
    filters: tuple[str, ...] = ("self_attn", "mlp")

    @model_validator(mode="after")
    def _check(self) -> GeneSpec:
        lo, hi = self.bounds
        if not lo < hi:
            raise ValueError(f"bounds must be increasing (low < high), got [{lo}, {hi}]")
        if self.per == "filters" and not self.filters:
            raise ValueError("per: filters needs a non-empty `filters` list")
        return self


class MethodSpec(_Frozen):
    """The merge method: fixed (a name) or a gene choosing among ``choices``."""

    choices: tuple[str, ...]

    @field_validator("choices")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("method choices must not be empty")
        known = (*METHOD_MODEL_PARAMS, STACKING_METHOD)
        for name in v:
            if name not in known:
                raise ValueError(f"unknown merge method {name!r} (known: {', '.join(known)})")
        if STACKING_METHOD in v and len(v) > 1:
            raise ValueError(f"{STACKING_METHOD} (layer stacking) cannot be one of several method choices")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate merge methods in {list(v)}")
        return v

    @property
    def is_gene(self) -> bool:
        return len(self.choices) > 1


class StackingSpec(_Frozen):
    """Layer stacking, after the data-flow merging of Sakana's evolutionary model merge.

    The models' layers are laid out in one sequence of slots (``models`` in order, each model's
    layers in order; the whole sequence ``repeats`` times). One gene per slot says whether the
    slot's layer is in the output stack (gene > 0.5); the output is those layers, in slot order,
    as a mergekit passthrough of one-layer slices. With ``scale`` bounds, a second gene per slot
    scales the tensors matching ``scale_filters`` (by default o_proj and down_proj: what the layer
    adds to the residual stream), the role of Sakana's scaling of a layer's input. Embeddings come
    from the first slice's model and the final norm/lm_head from the last slice's (mergekit).
    At most ``max_layers`` layers are kept (the slots with the largest genes), and at least one.
    """

    models: tuple[str, ...] = ()
    repeats: int = Field(default=1, ge=1, le=8)
    scale: tuple[float, float] | None = None
    scale_filters: tuple[str, ...] = ("o_proj", "down_proj")
    max_layers: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> StackingSpec:
        if self.scale is not None:
            lo, hi = self.scale
            if not 0 <= lo < hi:
                raise ValueError(f"scale bounds must be increasing and non-negative, got [{lo}, {hi}]")
            if not self.scale_filters:
                raise ValueError("scale needs a non-empty `scale_filters` list")
        return self


class FixedSpec(_Frozen):
    """Values that are not searched: per-model parameters (same for every model) and globals."""

    model_parameters: dict[str, Any] = {}
    parameters: dict[str, Any] = {}


class ObjectiveSpec(_Frozen):
    """One objective: a benchmark estimated from ``k`` items, or a Python function of the recipe.

    Benchmark objectives use the benchmark's ``search`` split during the search (``k`` items chosen
    by the estimator's subset strategy, then the estimator predicts the full-split accuracy) and
    its ``test`` split only at the end. ``function: "module:attr"`` is called with the recipe dict
    (and, for the final re-scoring, ``split="test"``) and returns a score to maximise.
    """

    name: str = Field(min_length=1)
    benchmark: str | None = None
    function: str | None = None
    k: int = Field(default=30, ge=1)
    estimator: str = "default"
    subset: str | None = None
    estimator_params: dict[str, Any] = {}
    #: a response counts only in the target language (True, or the evaluation stage's
    #: LanguageRule fields, e.g. {detector: builtin, min_words: 3}); needs a generative task
    language_fidelity: bool | dict[str, Any] = False
    #: sequential adaptive testing per candidate instead of a fixed subset: each next item is the
    #: most informative at the candidate's current IRT ability (IRT calibrated on the calibration
    #: responses); the estimate is p-IRT (observed items + IRT probabilities for the rest)
    adaptive: bool = False
    #: a fitted estimator card (``frugalmerge estimators fit``) used as is: no calibration, its
    #: selected items must belong to the benchmark's search split
    card: Path | None = None
    #: rotating items instead of an estimator: each candidate is scored on ``rotating`` items of the
    #: search split drawn for it alone (seeded by the run's seed and the recipe), their plain mean:
    #: unbiased but noisy, meant for ``fidelity.surrogate``, which pools every candidate's items
    #: (a fixed subset cannot average out: every candidate shares its quirks). A promotion to k
    #: items scores the first k items of the same per-candidate draw. No calibration, no card.
    rotating: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> ObjectiveSpec:
        if (self.benchmark is None) == (self.function is None):
            raise ValueError(f"objective {self.name!r} needs exactly one of `benchmark` or `function`")
        if self.rotating and (self.benchmark is None or self.card is not None or self.adaptive):
            raise ValueError(f"objective {self.name!r}: rotating items need a benchmark, and exclude "
                             "`card` and `adaptive`")
        if self.function is not None and ":" not in self.function:
            raise ValueError(f"objective {self.name!r}: function must look like 'module:attribute', got {self.function!r}")
        self._check_unused_settings()
        return self

    def non_defaults(self) -> set[str]:
        """Fields whose value is not the default (a saved config.yaml spells every field out, so
        "given" cannot mean "present in the YAML")."""
        return {name for name, field in type(self).model_fields.items()
                if getattr(self, name) != field.get_default(call_default_factory=True)}

    def _check_unused_settings(self) -> None:
        """Settings the chosen mode would ignore are refused rather than dropped without a word
        (``estimator: mpirt`` next to a card of a ``default`` estimator scored with ``default``)."""
        given = self.non_defaults()
        modes = [m for m, on in (("card", self.card is not None), ("adaptive", self.adaptive),
                                 ("rotating", bool(self.rotating))) if on]
        if self.estimator == "full" and modes:
            raise ValueError(f"objective {self.name!r}: estimator: full evaluates the whole search split; "
                             f"it excludes `{modes[0]}`")
        if not modes:
            return
        # A card fixes its estimator and items (the card's own estimator and k are compared with
        # `estimator` and `k` once the card is read); adaptive testing and rotating items use none.
        unused = {"subset", "estimator_params"} | ({"estimator"} if self.card is None else set())
        if self.rotating:
            unused.add("k")
        for key in ("estimator", "subset", "estimator_params", "k"):
            if key in unused and key in given:
                why = {"card": "the card fixes its estimator and items",
                       "adaptive": "adaptive testing estimates by p-IRT on the calibrated 2PL model",
                       "rotating": f"rotating items score each candidate on its own {self.rotating} items"}[modes[0]]
                raise ValueError(f"objective {self.name!r}: `{key}` is not used with `{modes[0]}` ({why}); drop it")


class BenchmarkSpec(_Frozen):
    """A benchmark outside a zoo: its search and test split files and evaluation task settings."""

    search: Path
    test: Path
    task: dict[str, Any] = {}
    language: str | None = None


class AlgorithmSpec(_Frozen):
    """Algorithm name (see :func:`frugalmerge.search.algorithms.algorithm_names`) and options."""

    name: str = "ga"
    pop_size: int = Field(default=8, ge=2)
    options: dict[str, Any] = {}


class BudgetSpec(_Frozen):
    """Stop after ``generations``, or earlier once ``max_items`` items have been evaluated."""

    generations: int = Field(default=10, ge=1)
    max_items: int | None = Field(default=None, ge=1)


class CalibrationSpec(_Frozen):
    """How the estimators are fitted: responses of the sources, the base, the naive average and
    ``random_merges`` seeded random recipes on ``pool`` items of the search split (all of it when ``pool`` is None);
    every one of those item evaluations counts in the run's items evaluated."""

    random_merges: int = Field(default=6, ge=0)
    include_sources: bool = True
    include_base: bool = True
    include_average: bool = True
    pool: int | None = Field(default=None, ge=2)


class PromotionSpec(_Frozen):
    """Multi-fidelity final selection: the ``top`` candidates (by cheap estimate; for several
    objectives, the Pareto set first) are re-estimated on ``k`` items before choosing the best."""

    top: int = Field(default=0, ge=0)
    k: int = Field(default=100, ge=1)
    #: With ``fidelity.surrogate``: the re-estimated values join the surrogate's observations
    #: (replacing those candidates' search-time estimates, with their smaller SE), and the merge
    #: chosen is the argmax of the refitted posterior mean over every candidate, instead of the best
    #: re-estimated value. Why: a re-estimate on ``k`` items is still noisy; the neighbours'
    #: evidence tempers it.
    into_surrogate: bool = False


class FidelitySpec(_Frozen):
    """Multi-fidelity during the search: after each generation's cheap evaluation, the
    ``promote_per_generation`` best new candidates (by estimate; several objectives: by their mean)
    are re-evaluated on ``k`` items (None: the whole calibration pool, i.e. an unbiased pool mean)
    before the optimiser is told; their high-fidelity values replace the cheap ones everywhere.
    Why: an estimator calibrated on sources and random merges saturates above the best model it
    has seen, so the cheap fitness cannot rank the very candidates the search converges to.

    ``racing_z`` (racing): only the new candidates whose estimate + ``racing_z`` standard errors
    reaches the incumbent (the best value of the earlier generations) are promoted, still at most
    ``promote_per_generation``; a generation with no contender promotes none and saves the items."""

    promote_per_generation: int = Field(default=0, ge=0)
    k: int | None = Field(default=None, ge=1)
    racing_z: float | None = Field(default=None, ge=0.0)
    #: ``surrogate`` (a name of :func:`frugalmerge.search.surrogate.surrogate_names`, e.g. ``gp``):
    #: after each generation a smoother is refitted on every evaluated candidate (genotype, estimate,
    #: SE; promoted ones with their high-fidelity estimate) and the optimiser is told each
    #: candidate's posterior mean instead of its own noisy estimate; the final pick is the
    #: candidate with the best posterior mean. Why: near the optimum a 10-item estimate takes a
    #: handful of values, while neighbouring genotypes together tell good from better.
    surrogate: str | None = None
    #: With a surrogate: promote the new candidates with the best posterior mean + ``surrogate_ucb_z``
    #: posterior SDs (an upper confidence bound) instead of the best raw estimates.
    surrogate_ucb_z: float | None = Field(default=None, ge=0.0)
    #: With a surrogate and promotions: choose the final merge among the promoted candidates only
    #: (True) or among every evaluated candidate (False).
    surrogate_pick_promoted: bool = False
    #: With a surrogate: the optimiser is told the posterior means (True), or its own estimates as
    #: without a surrogate, the surrogate then choosing only the final merge (False).
    surrogate_steer: bool = True
    #: With a surrogate: the final pick maximises the posterior mean - ``surrogate_pick_z``
    #: posterior SDs (a lower confidence bound; 0: the posterior mean). Why: a candidate whose
    #: high mean rests on its own noisy estimate alone (few neighbours) is a riskier pick than one
    #: its neighbours vouch for.
    surrogate_pick_z: float = Field(default=0.0, ge=0.0)
    #: With a surrogate that does not steer: the optimiser is told its own estimate plus
    #: ``surrogate_tiebreak`` x the posterior mean (e.g. 0.001), so candidates whose coarse
    #: estimates tie are ordered by the surrogate while any real difference of estimates still wins.
    surrogate_tiebreak: float = Field(default=0.0, ge=0.0)


class FinalSpec(_Frozen):
    """End-of-run work: re-score on the test split, export merges, plot."""

    test: bool = True
    export: Literal["best", "none"] = "best"
    max_pareto_test: int = Field(default=12, ge=1)
    promotion: PromotionSpec = PromotionSpec()


class SearchConfig(_Frozen):
    """A complete, validated search configuration (paths absolute)."""

    name: str = "search"
    seed: int = Field(default=0, ge=0, lt=2**63)  # numpy, python and torch all accept this range
    zoo: Path | None = None
    base_model: str | None = None
    models: dict[str, str]
    method: MethodSpec
    search: dict[str, GeneSpec] = {}
    global_search: dict[str, GeneSpec] = {}
    fixed: FixedSpec = FixedSpec()
    stacking: StackingSpec | None = None
    dtype: str = "float32"
    precision: int = Field(default=3, ge=1, le=8)
    fitness: Literal["cheap", "full"] = "cheap"
    objectives: tuple[ObjectiveSpec, ...]
    benchmarks: dict[str, BenchmarkSpec] = {}
    algorithm: AlgorithmSpec = AlgorithmSpec()
    budget: BudgetSpec = BudgetSpec()
    calibration: CalibrationSpec = CalibrationSpec()
    fidelity: FidelitySpec = FidelitySpec()
    final: FinalSpec = FinalSpec()
    batch_size: int = Field(default=64, ge=1)

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"choices": [v]}
        if isinstance(v, (list, tuple)):
            return {"choices": list(v)}
        return v

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            names = [Path(str(p)).name or str(p) for p in v]
            if len(set(names)) != len(names):
                names = [f"model{i}" for i in range(len(v))]
            return dict(zip(names, (str(p) for p in v)))
        return v

    @property
    def is_multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def objective_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    def to_yaml(self) -> str:
        """The resolved config as YAML (absolute paths); :func:`load_config` reads it back."""
        data = json.loads(self.model_dump_json())
        return yaml.safe_dump(data, sort_keys=False)


def _resolve_path(value: str, root: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (root / p)


def _resolve_models(raw: dict[str, Any], root: Path, zoo_models: dict[str, Path]) -> None:
    """Turn model/base references (path or zoo model name) into existing absolute paths."""

    def resolve(ref: str, what: str) -> str:
        if ref in zoo_models:
            return str(zoo_models[ref])
        path = _resolve_path(ref, root)
        if not path.exists():
            hint = f" (zoo models: {sorted(zoo_models)})" if zoo_models else ""
            raise ConfigError(f"{what}: model path {ref!r} does not exist ({path}){hint}")
        if not (path / "config.json").is_file():
            raise ConfigError(f"{what}: {path} is not a Hugging Face model directory (no config.json)")
        return str(path.resolve())

    models = raw.get("models")
    if isinstance(models, (list, tuple)):
        named: dict[str, Any] = {}
        for m in models:
            name = Path(str(m)).name if str(m) not in zoo_models else str(m)
            if name in named:  # two folders called alike would silently collapse into one model
                raise ConfigError(f"config: models: two entries are named {name!r} ({named[name]!r}, {m!r}); "
                                  "give `models` as a mapping {name: path}")
            named[name] = m
        models = named
    if not isinstance(models, dict) or not models:
        raise ConfigError("config: `models` must list at least one model")
    raw["models"] = {str(name): resolve(str(ref), f"models.{name}") for name, ref in models.items()}
    by_path: dict[str, str] = {}
    for name, path in raw["models"].items():
        if path in by_path:
            raise ConfigError(f"config: models: {by_path[path]!r} and {name!r} are the same model ({path})")
        by_path[path] = name
    if raw.get("base_model") is not None:
        raw["base_model"] = resolve(str(raw["base_model"]), "base_model")


def _zoo_parts(raw: dict[str, Any], root: Path) -> tuple[dict[str, Path], dict[str, Any]]:
    if raw.get("zoo") is None:
        return {}, {}
    from frugalmerge.zoo.manifest import load_zoo

    zoo_dir = _resolve_path(str(raw["zoo"]), root)
    try:
        manifest = load_zoo(zoo_dir)
    except Exception as exc:  # ZooError and friends: one line naming the zoo
        raise ConfigError(f"zoo: {exc}") from None
    raw["zoo"] = str(manifest.root)
    benchmarks = {
        name: {"search": str(b.splits.search), "test": str(b.splits.test), "task": dict(b.task),
               "language": b.language}
        for name, b in manifest.benchmarks.items()
    }
    return dict(manifest.models), benchmarks


def config_from_dict(raw: dict[str, Any], root: str | Path = ".", *, check_paths: bool = True) -> SearchConfig:
    """Validate a config mapping; relative paths are resolved against ``root``."""
    from frugalmerge.search.algorithms import algorithm_names

    if not isinstance(raw, dict):
        raise ConfigError(f"config must be a mapping, got {type(raw).__name__}")
    raw = dict(raw)
    root = Path(root).expanduser().resolve()
    zoo_models, zoo_benchmarks = _zoo_parts(raw, root)
    if check_paths:
        _resolve_models(raw, root, zoo_models)
    own = raw.get("benchmarks") or {}
    if not isinstance(own, dict):
        raise ConfigError(f"config: benchmarks: expected a mapping of name -> {{search, test, task}}, "
                          f"got {type(own).__name__}")
    own = dict(own)
    for name, spec in own.items():
        if isinstance(spec, dict):
            spec = dict(spec)
            for split in ("search", "test"):
                if split in spec:
                    spec[split] = str(_resolve_path(str(spec[split]), root))
            own[name] = spec
    raw["benchmarks"] = {**zoo_benchmarks, **own}
    objectives = raw.get("objectives")
    if isinstance(objectives, (list, tuple)):
        raw["objectives"] = [
            {**o, "card": str(_resolve_path(str(o["card"]), root))} if isinstance(o, dict) and o.get("card") else o
            for o in objectives
        ]
    try:
        cfg = SearchConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        raise ConfigError(f"config: {loc}: {err['msg']}") from None
    _check_semantics(cfg, algorithm_names(), check_paths=check_paths)
    return cfg


def _check_semantics(cfg: SearchConfig, algorithms: list[str], *, check_paths: bool) -> None:
    if not cfg.objectives:
        raise ConfigError("config: objectives: at least one objective is required")
    names = cfg.objective_names
    if len(set(names)) != len(names):
        raise ConfigError(f"config: objectives: duplicate objective names {names}")
    if cfg.algorithm.name not in algorithms:
        raise ConfigError(f"config: algorithm.name: unknown algorithm {cfg.algorithm.name!r} "
                          f"(known: {', '.join(algorithms)})")
    if cfg.fidelity.surrogate is not None:
        from frugalmerge.search.surrogate import surrogate_names

        if cfg.fidelity.surrogate not in surrogate_names():
            raise ConfigError(f"config: fidelity.surrogate: unknown surrogate {cfg.fidelity.surrogate!r} "
                              f"(known: {', '.join(surrogate_names())})")
        if cfg.final.promotion.into_surrogate and not cfg.final.promotion.top:
            raise ConfigError("config: final.promotion.into_surrogate needs final.promotion.top >= 1")
        if cfg.fidelity.surrogate_tiebreak and cfg.fidelity.surrogate_steer:
            raise ConfigError("config: fidelity.surrogate_tiebreak needs surrogate_steer: false (a steering "
                              "surrogate already tells the optimiser its posterior means)")
    elif (cfg.fidelity.surrogate_ucb_z is not None or cfg.fidelity.surrogate_pick_promoted
          or not cfg.fidelity.surrogate_steer or cfg.fidelity.surrogate_pick_z or cfg.fidelity.surrogate_tiebreak
          or cfg.final.promotion.into_surrogate):
        raise ConfigError("config: fidelity.surrogate_ucb_z / surrogate_pick_promoted / surrogate_steer / "
                          "surrogate_pick_z / surrogate_tiebreak, final.promotion.into_surrogate need "
                          "fidelity.surrogate")
    if cfg.method.choices == (STACKING_METHOD,) or cfg.stacking is not None:
        _check_stacking(cfg)
    else:
        _check_merge_parameters(cfg)
    if check_paths:
        from frugalmerge.search.algorithms import check_algorithm
        from frugalmerge.search.space import SearchSpace

        space = SearchSpace(cfg)
        check_algorithm(cfg.algorithm.name, len(cfg.objectives), space.n_var)
        _check_decoded_recipes(space)
        _check_filters(cfg)
    _check_objectives(cfg, check_paths=check_paths)


def _check_decoded_recipes(space: Any) -> None:
    """Decode the corners and the centre of the genotype box and validate them as merge recipes,
    so a value the merge methods refuse (a searched boolean, a fixed density of 5, dtype int7)
    fails here and not inside calibration, after the sources were paid for."""
    import numpy as np
    from pydantic import ValidationError

    from frugalmerge.merging.errors import MergeError
    from frugalmerge.search.space import to_merge_recipe

    for x in (np.zeros(space.n_var), np.full(space.n_var, 0.5), np.ones(space.n_var)):
        try:
            to_merge_recipe(space.decode(x))
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            msg = str(err.get("ctx", {}).get("error") or err["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"config: the merge recipes it decodes to are invalid"
                              f"{' at ' + loc if loc else ''}: {msg}") from None
        except MergeError as exc:
            raise ConfigError(f"config: the merge recipes it decodes to are invalid: {exc}") from None


def _check_filters(cfg: SearchConfig) -> None:
    """Every tensor-name filter of the genes must match a tensor of the models: a filter that
    matches nothing (``self_attn`` on a GPT-2, whose blocks say ``attn``) leaves its genes without
    effect, and the search would spend its budget on dimensions that do nothing."""
    wanted = [(f"{section}.{pname}.filters", f)
              for section, genes in (("search", cfg.search), ("global_search", cfg.global_search))
              for pname, gene in genes.items() if gene.per == "filters" for f in gene.filters]
    model = cfg.base_model or next(iter(cfg.models.values()))
    if cfg.stacking is not None and cfg.stacking.scale is not None:
        wanted += [("stacking.scale_filters", f) for f in cfg.stacking.scale_filters]
        model = cfg.models[(cfg.stacking.models or tuple(cfg.models))[0]]
    wanted = [(where, f) for where, f in wanted if f != "*"]
    if not wanted:
        return
    from frugalmerge.merging.checkpoint import Checkpoint
    from frugalmerge.merging.errors import MergeError

    try:
        names = Checkpoint(model).names
    except MergeError as exc:
        raise ConfigError(f"config: cannot read the tensor names of {model}: {exc}") from None
    for where, f in wanted:
        if not any(f in name for name in names):
            example = next((n for n in names if ".0." in n), names[0] if names else "none")
            raise ConfigError(f"config: {where}: {f!r} matches no tensor of {model} (a filter is a substring of "
                              f"tensor names, e.g. {example!r}); its genes would have no effect")


def _check_merge_parameters(cfg: SearchConfig) -> None:
    if not cfg.search and not cfg.global_search and not cfg.method.is_gene:
        raise ConfigError("config: empty search space: nothing is searched (give `search`, "
                          "`global_search`, several method choices, or `stacking`)")
    used = set().union(*(METHOD_MODEL_PARAMS[m] for m in cfg.method.choices))
    for pname in cfg.search:
        if pname not in used:
            raise ConfigError(f"config: search.{pname}: parameter not used by method(s) "
                              f"{list(cfg.method.choices)} (they use {sorted(used)})")
        if pname in cfg.fixed.model_parameters:
            raise ConfigError(f"config: {pname} is both searched and fixed")
    gused = set().union(*(METHOD_GLOBAL_PARAMS[m] for m in cfg.method.choices))
    for pname in cfg.global_search:
        if pname not in gused:
            raise ConfigError(f"config: global_search.{pname}: parameter not used by method(s) "
                              f"{list(cfg.method.choices)} (they use {sorted(gused)})")
        if pname in cfg.fixed.parameters:
            raise ConfigError(f"config: {pname} is both searched and fixed")
    _check_fixed(cfg, used, gused)
    _check_gene_ranges(cfg)


def _check_fixed(cfg: SearchConfig, used: set[str], gused: set[str]) -> None:
    """A fixed value no chosen method reads would be dropped from every recipe without a word
    (a typo such as ``normalise``, or mergekit's top-level ``density`` default): refused."""
    methods = list(cfg.method.choices)
    for section, names, known, other, where in (
            ("model_parameters", cfg.fixed.model_parameters, used, gused, "parameters"),
            ("parameters", cfg.fixed.parameters, gused, used, "model_parameters")):
        for pname in names:
            if pname in known:
                continue
            hint = (f"; it is a {'global' if section == 'model_parameters' else 'per-model'} parameter: "
                    f"put it under fixed.{where}" if pname in other else f" (they use {sorted(known)})")
            raise ConfigError(f"config: fixed.{section}.{pname}: parameter not used by method(s) {methods}{hint}")


def _check_gene_ranges(cfg: SearchConfig) -> None:
    """Searched bounds inside each method's valid range (e.g. density in [0, 1]): caught here,
    not by the first candidate's recipe after calibration has been paid for."""
    from frugalmerge.merging.methods import get_method

    for section, genes in (("search", cfg.search), ("global_search", cfg.global_search)):
        for pname, gene in genes.items():
            for method in cfg.method.choices:
                spec = get_method(method).params.get(pname)
                if spec is None or spec.lo is None or spec.hi is None:
                    continue
                lo, hi = gene.bounds
                if lo < spec.lo or hi > spec.hi:
                    raise ConfigError(f"config: {section}.{pname}: bounds [{lo}, {hi}] leave {method}'s valid "
                                      f"range [{spec.lo}, {spec.hi}]")
    if any(m in NEEDS_BASE for m in cfg.method.choices) and cfg.base_model is None:
        raise ConfigError(f"config: base_model is required by method(s) "
                          f"{sorted(m for m in cfg.method.choices if m in NEEDS_BASE)}")


def _check_stacking(cfg: SearchConfig) -> None:
    if cfg.method.choices != (STACKING_METHOD,):
        raise ConfigError(f"config: stacking: needs `method: {STACKING_METHOD}` "
                          f"(got {list(cfg.method.choices)})")
    if cfg.stacking is None:
        raise ConfigError(f"config: method {STACKING_METHOD} needs a `stacking:` section (which layers to stack)")
    if cfg.search or cfg.global_search:
        raise ConfigError("config: stacking: `search`/`global_search` parameters do not apply to layer "
                          "stacking (its genes are the stacking slots)")
    if cfg.fixed.model_parameters or cfg.fixed.parameters:
        raise ConfigError("config: stacking: `fixed` merge parameters do not apply to layer stacking "
                          "(a passthrough copies layers; scale them with stacking.scale)")
    for name in cfg.stacking.models:
        if name not in cfg.models:
            raise ConfigError(f"config: stacking.models: unknown model {name!r} (models: {sorted(cfg.models)})")


def _check_objectives(cfg: SearchConfig, *, check_paths: bool) -> None:
    for obj in cfg.objectives:
        if obj.benchmark is not None:
            if obj.benchmark not in cfg.benchmarks:
                known = ", ".join(sorted(cfg.benchmarks)) or "none defined"
                raise ConfigError(f"config: objective {obj.name!r}: unknown benchmark {obj.benchmark!r} "
                                  f"(known: {known})")
            if check_paths:
                spec = cfg.benchmarks[obj.benchmark]
                for split in ("search", "test"):
                    path = getattr(spec, split)
                    if not Path(path).is_file():
                        raise ConfigError(f"config: benchmark {obj.benchmark!r}: {split} split {path} does not exist")
            _check_estimator(obj)
            if obj.card is not None and check_paths and not (Path(obj.card) / "card.json").is_file():
                raise ConfigError(f"config: objective {obj.name!r}: no estimator card at {obj.card} (no card.json)")
            if obj.card is not None and check_paths:
                # A broken card fails here, not after the other objectives' calibration was paid for.
                from frugalmerge.estimators import EstimatorError, load_card

                try:
                    _, card = load_card(obj.card)
                except EstimatorError as exc:
                    raise ConfigError(f"config: objective {obj.name!r}: card {obj.card}: {exc}") from None
                _check_card_agrees(obj, card)
            if obj.language_fidelity:
                try:
                    objective_task(obj, cfg.benchmarks[obj.benchmark])
                except ValueError as exc:
                    msg = " ".join(str(exc).split())
                    raise ConfigError(f"config: objective {obj.name!r}: language_fidelity: {msg}") from None
        else:
            resolve_function(obj.function or "", obj.name)


def _check_card_agrees(obj: ObjectiveSpec, card: dict[str, Any]) -> None:
    """An `estimator` or `k` given next to a card must be the card's (else the config says one
    thing and the run does another). With `adaptive`, k is the test length, not the card's."""
    given = obj.non_defaults()
    if "estimator" in given and obj.estimator != card["estimator"]:
        raise ConfigError(f"config: objective {obj.name!r}: estimator {obj.estimator!r}, but card {obj.card} holds "
                          f"a fitted {card['estimator']!r} estimator (drop `estimator`: the card's is used)")
    if "k" in given and not obj.adaptive and obj.k != len(card["selected_item_ids"]):
        raise ConfigError(f"config: objective {obj.name!r}: k = {obj.k}, but card {obj.card} selects "
                          f"{len(card['selected_item_ids'])} items (drop `k`: the card's items are used)")


def objective_task(obj: ObjectiveSpec, bench: BenchmarkSpec) -> Any:
    """The evaluation task of an objective: the benchmark's task settings plus, with
    ``language_fidelity``, a language rule (a TaskSpec, validated; None = the loader's default)."""
    if not obj.language_fidelity:
        return dict(bench.task) or None
    from frugalmerge.evaluation import TaskSpec

    rule = obj.language_fidelity if isinstance(obj.language_fidelity, dict) else {}
    task = dict(bench.task or {"type": "generative_exact"})
    return TaskSpec.model_validate({**task, "language_rule": rule})


def _check_estimator(obj: ObjectiveSpec) -> None:
    if obj.estimator == "full":
        return
    try:
        from frugalmerge.estimators import estimator_names
    except ImportError:  # estimators not installed: checked again when fitting
        return
    known = estimator_names()
    if obj.estimator not in known:
        raise ConfigError(f"config: objective {obj.name!r}: unknown estimator {obj.estimator!r} "
                          f"(known: {', '.join(known)})")
    # Parameters and subset names fail here, not after the calibration responses were paid for.
    from frugalmerge.estimators import EstimatorError, make_estimator
    from frugalmerge.subsets import SUBSETS  # the package import registers every strategy

    try:
        make_estimator(obj.estimator, **obj.estimator_params)
    except EstimatorError as exc:
        raise ConfigError(f"config: objective {obj.name!r}: estimator_params: {exc}") from None
    for subset in (obj.subset, obj.estimator_params.get("subset")):
        if subset is not None and subset not in SUBSETS:
            raise ConfigError(f"config: objective {obj.name!r}: unknown subset strategy {subset!r} "
                              f"(known: {', '.join(sorted(SUBSETS))})")


def resolve_function(spec: str, objective: str) -> Any:
    """Import ``module:attr`` (a function objective); :class:`ConfigError` when it cannot."""
    import importlib

    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        fn = getattr(module, attr)
    except (ImportError, AttributeError, ValueError, SyntaxError) as exc:  # ValueError: ':fn' (no module)
        raise ConfigError(f"config: objective {objective!r}: cannot import function {spec!r}: "
                          f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:  # the module's own code failed while importing
        raise ConfigError(f"config: objective {objective!r}: importing {module_name!r} failed: "
                          f"{type(exc).__name__}: {exc}") from None
    if not callable(fn):
        raise ConfigError(f"config: objective {objective!r}: {spec!r} is not callable")
    return fn


def load_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> SearchConfig:
    """Read and validate a YAML config file (relative paths against its directory)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = safe_load_unique(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: {yaml_error_text(exc)}") from None
    if raw is None:
        raise ConfigError(f"config file {path} is empty")
    if overrides:
        raw = {**raw, **overrides}
    return config_from_dict(raw, path.parent)

"""Fitness: objectives of a candidate recipe, cheap (subset + estimator) or full.

Objective kinds live in a registry (``@register_objective``):

* ``benchmark`` - the candidate is materialised in place by the merge engine, evaluated on the
  ``k`` items its estimator selected from the benchmark's SEARCH split, and the estimator predicts
  its accuracy on the whole search split (``estimator: full`` evaluates every search item instead).
  How the estimator is fitted (:meth:`BenchmarkObjective.calibrate`): before the search, the
  sources, the base, the naive average and ``calibration.random_merges`` seeded random recipes of the search space are
  evaluated on the calibration pool (the whole search split, or ``calibration.pool`` seeded random
  items of it); the estimator is fitted on that response matrix (target = each model's pool mean)
  with ``k`` and the run's seed. Every one of those item evaluations counts in the run's items.
* ``function`` - ``module:attr`` called with the recipe dict and ``split`` ("search"/"test"),
  returning a score to maximise, or a (score, standard error) pair (1 item per call); for custom or
  synthetic objectives.

The TEST split is only touched by :meth:`Objective.test_score`, at the end of a run.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from frugalmerge.search.config import ObjectiveSpec, SearchConfig, resolve_function
from frugalmerge.search.errors import SearchError
from frugalmerge.search.space import SearchSpace


@dataclass(frozen=True)
class Score:
    """One objective's value for one candidate: estimate, standard error, items it cost."""

    value: float
    se: float
    items: int


@dataclass(frozen=True)
class TestScore:
    """True accuracy on the held-out test split: mean, standard error, number of items."""

    acc: float
    se: float
    n: int


def binomial_se(p: float, n: int) -> float:
    """Standard error of a mean of ``n`` scores in [0, 1] with mean ``p``."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / max(n, 1))


# --- the live model -------------------------------------------------------------------------------

class ModelHost:
    """Owns the merge engine and the one live module; materialises each recipe once in a row."""

    def __init__(self, config: SearchConfig) -> None:
        self.config = config
        self._engine: Any = None
        self._current: str | None = None
        self._model: Any = None
        self.seed = config.seed

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from transformers.utils import logging as hf_logging

            from frugalmerge.merging import MergeEngine

            # One progress bar per run is ours; transformers' per-load bars would drown it.
            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()

            self._engine = MergeEngine(list(self.config.models.values()), self.config.base_model, device="cpu",
                                       verbose=False)
        return self._engine

    @property
    def tokenizer(self) -> Any:
        return self.engine.tokenizer

    def model_for(self, recipe: dict[str, Any], key: str) -> Any:
        """The live module holding ``recipe``'s merged weights (materialised unless already there)."""
        from frugalmerge.search.space import to_merge_recipe

        if key != self._current:
            self._current = None  # a failure half-way must not leave a stale key
            self._model = self.engine.materialize(to_merge_recipe(recipe), seed=self.seed)
            self._current = key
        return self._model


def source_recipe(config: SearchConfig, name: str) -> dict[str, Any]:
    """A recipe equal to source model ``name`` (linear, weight 1 on it, 0 on the others)."""
    return {
        "merge_method": "linear",
        "models": [{"model": path, "parameters": {"weight": 1.0 if m == name else 0.0}}
                   for m, path in config.models.items()],
        "parameters": {"normalize": False},
        "dtype": config.dtype,
    }


def base_recipe(config: SearchConfig) -> dict[str, Any]:
    """A recipe equal to the base model (task arithmetic with every weight 0)."""
    return {
        "merge_method": "task_arithmetic",
        "base_model": config.base_model,
        "models": [{"model": path, "parameters": {"weight": 0.0}} for path in config.models.values()],
        "dtype": config.dtype,
    }


# --- objectives ------------------------------------------------------------------------------------

class Objective(ABC):
    """Base class: ``evaluate`` (search-time estimate) and ``test_score`` (end of run)."""

    def __init__(self, spec: ObjectiveSpec, config: SearchConfig, host: ModelHost) -> None:
        self.spec = spec
        self.config = config
        self.host = host

    @property
    def name(self) -> str:
        return self.spec.name

    def calibrate(self, recipes: list[tuple[str, dict[str, Any], str]]) -> int:
        """Fit whatever the objective needs before the search; returns items evaluated."""
        return 0

    def state(self) -> dict[str, Any]:
        """Picklable fitted state (restored on resume instead of calibrating again)."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state`."""

    @abstractmethod
    def evaluate(self, recipe: dict[str, Any], key: str) -> Score:
        """The search-time score of ``recipe`` (``key``: its cache key)."""

    @abstractmethod
    def test_score(self, recipe: dict[str, Any], key: str) -> TestScore:
        """The true score on the held-out test split (end of run only)."""

    def full_items(self) -> int:
        """Items one candidate costs with full-benchmark fitness."""
        return 1

    def promote(self, recipe: dict[str, Any], key: str, k: int) -> Score:
        """A higher-fidelity estimate (multi-fidelity); by default the same as :meth:`evaluate`."""
        return self.evaluate(recipe, key)

    def describe(self) -> str:
        return self.name

    def check(self) -> None:
        """Validate inputs before any work (raise :class:`ConfigError`)."""


OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(kind: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator adding an objective kind."""

    def deco(cls: type[Objective]) -> type[Objective]:
        OBJECTIVES[kind] = cls
        return cls

    return deco


@register_objective("function")
class FunctionObjective(Objective):
    """``module:attr(recipe, split=...) -> float``; counts one item per call."""

    def __init__(self, spec: ObjectiveSpec, config: SearchConfig, host: ModelHost) -> None:
        super().__init__(spec, config, host)
        self.fn = resolve_function(spec.function or "", spec.name)

    def _call(self, recipe: dict[str, Any], split: str) -> tuple[float, float]:
        """The function's (value, standard error): it returns a score, or a (score, se) pair.
        Anything else (a failure, a NaN that would poison the optimiser and best.json, a negative
        SE) is one :class:`SearchError` naming the function."""
        where = f"objective {self.name!r}: {self.spec.function}"
        try:
            out = self.fn(recipe, split=split)
        except Exception as exc:  # the user's function failed: one line, not a traceback
            raise SearchError(f"{where} raised {type(exc).__name__}: {exc}") from None
        pair = isinstance(out, (tuple, list))
        if pair and len(out) != 2:
            raise SearchError(f"{where} must return a score or a (score, se) pair, got {len(out)} values")
        raw_value, raw_se = (out[0], out[1]) if pair else (out, 0.0)
        try:
            value, se = float(raw_value), float(raw_se)
        except (TypeError, ValueError):
            raise SearchError(f"{where} must return numbers, got {out!r}") from None
        if not (math.isfinite(value) and math.isfinite(se)) or se < 0:
            raise SearchError(f"{where} returned {out!r}: the score must be finite and the SE finite and >= 0")
        return value, se

    def evaluate(self, recipe: dict[str, Any], key: str) -> Score:
        return Score(*self._call(recipe, "search"), 1)

    def test_score(self, recipe: dict[str, Any], key: str) -> TestScore:
        return TestScore(*self._call(recipe, "test"), 1)

    def describe(self) -> str:
        return f"{self.name}: function {self.spec.function}"


@register_objective("benchmark")
class BenchmarkObjective(Objective):
    """A benchmark: cheap (k items + estimator) or full (every search item) accuracy."""

    def __init__(self, spec: ObjectiveSpec, config: SearchConfig, host: ModelHost) -> None:
        super().__init__(spec, config, host)
        self.bench_spec = config.benchmarks[spec.benchmark or ""]
        self._search: Any = None
        self._test: Any = None
        self.full = config.fitness == "full" or spec.estimator == "full"
        self.estimator: Any = None
        self.items: list[str] = []
        self.pool: list[str] = []
        self.calibration: dict[str, Any] = {}
        self._promoted: dict[int, Any] = {}
        self._card_estimator: tuple[str, dict[str, Any]] = (spec.estimator, {})
        #: Task settings the card's responses were scored with (e.g. graded token probabilities);
        #: the card's items are scored the same way, the full split and the test split stay 0/1.
        self.scoring: dict[str, Any] = {}
        self._estimate_bench: Any = None
        self._card_ready = False

    # data
    def _load(self, split: str) -> Any:
        from frugalmerge.evaluation import load_benchmark

        from frugalmerge.search.config import objective_task

        path = getattr(self.bench_spec, split)
        return load_benchmark(path, task=objective_task(self.spec, self.bench_spec),
                              name=f"{self.spec.benchmark}:{split}", language=self.bench_spec.language)

    @property
    def search_bench(self) -> Any:
        if self._search is None:
            self._search = self._load("search")
        return self._search

    @property
    def estimate_bench(self) -> Any:
        """The search split as the estimator reads it: scored like the card's training responses."""
        if not self.scoring:
            return self.search_bench
        if self._estimate_bench is None:
            self._estimate_bench = self._scored_bench(self.scoring)
        return self._estimate_bench

    def _scored_bench(self, scoring: dict[str, Any]) -> Any:
        """The search split with the card's scoring settings applied to its task."""
        try:
            task = self.search_bench.task.with_overrides(scoring)
        except ValueError as exc:
            msg = " ".join(str(exc).split())
            raise SearchError(f"objective {self.name!r}: card {self.spec.card} was scored with {scoring}, which "
                              f"benchmark {self.spec.benchmark!r} cannot use: {msg}") from None
        return self.search_bench.with_task(task)

    @property
    def test_bench(self) -> Any:
        if self._test is None:
            self._test = self._load("test")
        return self._test

    def full_items(self) -> int:
        return len(self.search_bench.items)

    def check(self) -> None:
        """Load both splits now, so a malformed benchmark fails before any model work."""
        from frugalmerge.search.errors import ConfigError

        for split in ("search", "test"):
            try:
                getattr(self, f"{split}_bench")
            except Exception as exc:  # BenchmarkFormatError and friends: one line naming the file
                msg = " ".join(str(exc).split())
                raise ConfigError(f"objective {self.name!r}: cannot load the {split} split of benchmark "
                                  f"{self.spec.benchmark!r}: {msg}") from None
        if self.full:
            return
        if self.spec.card is not None:
            # The card's items, scoring and training data are checked against the split now, not
            # after the other objectives' calibration was paid for.
            self._load_card([item.id for item in self.search_bench.items])
            if self.spec.adaptive:
                self._adaptive_from_card()
                if self.spec.k > len(self.pool):
                    raise ConfigError(f"objective {self.name!r}: k = {self.spec.k} exceeds the {len(self.pool)} "
                                      f"items of card {self.spec.card}'s training responses (the adaptive "
                                      "test's pool); lower it")
            self._card_ready = True
            return
        # Rotating items draw from the whole split; an estimator (and adaptive testing) from the
        # calibration pool.
        cap = None if self.spec.rotating else self.config.calibration.pool
        n_items = len(self.search_bench.items)
        pool = n_items if cap is None else min(cap, n_items)
        where = f"the {n_items} items of the search split of {self.spec.benchmark!r}" + (
            f" (calibration.pool: {cap})" if pool < n_items else "")
        wanted = ("rotating", self.spec.rotating) if self.spec.rotating else ("k", self.spec.k)
        if wanted[1] > pool:
            raise ConfigError(f"objective {self.name!r}: {wanted[0]} = {wanted[1]} exceeds the {pool} items it "
                              f"can draw from, {where}; lower it, or use `estimator: full` to score them all")

    def _responses(self, bench: Any, recipe: dict[str, Any], key: str, item_ids: list[str] | None) -> dict[str, float]:
        from frugalmerge.evaluation import evaluate

        model = self.host.model_for(recipe, key)
        return evaluate(model, self.host.tokenizer, bench, item_ids, batch_size=self.config.batch_size)

    @property
    def needs_calibration(self) -> bool:
        return not self.full and self.spec.card is None and not self.spec.rotating

    def _rotation(self, key: str, n: int) -> list[str]:
        """The first ``n`` items of candidate ``key``'s own random order of the pool (seeded by the
        run's seed and the recipe key: the same candidate always gets the same items)."""
        rng = np.random.default_rng([self.config.seed, 15485863, int(key[:15], 16)])
        order = rng.permutation(len(self.pool))[: min(n, len(self.pool))]
        return [self.pool[i] for i in sorted(order)]

    def _rotating_score(self, recipe: dict[str, Any], key: str, n: int) -> Score:
        items = self._rotation(key, n)
        resp = self._responses(self.search_bench, recipe, key, items)
        hits = float(sum(resp[i] for i in items))
        # SE from the add-one smoothed rate: an estimate of 0 or 1 correct still has noise
        p = (hits + 1.0) / (len(items) + 2.0)
        return Score(hits / len(items), binomial_se(p, len(items)), len(items))

    def _load_card(self, all_ids: list[str]) -> None:
        from frugalmerge.estimators import load_card
        from frugalmerge.estimators.card import load_card_responses
        from frugalmerge.estimators.errors import CardError

        est, card = load_card(self.spec.card)
        self._set_scoring(dict(card.get("scoring") or {}))
        known = set(all_ids)
        missing = [i for i in est.selected_items_ if i not in known]
        if missing:
            raise SearchError(f"objective {self.name!r}: card {self.spec.card} selects item {missing[0]!r}, "
                              f"which is not in the search split of {self.spec.benchmark!r}")
        self.estimator = est
        self.items = list(est.selected_items_)
        self.pool = all_ids
        self._card_estimator = (str(card["estimator"]), dict(card.get("params") or {}))
        # A card that ships its training responses (``frugalmerge zoo cards``) doubles as free
        # calibration data: promotions refit the card's estimator at a larger k on it.
        try:
            data = load_card_responses(self.spec.card, card)
        except CardError as exc:
            raise SearchError(f"objective {self.name!r}: {exc}") from None
        if data is not None:
            outside = [i for i in data.item_ids if i not in known]
            if outside:
                raise SearchError(f"objective {self.name!r}: the training responses of card {self.spec.card} "
                                  f"have item {outside[0]!r}, which is not in the search split of "
                                  f"{self.spec.benchmark!r}")
            self.pool = list(data.item_ids)
            self.calibration = {"models": list(data.model_ids), "values": np.asarray(data.values),
                                "pool": list(data.item_ids), "means": data.full_scores()}

    def _set_scoring(self, scoring: dict[str, Any]) -> None:
        """Adopt a card's scoring settings (checked against the benchmark's task type)."""
        allowed = {"graded", "graded_measure"}
        unknown = sorted(set(scoring) - allowed)
        if unknown:
            raise SearchError(f"objective {self.name!r}: card {self.spec.card} has unknown scoring setting "
                              f"{unknown[0]!r} (known: {', '.join(sorted(allowed))})")
        if scoring and self.spec.adaptive:
            raise SearchError(f"objective {self.name!r}: adaptive testing needs a card of 0/1 responses; card "
                              f"{self.spec.card} holds graded ones ({scoring})")
        self._estimate_bench = self._scored_bench(scoring) if scoring else None
        self.scoring = scoring

    def _adaptive_from_card(self) -> None:
        """``adaptive`` with a card: the 2PL IRT model of the sequential test is calibrated on the
        card's training responses (free: paid when the card was built), over the card's pool."""
        from frugalmerge.estimators.irt import calibrate

        if not self.calibration:
            raise SearchError(f"objective {self.name!r}: adaptive testing with card {self.spec.card} needs the "
                              "card's training responses (a card written by `frugalmerge zoo cards`)")
        self.estimator = calibrate(self.calibration["values"], tuple(self.calibration["pool"]))
        self.items = list(self.calibration["pool"])

    def _estimator_spec(self) -> tuple[str, dict[str, Any]]:
        """(estimator name, constructor params) of this objective: the card's, or the config's."""
        if self.spec.card is not None:
            return self._card_estimator
        params = dict(self.spec.estimator_params)
        if self.spec.subset is not None:
            params["subset"] = self.spec.subset
        return self.spec.estimator, params

    # calibration
    def calibrate(self, recipes: list[tuple[str, dict[str, Any], str]]) -> int:
        """Evaluate ``recipes`` (name, recipe, key) on the pool and fit the estimator."""
        all_ids = [item.id for item in self.search_bench.items]
        if self.full:
            self.items = all_ids
            return 0
        if self.spec.rotating:
            self.pool, self.items = all_ids, []
            return 0
        if self.spec.card is not None:
            if not self._card_ready:  # check() read it already
                self._load_card(all_ids)
                if self.spec.adaptive:
                    self._adaptive_from_card()
            return 0
        from frugalmerge.estimators import ResponseMatrix, make_estimator

        pool_size = self.config.calibration.pool
        if pool_size is not None and pool_size < len(all_ids):
            rng = np.random.default_rng([self.config.seed, 7919])
            self.pool = sorted(rng.choice(all_ids, size=pool_size, replace=False).tolist(), key=all_ids.index)
        else:
            self.pool = all_ids
        if len(recipes) < 2:
            raise SearchError(f"objective {self.name!r}: the estimator needs at least 2 calibration models "
                              "(sources, base or calibration.random_merges)")
        rows = []
        for _, recipe, key in recipes:
            resp = self._responses(self.search_bench, recipe, key, self.pool)
            rows.append([resp[i] for i in self.pool])
        values = np.asarray(rows, dtype=np.float64)
        matrix = ResponseMatrix(values=values, model_ids=tuple(n for n, _, _ in recipes),
                                item_ids=tuple(self.pool), name=f"calibration:{self.name}")
        self.calibration = {"models": [n for n, _, _ in recipes], "values": values,
                            "pool": list(self.pool), "means": values.mean(axis=1)}
        if self.spec.adaptive:
            from frugalmerge.estimators.irt import calibrate

            self.estimator = calibrate(values, tuple(self.pool))  # IRT item parameters
            self.items = list(self.pool)
            return int(values.size)
        name, params = self._estimator_spec()
        est = make_estimator(name, **params)
        # MERGE³-style estimators (mpirt, gmpirt) combine the endpoint models' abilities.
        endpoints = [n for n, _, _ in recipes if n.startswith("source:")]
        est.fit(matrix, k=min(self.spec.k, len(self.pool)), seed=self.config.seed,
                **({"endpoints": endpoints} if len(endpoints) >= 2 else {}))
        self.estimator = est
        self.items = list(est.selected_items_)
        return int(values.size)

    def state(self) -> dict[str, Any]:
        return {"estimator": self.estimator, "items": self.items, "pool": self.pool,
                "calibration": self.calibration, "card_estimator": self._card_estimator,
                "scoring": self.scoring}

    def restore(self, state: dict[str, Any]) -> None:
        self.estimator = state["estimator"]
        self.items = list(state["items"])
        self.pool = list(state["pool"])
        self.calibration = dict(state["calibration"])
        self._card_estimator = state.get("card_estimator", self._card_estimator)
        self.scoring = dict(state.get("scoring") or {})
        self._estimate_bench = None

    # scoring
    def _estimate(self, estimator: Any, items: list[str], resp: dict[str, float]) -> tuple[float, float]:
        from frugalmerge.estimators import ResponseMatrix

        row = np.asarray([[resp[i] for i in items]], dtype=np.float64)
        obs = ResponseMatrix(values=row, model_ids=("candidate",), item_ids=tuple(items))
        est = estimator.predict(obs)
        return float(est.score[0]), float(est.se[0])

    def _adaptive(self, recipe: dict[str, Any], key: str, k: int) -> Score:
        """Sequential adaptive test of ``k`` items, then the p-IRT estimate of the pool mean."""
        from frugalmerge.estimators.irt import estimate_ability
        from frugalmerge.subsets import AdaptiveSession

        params = self.estimator
        session = AdaptiveSession(params)
        for _ in range(min(k, len(self.pool))):
            item = session.next_item()
            session.record(item, self._responses(self.search_bench, recipe, key, [item])[item])
        cols = np.asarray(session.asked)
        theta, sd = estimate_ability(params, np.asarray([session.scores]), cols)
        unasked = np.ones(len(self.pool), dtype=bool)
        unasked[cols] = False

        def pool_mean(t: np.ndarray) -> float:
            p = params.prob(t)[0]
            return float((np.sum(session.scores) + p[unasked].sum()) / len(self.pool))

        value = pool_mean(theta)
        # SE: the pool mean's spread over +-1 posterior SD of the ability.
        se = abs(pool_mean(theta + sd) - pool_mean(theta - sd)) / 2.0
        return Score(value, se, len(cols))

    def evaluate(self, recipe: dict[str, Any], key: str) -> Score:
        if self.spec.adaptive and not self.full:
            return self._adaptive(recipe, key, self.spec.k)
        if self.spec.rotating and not self.full:
            return self._rotating_score(recipe, key, self.spec.rotating)
        if self.full or self.estimator is None:
            resp = self._responses(self.search_bench, recipe, key, self.items)
            mean = float(np.mean([resp[i] for i in self.items]))
            return Score(mean, binomial_se(mean, len(self.items)), len(self.items))
        resp = self._responses(self.estimate_bench, recipe, key, self.items)
        value, se = self._estimate(self.estimator, self.items, resp)
        return Score(value, se, len(self.items))

    def promote(self, recipe: dict[str, Any], key: str, k: int) -> Score:
        """Re-estimate on ``k`` items (an estimator refitted with k on the calibration data)."""
        if self.spec.rotating and not self.full:
            return self._rotating_score(recipe, key, max(k, self.spec.rotating))
        if self.full or self.estimator is None:
            return self.evaluate(recipe, key)
        if self.spec.adaptive and k < len(self.pool):
            return self._adaptive(recipe, key, k)
        if self.spec.card is not None and not self.calibration and k < len(self.pool):
            return self.evaluate(recipe, key)  # a card without its training data cannot be refitted at k
        if k <= len(self.items) and not self.spec.adaptive:
            return self.evaluate(recipe, key)
        if k >= len(self.pool):
            resp = self._responses(self.search_bench, recipe, key, self.pool)
            mean = float(np.mean([resp[i] for i in self.pool]))
            return Score(mean, binomial_se(mean, len(self.pool)), len(self.pool))
        if k not in self._promoted:
            from frugalmerge.estimators import ResponseMatrix, make_estimator

            cal = self.calibration
            matrix = ResponseMatrix(values=cal["values"], model_ids=tuple(cal["models"]),
                                    # graded responses: their 0/1 search-split accuracy is a separate target
                                    item_ids=tuple(cal["pool"]), target=cal["means"] if self.scoring else None,
                                    name=f"calibration:{self.name}")
            name, params = self._estimator_spec()
            endpoints = [n for n in cal["models"] if n.startswith("source:")]
            est = make_estimator(name, **params).fit(
                matrix, k=k, seed=self.config.seed, **({"endpoints": endpoints} if len(endpoints) >= 2 else {}))
            self._promoted[k] = est
        est = self._promoted[k]
        items = list(est.selected_items_)
        resp = self._responses(self.estimate_bench, recipe, key, items)
        value, se = self._estimate(est, items, resp)
        return Score(value, se, len(items))

    def test_score(self, recipe: dict[str, Any], key: str) -> TestScore:
        resp = self._responses(self.test_bench, recipe, key, None)
        vals = np.asarray(list(resp.values()), dtype=np.float64)
        mean = float(vals.mean())
        return TestScore(mean, float(vals.std(ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else 0.0, len(vals))

    def describe(self) -> str:
        if self.full:
            return f"{self.name}: benchmark {self.spec.benchmark}, full search split ({len(self.items)} items)"
        if self.spec.card is not None and self.spec.adaptive:
            return (f"{self.name}: benchmark {self.spec.benchmark}, sequential adaptive test of {self.spec.k} "
                    f"of {len(self.pool)} items (2PL IRT on the training responses of card {self.spec.card})")
        if self.spec.card is not None:
            return (f"{self.name}: benchmark {self.spec.benchmark}, estimator card {self.spec.card} "
                    f"({len(self.items)} items)")
        if self.spec.rotating:
            return (f"{self.name}: benchmark {self.spec.benchmark}, {self.spec.rotating} rotating items per "
                    f"candidate of {len(self.pool)} (plain mean)")
        if self.spec.adaptive:
            return (f"{self.name}: benchmark {self.spec.benchmark}, sequential adaptive test of {self.spec.k} "
                    f"of {len(self.pool)} pool items (2PL IRT, p-IRT estimate)")
        return (f"{self.name}: benchmark {self.spec.benchmark}, estimator {self.spec.estimator} on "
                f"{len(self.items)} of {len(self.pool)} pool items")


def make_objective(spec: ObjectiveSpec, config: SearchConfig, host: ModelHost) -> Objective:
    """Instantiate the objective kind of ``spec``."""
    kind = "function" if spec.function is not None else "benchmark"
    return OBJECTIVES[kind](spec, config, host)


@dataclass
class Fitness:
    """All objectives of a run plus the shared live model."""

    config: SearchConfig
    space: SearchSpace
    host: ModelHost
    objectives: list[Objective] = field(default_factory=list)

    @classmethod
    def build(cls, config: SearchConfig, space: SearchSpace) -> Fitness:
        host = ModelHost(config)
        objectives = [make_objective(s, config, host) for s in config.objectives]
        for objective in objectives:
            objective.check()
        return cls(config, space, host, objectives)

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def needs_models(self) -> bool:
        return any(isinstance(o, BenchmarkObjective) for o in self.objectives)

    def calibration_recipes(self) -> list[tuple[str, dict[str, Any], str]]:
        """(name, recipe, key) of the models the estimators are fitted on (see module docstring)."""
        from frugalmerge.search.space import recipe_key

        cal = self.config.calibration
        out: list[tuple[str, dict[str, Any]]] = []
        if cal.include_sources:
            out += [(f"source:{m}", source_recipe(self.config, m)) for m in self.config.models]
        if cal.include_base and self.config.base_model is not None:
            out.append(("base", base_recipe(self.config)))
        if cal.include_average and len(self.config.models) > 1:
            from frugalmerge.search.space import average_recipe

            out.append(("average", average_recipe(self.config)))
        rng = np.random.default_rng([self.config.seed, 104729])
        for i, x in enumerate(self.space.random(rng, cal.random_merges)):
            out.append((f"random:{i}", self.space.decode(x)))
        return [(n, r, recipe_key(r)) for n, r in out]

    def calibrate(self) -> int:
        """Fit every objective's estimator; returns items evaluated."""
        if not any(isinstance(o, BenchmarkObjective) and o.needs_calibration for o in self.objectives):
            for o in self.objectives:
                o.calibrate([])
            return 0
        import warnings

        recipes = self.calibration_recipes()
        with warnings.catch_warnings():
            # k-means on a few calibration models often finds duplicate points; harmless here.
            warnings.filterwarnings("ignore", message="Number of distinct clusters")
            return sum(o.calibrate(recipes) for o in self.objectives)

    def state(self) -> dict[str, Any]:
        return {o.name: o.state() for o in self.objectives}

    def restore(self, state: dict[str, Any]) -> None:
        for o in self.objectives:
            o.restore(state.get(o.name, {}))

    def evaluate(self, recipe: dict[str, Any], key: str) -> tuple[dict[str, Score], float]:
        """Every objective's score for ``recipe`` and the seconds it took."""
        t0 = time.perf_counter()
        scores = {o.name: o.evaluate(recipe, key) for o in self.objectives}
        return scores, time.perf_counter() - t0

    def promote(self, recipe: dict[str, Any], key: str, k: int | None) -> dict[str, Score]:
        """Every objective's higher-fidelity score (``k`` None: the whole calibration pool)."""
        return {o.name: o.promote(recipe, key, k if k is not None else 10**9) for o in self.objectives}

    def full_items(self) -> int:
        """Items one candidate costs with full-benchmark fitness (all objectives)."""
        return sum(o.full_items() for o in self.objectives)

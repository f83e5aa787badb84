"""The algorithm registry: every optimiser behind one ask/tell interface over the box [0, 1]^n.

``make_algorithm(name, n_var, n_obj, pop_size, seed, options)`` returns an :class:`Optimizer`:
``ask()`` gives the next genotypes, ``tell(X, F)`` reports their objective values (MINIMISED;
the loop passes negated accuracies). Optimisers are plain picklable objects (dill), so the loop
can checkpoint them after every generation and resume exactly.

Registered: ``ga``, ``de``, ``cmaes`` (the ``cma`` package's ask/tell: pymoo's ``CMAES`` cannot be
resumed after unpickling), ``nsga2``, ``nsga3`` and ``random`` (the baseline).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from frugalmerge.search.errors import ConfigError


class Optimizer(Protocol):
    """What the search loop drives."""

    def ask(self) -> np.ndarray:  # (n, n_var) genotypes in [0, 1]
        ...

    def tell(self, X: np.ndarray, F: np.ndarray) -> None:  # F: (n, n_obj), minimised
        ...


@dataclass(frozen=True)
class AlgorithmInfo:
    """A registry entry: the factory and which objective counts it handles."""

    name: str
    factory: Callable[..., Optimizer]
    multi_objective: bool
    single_objective: bool
    description: str


ALGORITHMS: dict[str, AlgorithmInfo] = {}


def register_algorithm(name: str, *, single: bool = True, multi: bool = False,
                       description: str = "") -> Callable[[Callable[..., Optimizer]], Callable[..., Optimizer]]:
    """Decorator adding an optimiser factory ``f(n_var, n_obj, pop_size, seed, **options)``."""

    def deco(fn: Callable[..., Optimizer]) -> Callable[..., Optimizer]:
        ALGORITHMS[name] = AlgorithmInfo(name, fn, multi, single, description or (fn.__doc__ or "").strip())
        return fn

    return deco


def algorithm_names() -> list[str]:
    """Registered algorithm names."""
    return list(ALGORITHMS)


def check_algorithm(name: str, n_obj: int, n_var: int) -> AlgorithmInfo:
    """The registry entry of ``name``; :class:`ConfigError` if it cannot handle ``n_obj`` objectives."""
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {name!r} (known: {', '.join(ALGORITHMS)})")
    info = ALGORITHMS[name]
    if n_obj > 1 and not info.multi_objective:
        raise ConfigError(f"algorithm {name!r} is single-objective but the config has {n_obj} objectives "
                          f"(use one of: {', '.join(n for n, i in ALGORITHMS.items() if i.multi_objective)})")
    if n_obj == 1 and not info.single_objective:
        raise ConfigError(f"algorithm {name!r} needs several objectives; the config has one")
    if name == "cmaes" and n_var < 2:
        raise ConfigError("algorithm 'cmaes' needs at least 2 genes (the cma package has no 1-D mode)")
    return info


def make_algorithm(name: str, n_var: int, n_obj: int, pop_size: int, seed: int,
                   options: Mapping[str, Any] | None = None) -> Optimizer:
    """Instantiate a registered optimiser for the box [0, 1]^n_var with the config's ``options``
    (``algorithm.options``: keyword arguments of the pymoo class, or cma options)."""
    info = check_algorithm(name, n_obj, n_var)
    options = dict(options or {})
    reserved = sorted({"pop_size", "seed", "n_var", "n_obj"} & set(options))
    if reserved:
        raise ConfigError(f"algorithm {name!r}: option {reserved[0]!r} is set by the config itself "
                          f"(algorithm.pop_size, seed), not under algorithm.options")
    try:
        return info.factory(n_var, n_obj, pop_size, seed, **options)
    except ConfigError:
        raise
    except Exception as exc:  # pymoo and cma raise bare Exception/ValueError/TypeError for bad options
        msg = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")  # cma appends every option
        raise ConfigError(f"algorithm {name!r}: bad option in {options} ({type(exc).__name__}: {msg})") from None


def _pymoo_options(cls: type, options: dict[str, Any], *also: type) -> dict[str, Any]:
    """``options`` if ``cls`` (or a base class, or a class in ``also`` that ``cls`` hands its
    keyword arguments to) names each of them in its ``__init__``: pymoo swallows unknown keyword
    arguments, so a misspelt option would silently do nothing."""
    import inspect

    known: set[str] = set()
    for klass in (*cls.__mro__, *also):
        init = klass.__dict__.get("__init__")
        if init is not None:
            known |= {p.name for p in inspect.signature(init).parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} for pymoo's {cls.__name__} (known: {', '.join(sorted(known))})")
    return options


# --- pymoo --------------------------------------------------------------------------------------

def _box_problem(n_var: int, n_obj: int) -> Any:
    from pymoo.core.problem import Problem

    return Problem(n_var=n_var, n_obj=n_obj, xl=np.zeros(n_var), xu=np.ones(n_var))


class PymooOptimizer:
    """A pymoo algorithm driven by ask/tell (``setup`` once, then ``ask`` / ``tell`` per generation)."""

    def __init__(self, algorithm: Any, n_var: int, n_obj: int, seed: int) -> None:
        from pymoo.termination.max_gen import MaximumGenerationTermination

        self.problem = _box_problem(n_var, n_obj)
        self.algorithm = algorithm
        # The loop decides when to stop; pymoo's own termination is set out of reach.
        algorithm.setup(self.problem, termination=MaximumGenerationTermination(10**9), seed=seed, verbose=False)
        self._pending: Any = None

    def ask(self) -> np.ndarray:
        self._pending = self.algorithm.ask()
        return np.asarray(self._pending.get("X"), dtype=np.float64)

    def tell(self, X: np.ndarray, F: np.ndarray) -> None:
        from pymoo.core.evaluator import Evaluator
        from pymoo.problems.static import StaticProblem

        pop, self._pending = self._pending, None
        if pop is None or len(pop) != len(X):
            raise RuntimeError("tell() must follow ask() with the same genotypes")
        Evaluator().eval(StaticProblem(self.problem, F=np.asarray(F, dtype=np.float64)), pop)
        self.algorithm.tell(infills=pop)

    def rescore(self, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        """Replace the objective values of the current population by ``fn(X)`` (minimised), e.g.
        when a surrogate refitted on more data revises them; the next survival compares fresh values."""
        pop = getattr(self.algorithm, "pop", None)
        if pop is None or len(pop) == 0:
            return
        pop.set("F", np.asarray(fn(np.asarray(pop.get("X"), dtype=np.float64)), dtype=np.float64))


@register_algorithm("ga", description="genetic algorithm (pymoo GA: SBX crossover, polynomial mutation)")
def _ga(n_var: int, n_obj: int, pop_size: int, seed: int, **options: Any) -> Optimizer:
    from pymoo.algorithms.soo.nonconvex.ga import GA

    return PymooOptimizer(GA(pop_size=pop_size, eliminate_duplicates=True, **_pymoo_options(GA, options)), n_var,
                           n_obj, seed)


@register_algorithm("de", description="differential evolution (pymoo DE, DE/rand/1/bin)")
def _de(n_var: int, n_obj: int, pop_size: int, seed: int, **options: Any) -> Optimizer:
    from pymoo.algorithms.soo.nonconvex.de import DE, Variant

    options = {"variant": "DE/rand/1/bin", "CR": 0.7, "F": 0.5, **options}
    return PymooOptimizer(DE(pop_size=pop_size, **_pymoo_options(DE, options, Variant)), n_var, n_obj, seed)


@register_algorithm("nsga2", multi=True, description="NSGA-II (pymoo), multi-objective")
def _nsga2(n_var: int, n_obj: int, pop_size: int, seed: int, **options: Any) -> Optimizer:
    from pymoo.algorithms.moo.nsga2 import NSGA2

    return PymooOptimizer(NSGA2(pop_size=pop_size, eliminate_duplicates=True, **_pymoo_options(NSGA2, options)),
                           n_var, n_obj, seed)


@register_algorithm("nsga3", single=False, multi=True,
                    description="NSGA-III (pymoo) with Das-Dennis reference directions, many objectives")
def _nsga3(n_var: int, n_obj: int, pop_size: int, seed: int, **options: Any) -> Optimizer:
    from pymoo.algorithms.moo.nsga3 import NSGA3
    from pymoo.util.ref_dirs import get_reference_directions

    partitions = int(options.pop("n_partitions", 0))
    if partitions <= 0:
        # Largest Das-Dennis lattice with at most pop_size directions (at least 1 partition).
        partitions = 1
        while len(get_reference_directions("das-dennis", n_obj, n_partitions=partitions + 1)) <= pop_size:
            partitions += 1
    ref_dirs = get_reference_directions("das-dennis", n_obj, n_partitions=partitions)
    pop_size = max(pop_size, len(ref_dirs))
    return PymooOptimizer(NSGA3(ref_dirs=ref_dirs, pop_size=pop_size, eliminate_duplicates=True,
                                **_pymoo_options(NSGA3, options)),
                          n_var, n_obj, seed)


# --- cma ----------------------------------------------------------------------------------------

class CMAOptimizer:
    """CMA-ES from the ``cma`` package (ask/tell, bounds [0, 1] by its boundary transformation).

    ``cma`` samples from numpy's global generator (seeded from ``seed``); the loop checkpoints that
    state together with this object, so a resumed run draws the same candidates.
    """

    def __init__(self, n_var: int, pop_size: int, seed: int, sigma0: float = 0.25, **options: Any) -> None:
        import cma

        opts = {"bounds": [0.0, 1.0], "popsize": pop_size, "seed": seed + 1, "verbose": -9,
                "verb_log": 0, "verb_disp": 0, **options}
        self.es = cma.CMAEvolutionStrategy(np.full(n_var, 0.5), sigma0, opts)
        self._pending: list[np.ndarray] | None = None

    def ask(self) -> np.ndarray:
        self._pending = self.es.ask()
        return np.clip(np.asarray(self._pending, dtype=np.float64), 0.0, 1.0)

    def tell(self, X: np.ndarray, F: np.ndarray) -> None:
        pending, self._pending = self._pending, None
        if pending is None or len(pending) != len(X):
            raise RuntimeError("tell() must follow ask() with the same genotypes")
        self.es.tell(pending, [float(f) for f in np.asarray(F)[:, 0]])


@register_algorithm("cmaes", description="CMA-ES (the cma package, ask/tell, resumable)")
def _cmaes(n_var: int, n_obj: int, pop_size: int, seed: int, **options: Any) -> Optimizer:
    return CMAOptimizer(n_var, pop_size, seed, **options)


# --- random search ------------------------------------------------------------------------------

class RandomSearch:
    """Baseline: ``pop_size`` uniform genotypes per generation from a seeded generator."""

    def __init__(self, n_var: int, pop_size: int, seed: int) -> None:
        self.n_var = n_var
        self.pop_size = pop_size
        self.rng = np.random.default_rng(seed)

    def ask(self) -> np.ndarray:
        return self.rng.random((self.pop_size, self.n_var))

    def tell(self, X: np.ndarray, F: np.ndarray) -> None:
        """Random search learns nothing from the values."""


@register_algorithm("random", multi=True, description="random search baseline (uniform genotypes)")
def _random(n_var: int, n_obj: int, pop_size: int, seed: int, **options: Any) -> Optimizer:
    if options:
        raise ConfigError(f"algorithm 'random' takes no options, got {sorted(options)}")
    return RandomSearch(n_var, pop_size, seed)

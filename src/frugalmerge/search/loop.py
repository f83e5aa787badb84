"""The ask/tell search loop: dedup through the evaluation cache, log, checkpoint, resume.

``run_search(config, run_dir, resume=False)`` is what ``frugalmerge evolve`` calls. A run with
``--resume`` restores the checkpoint of the last finished generation (optimiser, random states,
cache, fitted estimators, counters), truncates the candidate log to it and goes on; since every
evaluation is deterministic, it ends with the same ``best.json`` / ``pareto.json`` as an
uninterrupted run with the same seed.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frugalmerge.search.algorithms import make_algorithm
from frugalmerge.search.config import SearchConfig, config_from_dict
from frugalmerge.search.errors import ConfigError, ResumeError, SearchError
from frugalmerge.search.fitness import Fitness, Score
from frugalmerge.search.space import SearchSpace, recipe_key
from frugalmerge.search.store import (
    CHECKPOINT,
    CONFIG,
    LOG,
    CandidateLog,
    atomic_write_text,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)


@dataclass
class SearchState:
    """Everything a checkpoint holds (besides the fitted estimators)."""

    optimizer: Any
    cache: dict[str, dict[str, Any]]
    generation: int = 0
    items: int = 0
    calibration_items: int = 0
    history: list[dict[str, Any]] | None = None
    log_lines: int = 0

    def snapshot(self, fitness: Fitness) -> dict[str, Any]:
        return {"optimizer": self.optimizer, "cache": self.cache, "generation": self.generation,
                "items": self.items, "calibration_items": self.calibration_items,
                "history": self.history or [], "log_lines": self.log_lines,
                "fitness": fitness.state(), "rng": capture_rng()}


def seed_everything(seed: int) -> None:
    """Seed numpy's global generator, python's and torch's (when loaded)."""
    import sys

    np.random.seed(seed % (2**32))
    random.seed(seed)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


def hypervolume(points: np.ndarray) -> float:
    """Hypervolume of maximised scores in [0, 1]^m w.r.t. the origin (pymoo's HV on negated values)."""
    if len(points) == 0:
        return 0.0
    from pymoo.indicators.hv import HV

    return float(HV(ref_point=np.zeros(points.shape[1]))(-np.asarray(points, dtype=np.float64)))


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """True for the non-dominated rows of ``values`` (maximised); duplicates are all kept."""
    n = len(values)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        dominated = np.all(values >= values[i], axis=1) & np.any(values > values[i], axis=1)
        if dominated.any():
            keep[i] = False
    return keep


def objective_matrix(entries: list[dict[str, Any]], names: list[str], field: str = "estimate") -> np.ndarray:
    return np.asarray([[e[field][n]["value"] for n in names] for e in entries], dtype=np.float64).reshape(-1, len(names))


def _progress_text(state: SearchState, names: list[str], total: int) -> str:
    h = (state.history or [])[-1] if state.history else None
    if not h:
        return f"gen 0/{total}"
    if len(names) == 1:
        return f"gen {state.generation}/{total}  best {names[0]}={h['best'][names[0]]:.3f}  items {state.items:,}"
    return f"gen {state.generation}/{total}  hypervolume {h['hypervolume']:.4f}  items {state.items:,}"


class SearchRun:
    """One run directory: set-up (fresh or resumed), generations, hand-off to the final stage."""

    def __init__(self, config: SearchConfig, run_dir: str | Path, *, resume: bool = False,
                 quiet: bool = False) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.quiet = quiet
        self.space = SearchSpace(config)
        self.fitness = Fitness.build(config, self.space)
        self.names = self.fitness.names
        self.log = CandidateLog(self.run_dir / LOG)
        self.state: SearchState | None = None

    # -- set-up ----------------------------------------------------------------------------------
    def _check_config_matches(self) -> None:
        import yaml

        saved_path = self.run_dir / CONFIG
        if not saved_path.is_file():
            raise ResumeError(f"cannot resume: {saved_path} is missing")
        try:
            raw = yaml.safe_load(saved_path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            msg = " ".join(str(exc).split())
            raise ResumeError(f"cannot resume: the run's config {saved_path} is unreadable ({msg})") from None
        if not isinstance(raw, dict):
            raise ResumeError(f"cannot resume: the run's config {saved_path} is not a mapping")
        try:
            saved = config_from_dict(raw, self.run_dir, check_paths=False)
        except ConfigError as exc:
            raise ResumeError(f"cannot resume: the run's config {saved_path} is invalid ({exc})") from None
        if saved.model_dump() != self.config.model_dump():
            a, b = saved.model_dump(), self.config.model_dump()
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise ResumeError(f"cannot resume {self.run_dir}: the config differs from the run's ({', '.join(diff)})")

    def _start(self) -> SearchState:
        from frugalmerge.runtime import configure_torch_threads

        fresh_dir = not self.run_dir.exists() or not any(self.run_dir.iterdir())
        if self.resume and not fresh_dir and not (self.run_dir / CHECKPOINT).exists():
            # Killed before its first checkpoint (during calibration): nothing to resume, so the
            # run starts over, which gives the uninterrupted run's result (same seed).
            self._check_config_matches()
        elif self.resume and not fresh_dir:
            self._check_config_matches()
            ck = load_checkpoint(self.run_dir)
            self.log.truncate(ck["log_lines"])
            self.fitness.restore(ck["fitness"])
            if self.fitness.needs_models:
                configure_torch_threads()
            restore_rng(ck["rng"])
            return SearchState(ck["optimizer"], ck["cache"], ck["generation"], ck["items"],
                               ck["calibration_items"], ck["history"], ck["log_lines"])
        if not self.resume and (self.run_dir / CHECKPOINT).exists():
            raise SearchError(f"{self.run_dir} already holds a run (use --resume to continue it, "
                              "or choose another --out)")
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise SearchError(f"--out {self.run_dir} is an existing file")
        if not fresh_dir and not (self.run_dir / CONFIG).is_file():
            raise SearchError(f"--out {self.run_dir} is a non-empty directory that is not a run directory "
                              f"(no {CONFIG}); choose a new or empty one")
        algo = self.config.algorithm
        # Options are checked before calibration is paid for (the real optimiser is made after it,
        # from the seeded state, as always).
        make_algorithm(algo.name, self.space.n_var, len(self.names), algo.pop_size, self.config.seed, algo.options)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / CONFIG, self.config.to_yaml())
        if self.log.path.exists():  # a crash before the first checkpoint left a log behind
            self.log.truncate(0)
        if self.fitness.needs_models:
            configure_torch_threads()
            import torch  # noqa: F401  (its RNG is part of the checkpointed state)
        seed_everything(self.config.seed)
        cal_items = self.fitness.calibrate()
        optimizer = make_algorithm(algo.name, self.space.n_var, len(self.names), algo.pop_size,
                                   self.config.seed, algo.options)
        state = SearchState(optimizer, {}, 0, cal_items, cal_items, [], 0)
        save_checkpoint(self.run_dir, state.snapshot(self.fitness))
        return state

    # -- one generation ------------------------------------------------------------------------
    def _evaluate(self, state: SearchState, x: np.ndarray) -> dict[str, Any]:
        recipe = self.space.decode(x)
        key = recipe_key(recipe)
        if key in state.cache:
            return state.cache[key]
        scores, seconds = self.fitness.evaluate(recipe, key)
        items = sum(s.items for s in scores.values())
        entry = {"key": key, "order": len(state.cache), "generation": state.generation + 1,
                 "genotype": [float(v) for v in x], "recipe": recipe,
                 "estimate": {n: {"value": s.value, "se": s.se} for n, s in scores.items()},
                 "items": items}
        state.cache[key] = entry
        state.items += items
        self.log.append({**entry, "seconds": round(seconds, 4)})
        return entry

    def _promote(self, state: SearchState, entries: list[dict[str, Any]]) -> None:
        """Multi-fidelity: re-evaluate the best new candidates of this generation on more items."""
        spec = self.config.fidelity
        fresh = {e["key"]: e for e in entries
                 if e["generation"] == state.generation + 1 and "cheap_estimate" not in e}
        if spec.surrogate and spec.surrogate_ucb_z is not None:
            z = spec.surrogate_ucb_z

            def score(e: dict[str, Any]) -> float:
                return float(np.mean([e["smoothed"][n]["value"] + z * e["smoothed"][n]["se"] for n in self.names]))
        else:
            def score(e: dict[str, Any]) -> float:
                return float(np.mean([e["estimate"][n]["value"] for n in self.names]))
        ranked = sorted(fresh.values(), key=lambda e: (-score(e), e["order"]))
        if spec.racing_z is not None:
            ranked = self._contenders(state, ranked, spec.racing_z)
        for entry in ranked[:spec.promote_per_generation]:
            t0 = time.perf_counter()
            scores = self.fitness.promote(entry["recipe"], entry["key"], spec.k)
            items = sum(s.items for s in scores.values())
            entry["cheap_estimate"] = entry["estimate"]
            entry["estimate"] = {n: {"value": s.value, "se": s.se} for n, s in scores.items()}
            entry["items"] += items
            state.items += items
            self.log.append({"key": entry["key"], "promotion": entry["estimate"], "items": items,
                             "generation": state.generation + 1, "seconds": round(time.perf_counter() - t0, 4)})

    def _contenders(self, state: SearchState, ranked: list[dict[str, Any]], z: float) -> list[dict[str, Any]]:
        """Racing: the candidates of ``ranked`` whose mean estimate + ``z`` SE reaches the incumbent
        (the best mean value among earlier generations' candidates; none yet: all contend)."""
        earlier = [e for e in state.cache.values() if e["generation"] <= state.generation]
        if not earlier:
            return ranked

        def mean(e: dict[str, Any], field: str) -> float:
            return float(np.mean([e["estimate"][n][field] for n in self.names]))

        incumbent = max(mean(e, "value") for e in earlier)
        return [e for e in ranked if mean(e, "value") + z * mean(e, "se") >= incumbent]

    def smooth(self, state: SearchState, override: dict[str, dict[str, dict[str, float]]] | None = None) -> None:
        """Refit the surrogate on every evaluated candidate and store each one's posterior mean and
        SD as ``entry["smoothed"]`` (a pure function of the cache: a resumed run gets the same).
        ``override`` ({key: {objective: {value, se}}}): observations used instead of those
        candidates' estimates (the final re-estimates)."""
        from frugalmerge.search.surrogate import genotype_features, make_surrogate

        override = override or {}
        entries = sorted(state.cache.values(), key=lambda e: e["order"])
        Z, groups = genotype_features(self.space, np.asarray([e["genotype"] for e in entries]))
        smoothed: list[dict[str, dict[str, float]]] = [{} for _ in entries]
        obs = [override.get(e["key"], e["estimate"]) for e in entries]
        for n in self.names:
            y = np.asarray([o[n]["value"] for o in obs], dtype=np.float64)
            se = np.asarray([o[n]["se"] for o in obs], dtype=np.float64)
            model = make_surrogate(self.config.fidelity.surrogate or "").fit(Z, groups, y, se)
            mean, sd = model.predict(Z, groups)
            for row, m, s in zip(smoothed, mean, sd):
                row[n] = {"value": float(m), "se": float(s)}
        for e, row in zip(entries, smoothed):
            e["smoothed"] = row

    def _rank_field(self) -> str:
        """The entry field the optimiser sees: the surrogate's (when it steers), the estimate
        tie-broken by the surrogate, or the estimate."""
        fidelity = self.config.fidelity
        if fidelity.surrogate and fidelity.surrogate_steer:
            return "smoothed"
        return "told" if self._tiebreaks() else "estimate"

    def _tiebreaks(self) -> bool:
        fidelity = self.config.fidelity
        return bool(fidelity.surrogate and not fidelity.surrogate_steer and fidelity.surrogate_tiebreak)

    def _set_told(self, state: SearchState) -> None:
        """``entry["told"]``: estimate + surrogate_tiebreak x posterior mean, for every candidate."""
        eps = self.config.fidelity.surrogate_tiebreak
        for e in state.cache.values():
            e["told"] = {n: {"value": e["estimate"][n]["value"] + eps * e["smoothed"][n]["value"],
                             "se": e["estimate"][n]["se"]} for n in self.names}

    def _generation(self, state: SearchState) -> None:
        X = np.asarray(state.optimizer.ask(), dtype=np.float64)
        entries = [self._evaluate(state, x) for x in X]
        fidelity = self.config.fidelity
        if fidelity.promote_per_generation:
            if fidelity.surrogate and fidelity.surrogate_ucb_z is not None:
                self.smooth(state)  # the promotion ranks by the surrogate's upper confidence bound
            self._promote(state, entries)
        if fidelity.surrogate and (fidelity.surrogate_steer or self._tiebreaks()):
            self.smooth(state)
            if self._tiebreaks():
                self._set_told(state)
            rescore = getattr(state.optimizer, "rescore", None)
            if rescore is not None:  # the survivors' values from earlier generations: refreshed too
                rescore(lambda X_old: -self._surrogate_values(state, X_old))
        values = objective_matrix(entries, self.names, self._rank_field())
        state.optimizer.tell(X, -values)
        state.generation += 1
        state.log_lines = self.log.lines
        everything = objective_matrix(list(state.cache.values()), self.names, self._rank_field())
        front = everything[pareto_mask(everything)]
        state.history = [*(state.history or []), {
            "generation": state.generation,
            "items": state.items,
            "candidates": len(state.cache),
            "best": {n: float(everything[:, j].max()) for j, n in enumerate(self.names)},
            "mean": {n: float(values[:, j].mean()) for j, n in enumerate(self.names)},
            "hypervolume": hypervolume(front) if len(self.names) > 1 else float(everything[:, 0].max()),
        }]
        save_checkpoint(self.run_dir, state.snapshot(self.fitness))

    def _surrogate_values(self, state: SearchState, X: np.ndarray) -> np.ndarray:
        """The told values (smoothed, or tie-broken) of already evaluated genotypes ``X`` (rows of
        the optimiser's population)."""
        entries = [state.cache[recipe_key(self.space.decode(x))] for x in np.asarray(X)]
        return objective_matrix(entries, self.names, self._rank_field())

    def _should_continue(self, state: SearchState) -> bool:
        budget = self.config.budget
        if state.generation >= budget.generations:
            return False
        # At least one generation even when calibration used up max_items: a run must end with a
        # candidate to report (it stopped with nothing and failed in the final stage).
        return budget.max_items is None or state.items < budget.max_items or state.generation == 0

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Search, then the final stage; returns the run summary (also ``results.json``)."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        t0 = time.perf_counter()
        state = self._start()
        self.state = state
        total = self.config.budget.generations
        console = Console(stderr=True, quiet=self.quiet)
        with Progress(TextColumn("[bold]{task.fields[name]}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                      transient=False) as progress:
            task = progress.add_task(_progress_text(state, self.names, total), total=total,
                                     completed=state.generation, name=self.config.name)
            while self._should_continue(state):
                self._generation(state)
                progress.update(task, completed=state.generation,
                                description=_progress_text(state, self.names, total))
        search_seconds = time.perf_counter() - t0
        from frugalmerge.search.final import finalize

        return finalize(self, state, search_seconds=search_seconds, console=console)


def run_search(config: SearchConfig, run_dir: str | Path, *, resume: bool = False,
               quiet: bool = False) -> dict[str, Any]:
    """Run (or resume) a search into ``run_dir``; returns the summary written to ``results.json``."""
    return SearchRun(config, run_dir, resume=resume, quiet=quiet).run()


__all__ = ["run_search", "SearchRun", "SearchState", "hypervolume", "pareto_mask", "Score"]

"""End of a run: choose, re-score on the held-out TEST split, export, plot, report.

* single objective: the best candidate by estimate (ties: the earliest evaluated) -> ``best.json``;
* several objectives: the Pareto set of every evaluated candidate -> ``pareto.json``, with the knee
  point (the Pareto point nearest the ideal point after scaling each objective to [0, 1] over the
  front) as the chosen merge;
* optional multi-fidelity promotion: the top candidates are re-estimated on more items first;
* the chosen merge(s), every source and the naive average are scored on the full TEST split (never
  used in search); estimated vs true per candidate; the chosen merge is exported (HF dir + mergekit
  YAML + card); plots (PNG) and ``report.md``; the summary ``results.json``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from frugalmerge.search.fitness import TestScore, base_recipe, source_recipe
from frugalmerge.search.space import average_recipe, recipe_key
from frugalmerge.search.store import write_json

if TYPE_CHECKING:
    from rich.console import Console

    from frugalmerge.search.loop import SearchRun, SearchState


def knee_index(values: np.ndarray) -> int:
    """Index of the point nearest the ideal after min-max scaling each objective (maximised)."""
    lo, hi = values.min(axis=0), values.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = (values - lo) / span
    dist = np.sqrt(((1.0 - scaled) ** 2).sum(axis=1))
    return int(np.argmin(dist))  # argmin takes the first: ties go to the earliest candidate


def _ranked(run: SearchRun, entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(ranked candidates, Pareto set) - single objective: by value then order."""
    from frugalmerge.search.loop import pareto_mask

    entries = sorted(entries, key=lambda e: e["order"])
    fidelity = run.config.fidelity
    promoted = [e for e in entries if "cheap_estimate" in e]
    # multi-fidelity: choose among the candidates evaluated at high fidelity (with a surrogate, its
    # posterior mean already pools them with everything else: every candidate, unless asked)
    if promoted and (not fidelity.surrogate or fidelity.surrogate_pick_promoted):
        entries = promoted
    vals = _pick_values(run, entries)
    if len(run.names) == 1:
        order = sorted(range(len(entries)), key=lambda i: (-vals[i, 0], entries[i]["order"]))
        ranked = [entries[i] for i in order]
        return ranked, ranked[:1]
    keep = pareto_mask(vals)
    front = [e for e, k in zip(entries, keep) if k]
    fvals = vals[keep]
    lo, hi = fvals.min(axis=0), fvals.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    dist = np.sqrt(((1.0 - (fvals - lo) / span) ** 2).sum(axis=1))
    ranked = [front[i] for i in sorted(range(len(front)), key=lambda i: (dist[i], front[i]["order"]))]
    return ranked, front


def _pick_values(run: SearchRun, entries: list[dict[str, Any]]) -> np.ndarray:
    """(candidates, objectives) values the final choice maximises: the estimates, or with a
    surrogate its posterior mean minus ``fidelity.surrogate_pick_z`` posterior SDs."""
    from frugalmerge.search.loop import objective_matrix

    fidelity = run.config.fidelity
    if not fidelity.surrogate:
        return objective_matrix(entries, run.names, "estimate")
    z = fidelity.surrogate_pick_z
    return np.asarray([[e["smoothed"][n]["value"] - z * e["smoothed"][n]["se"] for n in run.names]
                       for e in entries], dtype=np.float64).reshape(-1, len(run.names))


def _promote(run: SearchRun, ranked: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], int]:
    spec = run.config.final.promotion
    out: dict[str, dict[str, Any]] = {}
    items = 0
    for e in ranked[:spec.top]:
        scores = {o.name: o.promote(e["recipe"], e["key"], spec.k) for o in run.fitness.objectives}
        items += sum(s.items for s in scores.values())
        out[e["key"]] = {n: {"value": s.value, "se": s.se} for n, s in scores.items()}
    return out, items


def _test(run: SearchRun, recipe: dict[str, Any]) -> dict[str, dict[str, float]]:
    key = recipe_key(recipe)
    scores: dict[str, TestScore] = {o.name: o.test_score(recipe, key) for o in run.fitness.objectives}
    return {n: {"acc": s.acc, "se": s.se, "n": s.n} for n, s in scores.items()}


def _choose(run: SearchRun, ranked: list[dict[str, Any]], promoted: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if not promoted:
        return ranked[0]
    pool = [e for e in ranked if e["key"] in promoted]
    vals = np.asarray([[promoted[e["key"]][n]["value"] for n in run.names] for e in pool])
    if len(run.names) == 1:
        return pool[int(np.argmax(vals[:, 0]))]
    return pool[knee_index(vals)]


def _public(entry: dict[str, Any], promoted: dict[str, dict[str, Any]], test: dict[str, Any] | None) -> dict[str, Any]:
    return {"key": entry["key"], "generation": entry["generation"], "order": entry["order"],
            "recipe": entry["recipe"], "genotype": entry["genotype"], "estimate": entry["estimate"],
            "cheap_estimate": entry.get("cheap_estimate"), "smoothed": entry.get("smoothed"),
            "promoted": promoted.get(entry["key"]), "test": test}


def finalize(run: SearchRun, state: SearchState, *, search_seconds: float, console: Console) -> dict[str, Any]:
    """Write best.json / pareto.json, test scores, exports, plots, report.md and results.json."""
    t0 = time.perf_counter()
    cfg = run.config
    final = cfg.final
    entries = list(state.cache.values())
    if cfg.fidelity.surrogate:
        run.smooth(state)  # refitted on every candidate (the last generation's fit when it steered)
    ranked, front = _ranked(run, entries)
    promoted, promotion_items = _promote(run, ranked) if final.promotion.top else ({}, 0)
    if promoted and cfg.fidelity.surrogate and final.promotion.into_surrogate:
        # the re-estimates join the surrogate's observations; the pick is its refitted argmax
        run.smooth(state, override=promoted)
        ranked, front = _ranked(run, entries)
        chosen = ranked[0]
    else:
        chosen = _choose(run, ranked, promoted)
    console.print(f"[bold]{cfg.name}[/]: {len(entries)} candidates, {state.items:,} items evaluated"
                  + ("; re-scoring on the held-out test split" if final.test else ""))

    # Which candidates get true test scores: the chosen one, then the best ranked ones.
    tested: dict[str, dict[str, Any]] = {}
    if final.test:
        for e in [chosen, *ranked]:
            if len(tested) >= final.max_pareto_test:
                break
            if e["key"] not in tested:
                tested[e["key"]] = _test(run, e["recipe"])
    multi = len(run.names) > 1
    if multi:
        chosen_key = chosen["key"]
        pareto = {"objectives": run.names, "knee": chosen_key,
                  "points": [_public(e, promoted, tested.get(e["key"])) for e in sorted(front, key=lambda e: e["order"])]}
        write_json(run.run_dir / "pareto.json", pareto)
    best = {"objectives": run.names, **_public(chosen, promoted, tested.get(chosen["key"]))}
    write_json(run.run_dir / "best.json", best)

    baselines: dict[str, Any] = {"sources": {}, "average": None, "base": None}
    search_view: dict[str, dict[str, float]] = {}
    if final.test:
        for name in cfg.models:
            baselines["sources"][name] = _test(run, source_recipe(cfg, name))
        if len(cfg.models) > 1:
            baselines["average"] = _test(run, average_recipe(cfg))
        if cfg.base_model is not None:
            baselines["base"] = _test(run, base_recipe(cfg))
    # Where the sources sit on the search-time axes (the same cheap estimate as the candidates).
    for name in cfg.models:
        r = source_recipe(cfg, name)
        search_view[name] = {o.name: o.evaluate(r, recipe_key(r)).value for o in run.fitness.objectives}

    export_dir = None
    if final.export == "best" and run.fitness.needs_models:
        export_dir = _export(run, chosen["recipe"])

    from frugalmerge.search.plots import plot_all

    plots = plot_all(run, state, entries, front, tested, search_view, chosen)
    summary = {
        "name": cfg.name, "objectives": run.names, "seed": cfg.seed, "algorithm": cfg.algorithm.name,
        "fitness": cfg.fitness, "generations": state.generation, "candidates": len(entries),
        "items_evaluated": state.items, "calibration_items": state.calibration_items,
        "promotion_items": promotion_items,
        "items_full_fitness": len(entries) * run.fitness.full_items(),
        "chosen": chosen["key"], "chosen_estimate": chosen["estimate"],
        "evolved": tested.get(chosen["key"]), "sources": baselines["sources"],
        "average": baselines["average"], "base": baselines["base"],
        "estimated_vs_true": [{"key": k, "estimate": state.cache[k]["estimate"], "test": v}
                              for k, v in tested.items()],
        "export": str(export_dir) if export_dir else None, "plots": plots,
        "search_seconds": round(search_seconds, 2), "final_seconds": round(time.perf_counter() - t0, 2),
    }
    write_json(run.run_dir / "results.json", summary)
    from frugalmerge.search.report import write_report

    write_report(run, state, summary, tested)
    return summary


def _export(run: SearchRun, recipe: dict[str, Any]) -> Path:
    """The chosen merge as a Hugging Face dir + mergekit YAML + card (atomic, by the merge stage)."""
    import shutil

    from frugalmerge.merging import export_merge
    from frugalmerge.search.space import to_merge_recipe

    out = run.run_dir / "export" / "best"
    if out.exists():  # a resumed run re-exports the same recipe
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    export_merge(to_merge_recipe(recipe), out, engine=run.fitness.host.engine)
    return out

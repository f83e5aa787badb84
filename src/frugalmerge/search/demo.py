"""``frugalmerge demo``: both showcases on the zoo, the final table and ``summary.json``.

1. ``cross_domain`` - an English math expert + a German language expert, one objective (math
   posed in German); GA over the merge method (task arithmetic / TIES), per-layer-group weights
   and densities.
2. ``multilingual`` - one expert per language, one objective per language; NSGA-II over the
   method (task arithmetic / TIES), per-model weights and densities; the knee of the Pareto set is
   the chosen merge.

Each showcase leaves ``DIR/<showcase>/config.yaml`` (``frugalmerge evolve`` re-runs it) and its run
directory ``DIR/<showcase>/run``; ``DIR/summary.json`` follows the contract (TRUE test accuracy).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from frugalmerge._atomic import OutputInUseError, check_parents
from frugalmerge.search.errors import SearchError
from frugalmerge.search.store import CHECKPOINT, atomic_write_text, write_json


#: MERGE³-style p-IRT (the merge's ability as a combination of its sources' abilities): on the zoo
#: it gave the best TRUE test accuracy per item evaluated (docs/search.md, "Which estimator").
ESTIMATOR = "mpirt"


#: With the shipped cards (no calibration in the run), part of the saving goes to multi-fidelity:
#: each generation's best new candidate(s) are re-estimated on CARD_PROMOTION_K items by the card's
#: estimator refitted at that k on the card's training responses.
CARD_PROMOTION_K = 40


#: With the cards, the cross-domain search's final merge is the argmax of a Gaussian-process
#: surrogate over every evaluated candidate (pooling neighbours' estimates); the search itself is
#: steered by the card's estimates alone. The shipped cards score their 10 items as graded token
#: probabilities, which rank the candidates near the optimum where 0/1 scores tie, so the
#: cross-domain search needs no promotions: on search_cost's seeds 0-4 the gap to the full-fitness
#: search is +0.2 +- 0.5 points at 38.9x fewer items (0/1 cards with promotions: -0.9 +- 0.3 at 26.8x;
#: chosen on development seeds 10-19, benchmarks/results/search_cost.md). Not used on the
#: multilingual (NSGA-II) showcase.
FINAL_PICK: dict[str, Any] = {"surrogate": "gp", "surrogate_steer": False}


def showcase_configs(zoo: Any, *, quick: bool = False,
                     cards: Mapping[str, Path] | None = None) -> dict[str, dict[str, Any]]:
    """The demo's two search configs (raw YAML mappings) for a loaded zoo manifest.

    ``cards`` ({benchmark: card folder}, e.g. :func:`frugalmerge.zoo.cards.shipped_cards_for`):
    objectives with a card use it instead of calibrating inside the run."""
    cross = zoo.showcases["cross_domain"]
    multi = zoo.showcases["multilingual"]
    gens_cd, gens_ml = (2, 2) if quick else (12, 10)
    pop_cd, pop_ml = (4, 4) if quick else (10, 12)
    k = 4 if quick else 10
    common = {
        "zoo": str(zoo.root),
        "base_model": zoo.base,
        "seed": 0,
        "calibration": {"random_merges": 2 if quick else 6, "pool": None if quick else 100},
        "final": {"test": True, "export": "best", "max_pareto_test": 2},
    }
    return {
        "cross_domain": {
            "name": "cross_domain",
            **common,
            "models": list(cross.models),
            "method": {"choices": ["task_arithmetic", "ties"]},
            "search": {"weight": {"bounds": [0.0, 1.5], "per": "layers", "groups": 2},
                       "density": {"bounds": [0.3, 1.0]}},
            "objectives": [_objective(o, k, cards) for o in cross.objectives],
            "algorithm": {"name": "ga", "pop_size": pop_cd},
            "budget": {"generations": gens_cd},
            **({"fidelity": dict(FINAL_PICK)} if _all_carded(cross.objectives, cards) else {}),
        },
        "multilingual": {
            "name": "multilingual",
            **common,
            "models": list(multi.models),
            "method": {"choices": ["task_arithmetic", "ties"]},
            "search": {"weight": {"bounds": [0.0, 1.2]}, "density": {"bounds": [0.3, 1.0]}},
            "objectives": [_objective(o, k, cards) for o in multi.objectives],
            "algorithm": {"name": "nsga2", "pop_size": pop_ml},
            "budget": {"generations": gens_ml},
            # several objectives: two promotions per generation keep a front at high fidelity
            "fidelity": {"promote_per_generation": 2,
                         **({"k": CARD_PROMOTION_K} if _all_carded(multi.objectives, cards) else {})},
        },
    }


def _objective(name: str, k: int, cards: Mapping[str, Path] | None) -> dict[str, Any]:
    if cards and name in cards:  # the card fixes the estimator and its k items
        return {"name": name, "benchmark": name, "card": str(cards[name])}
    return {"name": name, "benchmark": name, "k": k, "estimator": ESTIMATOR}


def _all_carded(objectives: Any, cards: Mapping[str, Path] | None) -> bool:
    return bool(cards) and all(o in cards for o in objectives)


def _write_config(raw: dict[str, Any], folder: Path) -> Path:
    """Write a showcase config with the zoo path relative to the folder when possible."""
    folder.mkdir(parents=True, exist_ok=True)
    data = dict(raw)
    try:
        rel = os.path.relpath(raw["zoo"], folder)
    except ValueError:  # another drive (Windows): keep it absolute
        rel = raw["zoo"]
    # Relative when the zoo is near (the output folder moves with the repository), else absolute.
    if Path(rel).parts[:4].count("..") < 4:
        data["zoo"] = rel
    path = folder / "config.yaml"
    atomic_write_text(path, "# frugalmerge demo showcase; re-run with: frugalmerge evolve config.yaml --out run2\n"
                      + yaml.safe_dump(data, sort_keys=False))
    return path


def _acc_only(cells: dict[str, Any] | None) -> dict[str, float]:
    return {n: float(c["acc"]) for n, c in (cells or {}).items()}


def _showcase_summary(name: str, result: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    return {
        "name": name,
        "objectives": result["objectives"],
        "sources": {m: _acc_only(cells) for m, cells in result["sources"].items()},
        "average": _acc_only(result["average"]),
        "evolved": _acc_only(result["evolved"]),
        "items_evaluated": int(result["items_evaluated"]),
        "items_full_fitness": int(result["items_full_fitness"]),
        # extensions (not in the contract's minimum): standard errors and where things are
        "se": {
            "sources": {m: {n: c["se"] for n, c in cells.items()} for m, cells in result["sources"].items()},
            "average": {n: c["se"] for n, c in (result["average"] or {}).items()},
            "evolved": {n: c["se"] for n, c in (result["evolved"] or {}).items()},
        },
        "test_items": {n: c["n"] for n, c in (result["evolved"] or {}).items()},
        "calibration_items": int(result["calibration_items"]),
        "candidates": int(result["candidates"]),
        "run_dir": str(run_dir),
        "seconds": round(result["search_seconds"] + result["final_seconds"], 1),
    }


def print_table(summary: dict[str, Any], console: Any) -> None:
    """The demo's final table: sources, naive average, evolved; TRUE test accuracy per objective."""
    from rich.table import Table

    for show in summary["showcases"]:
        names = show["objectives"]
        se = show["se"]
        sizes = ", ".join(f"{n}: {show['test_items'].get(n, '?')} items" for n in names)
        table = Table(title=f"{show['name']}: TRUE accuracy on the held-out test split ({sizes})")
        table.add_column("model")
        for n in names:
            table.add_column(n, justify="right")
        if len(names) > 1:
            table.add_column("mean", justify="right")

        def row(label: str, accs: dict[str, float], ses: dict[str, float], style: str | None = None) -> None:
            cells = [f"{accs[n]:.3f} ± {ses[n]:.3f}" for n in names]
            if len(names) > 1:
                cells.append(f"{sum(accs.values()) / len(accs):.3f}")
            table.add_row(label, *cells, style=style)

        for model, accs in show["sources"].items():
            row(f"source {model}", accs, se["sources"][model])
        if show["average"]:
            row("naive average", show["average"], se["average"])
        row("evolved" + (" (knee)" if len(names) > 1 else ""), show["evolved"], se["evolved"], "bold green")
        console.print(table)
        ratio = show["items_full_fitness"] / max(show["items_evaluated"], 1)
        console.print(f"  items evaluated: cheap fitness {show['items_evaluated']:,} "
                      f"(incl. {show['calibration_items']:,} for calibration) vs full fitness "
                      f"{show['items_full_fitness']:,} -> {ratio:.1f}x fewer; {show['candidates']} candidates, "
                      f"{show['seconds']:.0f} s\n")


def _check_demo_out(out: Path, showcases: set[str]) -> None:
    """``out`` must be new, empty, or an earlier demo's output (only showcase folders and
    ``summary.json`` at its top): the demo rewrites those and must not touch anything else."""
    if out.exists() and not out.is_dir():
        raise SearchError(f"demo --out {out} is a file, not a directory")
    try:
        check_parents(out, "demo --out")
    except OutputInUseError as exc:
        raise SearchError(str(exc)) from None
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in showcases | {"summary.json"})
        if foreign:
            raise SearchError(f"demo --out {out} holds {foreign[0]!r}, which is not a demo output; choose a new "
                              f"or empty folder (an earlier demo's folder is reused)")


def run_demo(out: str | Path = "demo_out", *, zoo_dir: str | Path | None = None, quick: bool = False,
             use_cards: bool = True) -> dict[str, Any]:
    """Run both showcases into ``out``; returns (and writes) the summary.

    With ``use_cards`` and the shipped full zoo, the objectives use the shipped estimator cards
    (``estimators/zoo``, fitted once on search-split responses) instead of calibrating in the run."""
    from rich.console import Console

    from frugalmerge.search.config import config_from_dict
    from frugalmerge.search.loop import run_search

    from frugalmerge.zoo import ensure_zoo

    console = Console()
    out = Path(out)
    t0 = time.perf_counter()
    try:
        zoo = ensure_zoo("smoke" if quick else "full", zoo_dir)
    except Exception as exc:  # ZooError: one line
        raise SearchError(f"demo: cannot get the zoo: {exc}") from None
    configs = showcase_configs(zoo, quick=quick, cards=None)
    _check_demo_out(out, set(configs))
    console.print(f"[bold]frugalmerge demo[/]: zoo {zoo.root} ({zoo.size}), output {out}")
    showcases = []
    from frugalmerge.zoo.cards import shipped_cards_for

    cards = shipped_cards_for(zoo) if use_cards and not quick else None
    if cards:
        folders: dict[Path, list[str]] = {}
        for name, folder in sorted(cards.items()):
            folders.setdefault(Path(folder).parent, []).append(name)
        console.print("estimator cards: " + "; ".join(f"{', '.join(names)} from {parent}"
                                                      for parent, names in folders.items()))
    for name, raw in showcase_configs(zoo, quick=quick, cards=cards).items():
        folder = out / name
        cfg_path = _write_config(raw, folder)
        run_dir = folder / "run"
        if (run_dir / CHECKPOINT).exists():  # a previous demo's run: the demo starts afresh
            shutil.rmtree(run_dir)
        cfg = config_from_dict(yaml.safe_load(cfg_path.read_text(encoding="utf-8")), folder)
        console.rule(f"showcase {name}")
        result = run_search(cfg, run_dir)
        showcases.append(_showcase_summary(name, result, run_dir))
    summary = {"showcases": showcases, "seconds": round(time.perf_counter() - t0, 1)}
    write_json(out / "summary.json", summary)
    print_table(summary, console)
    console.print(f"total {summary['seconds']:.0f} s; summary: {out / 'summary.json'}")
    return summary

"""How well do the shipped ``math_de`` cards rank the candidates a search converges to?

The candidates of full-fitness cross-domain searches (``--runs``: run folders written by
``benchmarks/search_cost.py``, e.g. its full-fitness runs of development seeds 10-12) are each scored
on every search item (0/1 and graded token probability) and every test item (0/1). Each card then
estimates them from its own 10 items: the 0/1 card (``estimators/zoo/math_de``) from 0/1 scores, the
graded card (``estimators/zoo_graded/math_de``) from token probabilities. Printed: MAE against the
search-split accuracy, and Spearman correlations with the TRUE test accuracy over all candidates and
over the top region (search accuracy >= ``--top``), next to the 0/1 mean over all search items as
the reference a full-fitness search uses. ``--json`` / ``--plot`` write the numbers and a scatter
of estimate vs TRUE test accuracy.

    PYTHONPATH=src /work/venv/bin/python benchmarks/graded_ranking.py \\
        --runs /tmp/scdev/cross_domain-full-seed10-* /tmp/scdev/cross_domain-full-seed11-* \\
               /tmp/scdev/cross_domain-full-seed12-* --json /tmp/graded_ranking.json --plot /tmp/graded_ranking.png

About 1.7 s per candidate on this CPU (1,400 item evaluations each).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

CARDS = {"0/1 card": REPO / "estimators" / "zoo" / "math_de",
         "graded card": REPO / "estimators" / "zoo_graded" / "math_de"}


def candidates(run_dirs: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    """(recipe key, recipe) of every distinct candidate in the runs' ``candidates.jsonl``."""
    seen: dict[str, dict[str, Any]] = {}
    for run in run_dirs:
        for line in (run / "candidates.jsonl").read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if "recipe" in rec and rec["key"] not in seen:
                seen[rec["key"]] = rec["recipe"]
    return list(seen.items())


def score(recipes: list[tuple[str, dict[str, Any]]]) -> dict[str, np.ndarray]:
    """0/1 search, graded search and 0/1 test scores of every recipe (rows) on every item."""
    from rich.progress import track

    from frugalmerge.evaluation import evaluate
    from frugalmerge.search.config import config_from_dict
    from frugalmerge.search.demo import showcase_configs
    from frugalmerge.search.fitness import Fitness
    from frugalmerge.search.space import SearchSpace
    from frugalmerge.zoo import ensure_zoo

    zoo = ensure_zoo("full")
    cfg = config_from_dict({**showcase_configs(zoo)["cross_domain"], "fitness": "full"}, zoo.root)
    obj = Fitness.build(cfg, SearchSpace(cfg)).objectives[0]
    search, test = obj.search_bench, obj.test_bench  # type: ignore[attr-defined]
    graded = search.with_task(search.task.with_overrides({"graded": True, "graded_measure": "token_probability"}))
    rows: dict[str, list[list[float]]] = {"search": [], "graded": [], "test": []}
    for key, recipe in track(recipes, description="scoring candidates"):
        model = obj.host.model_for(recipe, key)  # type: ignore[attr-defined]
        tok = obj.host.tokenizer  # type: ignore[attr-defined]
        for name, bench in (("search", search), ("graded", graded), ("test", test)):
            out = evaluate(model, tok, bench, batch_size=cfg.batch_size)
            rows[name].append([out[i.id] for i in bench.items])
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()}
    arrays["search_ids"] = np.asarray([i.id for i in search.items])
    return arrays


def card_estimates(folder: Path, values: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
    """The card's estimate of every row, each revealing only the card's items."""
    from frugalmerge.estimators import ResponseMatrix, load_card

    est, _ = load_card(folder)
    rows = ResponseMatrix(values=values, model_ids=tuple(f"c{r}" for r in range(len(values))),
                          item_ids=tuple(item_ids.tolist()))
    return np.asarray(est.predict(rows.reveal(est.selected_items_)).score)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="full-fitness run folders (search_cost.py)")
    parser.add_argument("--top", type=float, default=0.15, help="top region: search accuracy at least this")
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None)
    args = parser.parse_args(argv)

    from scipy.stats import spearmanr

    from frugalmerge.runtime import configure_torch_threads
    from frugalmerge.zoo import prebuilt_zoo_dir

    configure_torch_threads()
    if prebuilt_zoo_dir("full") is None or not all((c / "card.json").is_file() for c in CARDS.values()):
        print("graded_ranking: no shipped full zoo or cards in this checkout; skipped")
        return 0
    recipes = candidates([Path(r) for r in args.runs])
    data = score(recipes)
    truth_search, truth_test = data["search"].mean(1), data["test"].mean(1)
    top = truth_search >= args.top
    predictions = {"0/1 mean, all 400 search items": truth_search,
                   "0/1 card": card_estimates(CARDS["0/1 card"], data["search"], data["search_ids"]),
                   "graded card": card_estimates(CARDS["graded card"], data["graded"], data["search_ids"])}
    print(f"{len(recipes)} candidates of {len(args.runs)} runs; {int(top.sum())} with search accuracy >= {args.top}")
    print("| estimate | MAE vs search accuracy (points) | Spearman with TRUE test, all | Spearman with TRUE test, top |")
    print("|---|---|---|---|")
    report: dict[str, Any] = {"candidates": len(recipes), "top": int(top.sum()), "top_threshold": args.top, "rows": {}}
    for name, pred in predictions.items():
        row = {"mae_points": float(100 * np.abs(pred - truth_search).mean()),
               "spearman_test_all": float(spearmanr(pred, truth_test).statistic),
               "spearman_test_top": float(spearmanr(pred[top], truth_test[top]).statistic)}
        report["rows"][name] = row
        print(f"| {name} | {row['mae_points']:.2f} | {row['spearman_test_all']:.3f} | {row['spearman_test_top']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
        for ax, name in zip(axes, ("0/1 card", "graded card")):
            ax.scatter(100 * predictions[name][top], 100 * truth_test[top], s=10, alpha=0.6)
            ax.set_title(f"{name}: Spearman {report['rows'][name]['spearman_test_top']:.2f} (top region)")
            ax.set_xlabel("card estimate (points)")
        axes[0].set_ylabel("TRUE test accuracy (points)")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

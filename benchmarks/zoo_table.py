"""The zoo's accuracy table: sources, base, naive average and the best hand-searched merges.

Every model is materialized by ``frugalmerge.merging.MergeEngine`` and scored by
``frugalmerge.evaluation.evaluate`` (teacher-forced exact match of the equation line). Merge
recipes are chosen on the SEARCH split (a small grid of task arithmetic and TIES recipes per
showcase) and reported on the held-out TEST split, with standard errors and paired standard
errors against the best source model.

    PYTHONPATH=src /work/venv/bin/python benchmarks/zoo_table.py [--zoo DIR] [--json OUT.json]

Default zoo: the shipped prebuilt full zoo. Prints markdown tables (pasted into docs/zoo.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np


def _recipe(method: str, base: str, weights: dict[str, float], density: float | None = None
            ) -> dict:
    models = []
    for model, weight in weights.items():
        params: dict[str, float] = {"weight": weight}
        if density is not None:
            params["density"] = density
        models.append({"model": model, "parameters": params})
    recipe = {"merge_method": method, "models": models, "dtype": "float32"}
    if method != "linear":
        recipe["base_model"] = base
    return recipe


def candidate_grid(showcase: str, paths: dict[str, str], base: str) -> dict[str, dict]:
    """Hand-picked recipe grid of a showcase (named by a short label)."""
    grid: dict[str, dict] = {}
    if showcase == "cross_domain":
        m, d = paths["math_en"], paths["lang_de"]
        for wm, wd in itertools.product((0.5, 0.75, 1.0, 1.25), (0.25, 0.5, 0.75, 1.0)):
            grid[f"task_arithmetic math_en={wm} lang_de={wd}"] = _recipe(
                "task_arithmetic", base, {m: wm, d: wd})
        for dens, (wm, wd) in itertools.product((0.3, 0.5, 0.7, 0.9), ((1.0, 1.0), (1.0, 0.5))):
            grid[f"ties density={dens} math_en={wm} lang_de={wd}"] = _recipe(
                "ties", base, {m: wm, d: wd}, density=dens)
    else:
        m, d, f = paths["math_en"], paths["lang_de"], paths["lang_fr"]
        # The math vector disturbs reading in other languages: small (or no) math weight.
        for wm, wl in itertools.product((0.0, 0.25), (0.6, 0.8, 1.0)):
            weights = {d: wl, f: wl, **({m: wm} if wm else {})}
            grid[f"task_arithmetic math_en={wm} lang_de=lang_fr={wl}"] = _recipe(
                "task_arithmetic", base, weights)
        for dens, wm in itertools.product((0.3, 0.5, 0.7), (0.0, 0.25, 0.5)):
            weights = {d: 1.0, f: 1.0, **({m: wm} if wm else {})}
            grid[f"ties density={dens} math_en={wm} lang_de=lang_fr=1"] = _recipe(
                "ties", base, weights, density=dens)
    return grid


def plot(report: dict, out: Path) -> None:
    """Bar chart per showcase: test accuracy per objective with standard-error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shows = report["showcases"]
    fig, axes = plt.subplots(1, len(shows), figsize=(7 * len(shows), 5.5), squeeze=False)
    for ax, (name, show) in zip(axes[0], shows.items()):
        objectives = show["objectives"]
        rows = show["rows"]
        width = 0.8 / len(rows)
        for k, row in enumerate(rows):
            xs = [i + (k - (len(rows) - 1) / 2) * width for i in range(len(objectives))]
            label = row["model"].replace("best on search: ", "best: ")
            ax.bar(xs, [row[o][0] for o in objectives], width,
                   yerr=[row[o][1] for o in objectives], capsize=2, label=label)
        ax.set_xticks(range(len(objectives)), objectives)
        ax.set_ylim(0, 1)
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{name} (best source: {show['best_source']})")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=None, help="zoo folder (default: shipped)")
    parser.add_argument("--json", type=Path, default=None, help="write all scores here")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG bar chart here")
    parser.add_argument("--replot", type=Path, default=None,
                        help="only redraw --plot from a JSON written by an earlier run")
    args = parser.parse_args()
    if args.replot:
        plot(json.loads(args.replot.read_text()), args.plot or args.replot.with_suffix(".png"))
        return

    from frugalmerge.runtime import configure_torch_threads

    configure_torch_threads(1)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from frugalmerge.evaluation import evaluate, load_benchmark
    from frugalmerge.merging import MergeEngine, MergeRecipe
    from frugalmerge.zoo import ensure_zoo, load_zoo

    zoo = load_zoo(args.zoo) if args.zoo else ensure_zoo("full")
    paths = {name: str(path) for name, path in zoo.models.items()}
    base = paths[zoo.base]
    engine = MergeEngine([paths[n] for n in ("math_en", "lang_de", "lang_fr")], base_model=base,
                         verbose=False)
    tokenizer = engine.tokenizer
    benches = {
        split: {name: load_benchmark(zoo.split_path(name, split), task=entry.task, name=name)
                for name, entry in zoo.benchmarks.items()}
        for split in ("search", "test")
    }

    def scores(recipe: dict, split: str, objectives: list[str]) -> dict[str, np.ndarray]:
        model = engine.materialize(MergeRecipe.model_validate(recipe), seed=0)
        out = {}
        for name in objectives:
            result = evaluate(model, tokenizer, benches[split][name], batch_size=128)
            out[name] = np.array(list(result.values()), dtype=float)
        return out

    all_objectives = sorted(zoo.benchmarks)
    # A source model (or the base) is the trivial recipe: task arithmetic with one weight 1
    # (or none), so everything goes through the same engine.
    singles = {"base": _recipe("task_arithmetic", base, {paths["math_en"]: 0.0})}
    for name in ("math_en", "lang_de", "lang_fr"):
        singles[name] = _recipe("task_arithmetic", base, {paths[name]: 1.0})
    start = time.perf_counter()
    test = {name: scores(r, "test", all_objectives) for name, r in singles.items()}
    report: dict = {"zoo": str(zoo.root), "sources": {}, "showcases": {}}
    for name, s in test.items():
        report["sources"][name] = {b: float(v.mean()) for b, v in s.items()}

    for show_name, show in zoo.showcases.items():
        objectives = list(show.objectives)
        sources = list(show.models)
        average = _recipe("linear", base, {paths[m]: 1.0 for m in sources})
        grid = candidate_grid(show_name, paths, base)
        search_means = {}
        for label, recipe in grid.items():
            s = scores(recipe, "search", objectives)
            search_means[label] = float(np.mean([v.mean() for v in s.values()]))
        best_label = max(search_means, key=search_means.get)
        rows = {"base": test["base"], **{m: test[m] for m in sources},
                "average (linear, equal weights)": scores(average, "test", all_objectives),
                f"best on search: {best_label}": scores(grid[best_label], "test", all_objectives)}
        # objective-mean per item (items are aligned across languages: same problem structures)
        per_item = {label: np.mean([r[o] for o in objectives], axis=0) for label, r in rows.items()}
        best_source = max(sources, key=lambda m: per_item[m].mean())
        table = []
        for label, r in rows.items():
            diff = per_item[label] - per_item[best_source]
            table.append({
                "model": label,
                **{o: [float(r[o].mean()), float(r[o].std(ddof=1) / np.sqrt(r[o].size))]
                   for o in all_objectives},
                "objective_mean": float(per_item[label].mean()),
                "vs_best_source": [float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(diff.size))],
            })
        report["showcases"][show_name] = {
            "objectives": objectives, "best_source": best_source, "best_recipe": grid[best_label],
            "best_label": best_label, "search_means": search_means, "rows": table,
        }
        print(f"\n### {show_name} (objectives: {', '.join(objectives)}; "
              f"test split, {rows['base'][objectives[0]].size} items per benchmark)\n")
        header = "| model | " + " | ".join(all_objectives) + " | mean of objectives | " \
                 f"vs best source ({best_source}), paired |"
        print(header)
        print("|" + "---|" * (len(all_objectives) + 3))
        for row in table:
            cells = [f"{row[o][0]:.3f} ± {row[o][1]:.3f}" for o in all_objectives]
            d, se = row["vs_best_source"]
            print(f"| {row['model']} | " + " | ".join(cells)
                  + f" | {row['objective_mean']:.3f} | {100 * d:+.1f} ± {100 * se:.1f} pts |")
    print(f"\n(total {time.perf_counter() - start:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot(report, args.plot)


if __name__ == "__main__":
    main()

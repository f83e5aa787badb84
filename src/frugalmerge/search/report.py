"""``report.md`` of a run: what was searched, what it cost, what it found, estimated vs true."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from frugalmerge.search.store import atomic_write_text

if TYPE_CHECKING:
    from frugalmerge.search.loop import SearchRun, SearchState


def _acc(cell: dict[str, Any] | None) -> str:
    if not cell:
        return "-"
    return f"{cell['acc']:.3f} ± {cell['se']:.3f}"


def items_with_promotion(summary: dict[str, Any]) -> tuple[int, int]:
    """(all items the search evaluated, those of the final promotion's re-scoring): the re-scoring
    is part of choosing the merge, so it counts in the items and the ratio to full fitness."""
    promo = int(summary.get("promotion_items") or 0)
    return summary["items_evaluated"] + promo, promo


def write_report(run: SearchRun, state: SearchState, summary: dict[str, Any],
                 tested: dict[str, dict[str, Any]]) -> None:
    """Write ``RUN_DIR/report.md`` from the run summary."""
    cfg = run.config
    names = run.names
    lines = [f"# Search report: {cfg.name}", ""]
    lines += [f"- algorithm: `{cfg.algorithm.name}` (population {cfg.algorithm.pop_size}), seed {cfg.seed}, "
              f"{summary['generations']} generations, {summary['candidates']} distinct candidates",
              f"- merge method(s): {', '.join(cfg.method.choices)}; genes: {run.space.n_var} "
              f"({', '.join(run.space.gene_names[:12])}{', ...' if run.space.n_var > 12 else ''})",
              f"- fitness: `{cfg.fitness}`"]
    for o in run.fitness.objectives:
        lines.append(f"  - {o.describe()}")
    if summary["calibration_items"]:
        lines.append(f"- estimator calibration: responses of the sources ({cfg.calibration.include_sources}), the base "
                     f"({cfg.calibration.include_base}) and {cfg.calibration.random_merges} seeded random merges on the "
                     f"calibration pool: {summary['calibration_items']:,} items, counted below")
    total, promo = items_with_promotion(summary)
    lines += [
              f"- items evaluated by this search: **{total:,}**"
              + (f" ({summary['items_evaluated']:,} during the generations + {promo:,} final re-scoring)"
                 if promo else "")
              + f"; the same search with full-benchmark fitness: {summary['items_full_fitness']:,} "
              f"({summary['items_full_fitness'] / max(total, 1):.1f}x more)",
              f"- time: search {summary['search_seconds']:.1f} s, final stage {summary['final_seconds']:.1f} s", ""]
    if summary.get("evolved") is not None:
        lines += ["## True accuracy on the held-out test split", "",
                  "| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for model, cells in summary["sources"].items():
            lines.append(f"| source `{model}` | " + " | ".join(_acc(cells[n]) for n in names) + " |")
        if summary.get("base"):
            lines.append("| base | " + " | ".join(_acc(summary["base"][n]) for n in names) + " |")
        if summary.get("average"):
            lines.append("| naive average (linear) | " + " | ".join(_acc(summary["average"][n]) for n in names) + " |")
        label = "evolved (knee of the Pareto set)" if len(names) > 1 else "evolved (best)"
        lines.append(f"| **{label}** | " + " | ".join(_acc(summary["evolved"][n]) for n in names) + " |")
        lines.append("")
    if tested:
        lines += ["## Estimated (search) vs true (test)", "",
                  "| candidate | generation | " + " | ".join(f"{n} est. | {n} true" for n in names) + " |",
                  "|---|---|" + "---|---|" * len(names)]
        for key, test in tested.items():
            e = state.cache[key]
            cells = " | ".join(f"{e['estimate'][n]['value']:.3f} ± {e['estimate'][n]['se']:.3f} | {_acc(test[n])}"
                               for n in names)
            lines.append(f"| `{key[:10]}`{' (chosen)' if key == summary['chosen'] else ''} | {e['generation']} | {cells} |")
        lines.append("")
    import yaml

    chosen = state.cache[summary["chosen"]]
    lines += ["## Chosen recipe (mergekit YAML)", "", "```yaml", yaml.safe_dump(chosen["recipe"], sort_keys=False).rstrip(),
              "```", ""]
    if summary.get("export"):
        lines += [f"Exported to `{summary['export']}` (Hugging Face directory, mergekit YAML, model card).", ""]
    if summary.get("plots"):
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in summary["plots"]] + [""]
    atomic_write_text(run.run_dir / "report.md", "\n".join(lines))

"""Turn the JSON files written by ``benchmarks/estimators_bench.sh`` into markdown tables.

Usage: python benchmarks/estimators_report.py [RESULTS_DIR]  -> prints one table per data set
(MAE / max error in points, Spearman, per method and k), a default-vs-references summary and, where
the JSON has them (bench runs since session 7), default's RMSE and how often its reported standard
error covers the error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ORDER = ["arc", "gsm8k", "mmlu", "minilongbench"] + [
    f"psn_{b}" for b in ("arc_c", "bbh", "chinese_simpleqa", "gpqa_diamond", "gsm8k", "hellaswag", "humaneval",
                         "math", "mbpp", "mmlu", "theoremqa")]


def load(results: Path) -> dict[str, dict]:
    out = {}
    for name in ORDER:
        path = results / f"estimators_{name}.json"
        if path.is_file():
            out[name] = json.loads(path.read_text())
    return out


def table(doc: dict) -> str:
    rows = doc["results"]
    ks = sorted({r["k"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["k"]): r for r in rows}
    head = "| method | " + " | ".join(f"k={k}" for k in ks) + " |"
    lines = [head, "|---|" + "---|" * len(ks)]
    for m in methods:
        cells = []
        for k in ks:
            r = by.get((m, k))
            cells.append("" if r is None else f"{100 * r['mae']:.2f} / {100 * r['max_abs_error']:.1f} / {r['spearman']:.3f}")
        name = f"**{m}**" if m == "default" else m
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    results = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results"
    docs = load(results)
    for name, doc in docs.items():
        meta = doc.get("meta", {})
        print(f"### {name}: {meta.get('n_models')} models x {meta.get('n_items')} items, "
              f"{meta.get('folds')}-fold CV, target: {meta.get('target')}\n")
        print("MAE (points) / max |error| (points) / Spearman\n")
        print(table(doc))
        print()
    print("### default vs the best reference (MAE points)\n")
    print("| data set | k | default | ridge | best other | best other method |")
    print("|---|---|---|---|---|---|")
    for name, doc in docs.items():
        rows = doc["results"]
        for k in sorted({r["k"] for r in rows}):
            at = {r["method"]: r for r in rows if r["k"] == k}
            if "default" not in at:
                continue
            others = {m: r for m, r in at.items() if m != "default"}
            best = min(others, key=lambda m: others[m]["mae"]) if others else "-"
            ridge = f"{100 * at['ridge']['mae']:.2f}" if "ridge" in at else "-"
            print(f"| {name} | {k} | {100 * at['default']['mae']:.2f} | {ridge} | "
                  f"{100 * others[best]['mae']:.2f} | {best} |" if others else "")
    uncertainty = [(name, r, e) for name, doc in docs.items() for r in doc["results"]
                   for e in doc.get("extra", []) if r["method"] == "default" == e["method"] and r["k"] == e["k"]
                   and "rmse" in e]
    if uncertainty:
        print("\n### default: RMSE and reported standard errors (points)\n")
        print("| data set | k | MAE | RMSE | mean SE | \\|error\\| ≤ 2 SE |")
        print("|---|---|---|---|---|---|")
        for name, r, e in uncertainty:
            print(f"| {name} | {r['k']} | {100 * r['mae']:.2f} | {100 * e['rmse']:.2f} | {100 * e['mean_se']:.2f} | "
                  f"{100 * e['within_2se']:.0f}% |")


if __name__ == "__main__":
    main()

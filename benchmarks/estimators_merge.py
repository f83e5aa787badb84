"""Merge a partial estimator-bench JSON (some methods re-run) into the full one, then re-plot.

Usage: python benchmarks/estimators_merge.py FULL.json PARTIAL.json [--plot OUT.png]
Rows of FULL whose method appears in PARTIAL are replaced by PARTIAL's rows (same k values
required: a method is re-run on the same grid and folds); other methods are kept as they were.
Used by ``estimators_bench.sh`` when ``METHODS`` restricts a re-run to the estimators that changed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from frugalmerge.estimators.bench import plot_results  # noqa: E402


def merge(full: dict, part: dict) -> dict:
    """``full`` with the rows (results and extra) of ``part``'s methods replaced by ``part``'s."""
    for key in ("folds", "seed", "n_models", "n_items", "data_sha256"):
        a, b = full.get("meta", {}).get(key), part.get("meta", {}).get(key)
        if a is not None and b is not None and a != b:
            raise SystemExit(f"estimators_merge: meta {key!r} differs ({a!r} vs {b!r}): not the same benchmark")
    new = {r["method"] for r in part["results"]}
    out = dict(full)
    for section in ("results", "extra"):
        kept = [r for r in full.get(section, []) if r["method"] not in new]
        out[section] = kept + list(part.get(section, []))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("full", type=Path)
    ap.add_argument("partial", type=Path)
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args()
    full = json.loads(args.full.read_text()) if args.full.is_file() else {"results": [], "extra": []}
    doc = merge(full, json.loads(args.partial.read_text()))
    tmp = args.full.with_name(f".{args.full.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=True))
    tmp.replace(args.full)
    if args.plot:
        extra = {(e["method"], e["k"]): e for e in doc.get("extra", [])}
        rows = [{**r, **extra.get((r["method"], r["k"]), {})} for r in doc["results"]]
        meta = doc.get("meta", {})
        title = f"{meta.get('name', '')}: {meta.get('n_models')} models x {meta.get('n_items')} items, {meta.get('folds')}-fold CV"
        plot_results(rows, args.plot, title=title)
    print(f"merged {sorted({r['method'] for r in json.loads(args.partial.read_text())['results']})} into {args.full}")


if __name__ == "__main__":
    main()

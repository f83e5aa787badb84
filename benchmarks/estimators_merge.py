"""Merge a partial estimator-bench JSON (some methods re-run) into the full one, then re-plot.

Usage: python benchmarks/estimators_merge.py FULL.json PARTIAL.json [--plot OUT.png]
Rows of FULL whose (method, k) appears in PARTIAL are replaced in place by PARTIAL's rows (same
data, folds and seed required); every other row is kept as it was, and PARTIAL's new rows are
appended. Used by ``estimators_bench.sh`` when ``METHODS`` restricts a re-run to the estimators that
changed (and by hand when a change can only move some k, e.g. ``--k all``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from frugalmerge.estimators.bench import plot_results  # noqa: E402


def merge(full: dict, part: dict) -> dict:
    """``full`` with its rows (results and extra) for ``part``'s (method, k) pairs replaced by ``part``'s."""
    for key in ("folds", "seed", "n_models", "n_items", "data_sha256"):
        a, b = full.get("meta", {}).get(key), part.get("meta", {}).get(key)
        if a is not None and b is not None and a != b:
            raise SystemExit(f"estimators_merge: meta {key!r} differs ({a!r} vs {b!r}): not the same benchmark")
    out = dict(full)
    for section in ("results", "extra"):
        new = {(r["method"], r["k"]): r for r in part.get(section, [])}
        rows = [new.pop((r["method"], r["k"]), r) for r in full.get(section, [])]
        out[section] = rows + list(new.values())
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
    pairs = sorted({(r["method"], str(r["k"])) for r in json.loads(args.partial.read_text())["results"]})
    print(f"merged {pairs} into {args.full}")


if __name__ == "__main__":
    main()

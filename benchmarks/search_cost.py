"""Cheap-fitness vs full-fitness search, side by side in one run.

Both searches use the same showcase config, algorithm, seed, population and generations; the only
difference is the fitness: ``cheap`` (k items chosen by the estimator + its estimate of the whole
search split, after a calibration that is counted in the items) vs ``full`` (every item of the
search split). The script prints a table (items evaluated, ratio, TRUE held-out test accuracy of
the chosen merge with its standard error, seconds) and, with ``--md``, writes it to a markdown file
together with the command that produced it.

    PYTHONPATH=src /work/venv/bin/python benchmarks/search_cost.py [--zoo DIR] \
        [--showcase cross_domain] [--generations 12] [--pop 10] [--k 10] [--pool 100] \
        [--md benchmarks/results/search.md]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _configs(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from frugalmerge.search.demo import showcase_configs
    from frugalmerge.zoo import ensure_zoo, load_zoo

    zoo = load_zoo(args.zoo) if args.zoo else ensure_zoo("full")
    raw = showcase_configs(zoo)[args.showcase]
    raw = {**raw, "seed": args.seed,
           "algorithm": {**raw["algorithm"], "pop_size": args.pop},
           "budget": {"generations": args.generations},
           "calibration": {"random_merges": args.random_merges, "pool": args.pool},
           "objectives": [{**o, "k": args.k, "estimator": args.estimator} for o in raw["objectives"]],
           "final": {**raw["final"], "export": "none", "max_pareto_test": 1}}
    return zoo, raw


def _run(raw: dict[str, Any], fitness: str, out: Path, promote: int = 0) -> dict[str, Any]:
    from frugalmerge.search.config import config_from_dict
    from frugalmerge.search.loop import run_search

    label = fitness if fitness == "full" else f"cheap-promote{promote}"
    cfg = config_from_dict({**raw, "name": f"{raw['name']}-{label}", "fitness": fitness,
                            "fidelity": {"promote_per_generation": promote if fitness == "cheap" else 0}})
    t0 = time.perf_counter()
    result = run_search(cfg, out / label)
    result["wall_seconds"] = time.perf_counter() - t0
    return result


def _fmt(cells: dict[str, Any]) -> str:
    return ", ".join(f"{n} {100 * c['acc']:.1f} ± {100 * c['se']:.1f}" for n, c in cells.items())


def _mean(cells: dict[str, Any]) -> float:
    return sum(c["acc"] for c in cells.values()) / len(cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default=None, help="zoo folder (default: the shipped full zoo)")
    parser.add_argument("--showcase", default="cross_domain", choices=["cross_domain", "multilingual"])
    parser.add_argument("--generations", type=int, default=12)
    parser.add_argument("--pop", type=int, default=10)
    parser.add_argument("--k", type=int, default=10, help="items per objective for the cheap fitness")
    parser.add_argument("--pool", type=int, default=100, help="calibration pool (items of the search split)")
    parser.add_argument("--random-merges", type=int, default=6, help="random merges in the calibration set")
    parser.add_argument("--estimator", default="mpirt")
    parser.add_argument("--promote", default="0,1",
                        help="cheap variants: best new candidates per generation re-scored on the pool (comma list)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="keep the two run directories here")
    parser.add_argument("--md", default=None, help="write the results table (markdown) here")
    args = parser.parse_args(argv)

    from frugalmerge.runtime import configure_torch_threads

    configure_torch_threads()
    try:
        zoo, raw = _configs(args)
    except Exception as exc:  # no zoo: skip cleanly
        print(f"search_cost: skipped ({exc})")
        return 0
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="search_cost_"))
    promotes = [int(p) for p in args.promote.split(",") if p.strip()]
    results = {f"cheap-promote{p}": _run(raw, "cheap", out, p) for p in promotes}
    results["full"] = full = _run(raw, "full", out)
    cheap = results[f"cheap-promote{promotes[0]}"]
    rows = [("fitness", "items evaluated", "full / cheap items", "candidates",
             "TRUE test accuracy of the chosen merge (points ± SE)", "cheap - full (points)", "seconds")]
    for p in promotes:
        r = results[f"cheap-promote{p}"]
        label = "cheap (k items + estimator)" + (f", {p} promoted/generation" if p else "")
        rows.append((label, f"{r['items_evaluated']:,} (calibration {r['calibration_items']:,})",
                     f"**{full['items_evaluated'] / max(r['items_evaluated'], 1):.1f}x**", str(r["candidates"]),
                     _fmt(r["evolved"]), f"{100 * (_mean(r['evolved']) - _mean(full['evolved'])):+.1f}",
                     f"{r['wall_seconds']:.0f}"))
    rows.append(("full (whole search split)", f"{full['items_evaluated']:,}", "1x", str(full["candidates"]),
                 _fmt(full["evolved"]), "0", f"{full['wall_seconds']:.0f}"))
    base = {"sources": cheap["sources"], "average": cheap["average"]}
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    lines += ["", "- targets: items ratio >= 20x; cheap within 1 point of full on TRUE test accuracy",
              "- baselines (TRUE test accuracy): "
              + "; ".join(f"{m}: {_fmt(c)}" for m, c in base["sources"].items())
              + (f"; naive average: {_fmt(base['average'])}" if base["average"] else "")]
    table = "\n".join(lines)
    print(table)
    if args.md:
        cmd = "PYTHONPATH=src /work/venv/bin/python benchmarks/search_cost.py " + " ".join(
            shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        md = Path(args.md)
        md.parent.mkdir(parents=True, exist_ok=True)
        header = (f"# Search cost: cheap vs full fitness ({args.showcase})\n\n"
                  f"Zoo: `{zoo.root.name}` ({zoo.size}); algorithm {raw['algorithm']['name']}, population {args.pop}, "
                  f"{args.generations} generations, seed {args.seed}; cheap fitness: estimator `{args.estimator}` on "
                  f"k = {args.k} items per objective, calibrated on sources + base + naive average + {args.random_merges} random "
                  f"merges over a {args.pool}-item pool of the search split. One run, 1 CPU thread.\n\n"
                  f"Command:\n\n```\n{cmd}\n```\n\n")
        md.write_text(header + table + "\n", encoding="utf-8")
        (md.with_suffix(".json")).write_text(json.dumps(
            {fit: {k: r[k] for k in ("items_evaluated", "calibration_items", "candidates", "evolved",
                                     "wall_seconds", "chosen_estimate", "items_full_fitness")}
             for fit, r in results.items()}, indent=2))
        print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

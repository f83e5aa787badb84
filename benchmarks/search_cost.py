"""Cheap-fitness vs full-fitness search, side by side in one run (and over a few seeds).

Every search uses the same showcase config, algorithm, population and generations; for each seed,
the full-fitness search (every item of the search split) and each cheap variant run with that seed.
Cheap variants (``--variants``, comma list; options joined by ``:``):

* ``calibrated`` - the estimator (``--estimator``) is calibrated inside the run on sources + base +
  naive average + ``--random-merges`` random merges over a ``--pool``-item pool (counted in the run's
  items);
* ``card`` - the shipped estimator cards (``--cards``, written once by ``frugalmerge zoo cards``):
  no calibration in the run; each candidate costs the card's k items;
* ``:finalN`` - at the end, the top N candidates are re-scored on the whole search split and the
  best of those is chosen (counted);
* ``:promoteN@K`` - per generation, the N best new candidates are re-estimated on K items (the
  card's estimator refitted at K on the card's training responses; counted).

The one-off cost of the cards (their training models' item evaluations, from ``cards.json``) is
reported next to the ratio, and the ratio with that cost amortised over one run. The TRUE test
accuracy (held-out test split) of each chosen merge, the gap to the full-fitness search of the same
seed, and over several seeds the mean gap and its standard error are printed and, with ``--md``,
written to a markdown file with the command that produced them.

    PYTHONPATH=src /work/venv/bin/python benchmarks/search_cost.py [--zoo DIR] [--cards estimators/zoo] \
        [--variants calibrated,card,card:final2] [--seeds 0,1,2] [--md benchmarks/results/search.md]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Variant:
    """One cheap-fitness variant of the search."""

    label: str
    card: bool
    final_top: int = 0
    promote: int = 0
    promote_k: int | None = None

    def describe(self, estimator: str, k: int, pool: int, random_merges: int, card_k: dict[str, int]) -> str:
        if self.card:
            ks = ", ".join(f"{b} k = {v}" for b, v in card_k.items())
            text = f"card ({ks})"
        else:
            text = f"`{estimator}` calibrated in the run (k = {k}, pool {pool}, {random_merges} random merges)"
        if self.promote:
            text += f", {self.promote} promoted/generation to {self.promote_k or 'the whole split of'} items"
        if self.final_top:
            where = "the whole search split" if self.card else "the calibration pool"
            text += f", top {self.final_top} re-scored on {where}"
        return text


def parse_variant(text: str) -> Variant:
    """``card:final2:promote1@50`` -> :class:`Variant` (one clear error on anything else)."""
    head, *opts = text.strip().split(":")
    if head not in ("card", "calibrated"):
        raise SystemExit(f"search_cost: variant {text!r} must start with 'card' or 'calibrated'")
    final_top, promote, promote_k = 0, 0, None
    for opt in opts:
        if m := re.fullmatch(r"final(\d+)", opt):
            final_top = int(m.group(1))
        elif m := re.fullmatch(r"promote(\d+)(?:@(\d+))?", opt):
            promote, promote_k = int(m.group(1)), (int(m.group(2)) if m.group(2) else None)
        else:
            raise SystemExit(f"search_cost: unknown variant option {opt!r} in {text!r} (finalN, promoteN@K)")
    return Variant(text.strip(), head == "card", final_top, promote, promote_k)


def _showcase(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from frugalmerge.search.demo import showcase_configs
    from frugalmerge.zoo import ensure_zoo, load_zoo

    zoo = load_zoo(args.zoo) if args.zoo else ensure_zoo("full")
    return zoo, showcase_configs(zoo)[args.showcase]


def _config(raw: dict[str, Any], args: argparse.Namespace, seed: int, variant: Variant | None,
            cards: Path | None) -> dict[str, Any]:
    """The raw config of one search: ``variant`` None = full fitness."""
    final = {**raw["final"], "export": "none", "max_pareto_test": 1}
    objectives = [{**o, "k": args.k, "estimator": args.estimator} for o in raw["objectives"]]
    cfg = {**raw, "seed": seed, "algorithm": {**raw["algorithm"], "pop_size": args.pop},
           "budget": {"generations": args.generations},
           "calibration": {"random_merges": args.random_merges, "pool": args.pool},
           "fidelity": {"promote_per_generation": 0}, "final": final, "objectives": objectives,
           "fitness": "full" if variant is None else "cheap",
           "name": f"{raw['name']}-{'full' if variant is None else variant.label}-seed{seed}"}
    if variant is None:
        return cfg
    if variant.card:
        cfg["objectives"] = [{**o, "card": str(cards / o["benchmark"])} for o in objectives]
    if variant.promote:
        cfg["fidelity"] = {"promote_per_generation": variant.promote, "k": variant.promote_k}
    if variant.final_top:
        # k above any split size: the promotion is the plain mean over the whole search split.
        cfg["final"] = {**final, "promotion": {"top": variant.final_top, "k": 1_000_000}}
    return cfg


def _run(cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    from frugalmerge.search.config import config_from_dict
    from frugalmerge.search.loop import run_search

    config = config_from_dict(cfg)
    t0 = time.perf_counter()
    result = run_search(config, out / cfg["name"], quiet=True)
    result["wall_seconds"] = time.perf_counter() - t0
    result["items_total"] = result["items_evaluated"] + result.get("promotion_items", 0)
    return result


def _fmt(cells: dict[str, Any]) -> str:
    return ", ".join(f"{n} {100 * c['acc']:.1f} ± {100 * c['se']:.1f}" for n, c in cells.items())


def _mean(cells: dict[str, Any]) -> float:
    return sum(c["acc"] for c in cells.values()) / len(cells)


def _card_cost(cards: Path, benchmarks: list[str]) -> tuple[int, dict[str, int]]:
    """(one-off items of the cards these objectives use, {benchmark: card k})."""
    index = json.loads((cards / "cards.json").read_text())
    cost = sum(int(index["cards"][b]["items_evaluated"]) for b in benchmarks)
    ks = {b: int(json.loads((cards / b / "card.json").read_text())["k"]) for b in benchmarks}
    return cost, ks


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    return ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])] + ["| " + " | ".join(r) + " |" for r in rows[1:]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default=None, help="zoo folder (default: the shipped full zoo)")
    parser.add_argument("--showcase", default="cross_domain", choices=["cross_domain", "multilingual"])
    parser.add_argument("--generations", type=int, default=12)
    parser.add_argument("--pop", type=int, default=10)
    parser.add_argument("--k", type=int, default=10, help="items per objective of the calibrated variant")
    parser.add_argument("--pool", type=int, default=100, help="calibration pool of the calibrated variant")
    parser.add_argument("--random-merges", type=int, default=6, help="random merges calibrated on in the run")
    parser.add_argument("--estimator", default="mpirt", help="estimator of the calibrated variant")
    parser.add_argument("--cards", default=str(REPO / "estimators" / "zoo"), help="cards folder (zoo cards)")
    parser.add_argument("--variants", default="calibrated,card,card:final2", help="cheap variants (see above)")
    parser.add_argument("--seeds", default="0", help="comma list; the first is the table's 'one run'")
    parser.add_argument("--out", default=None, help="keep the run directories here")
    parser.add_argument("--md", default=None, help="write the results (markdown) here, and JSON beside it")
    args = parser.parse_args(argv)

    from frugalmerge.runtime import configure_torch_threads

    configure_torch_threads()
    variants = [parse_variant(v) for v in args.variants.split(",") if v.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    try:
        zoo, raw = _showcase(args)
    except Exception as exc:  # no zoo: skip cleanly
        print(f"search_cost: skipped ({exc})")
        return 0
    cards = Path(args.cards)
    benches = [o["benchmark"] for o in raw["objectives"]]
    card_cost, card_k = (0, {})
    if any(v.card for v in variants):
        if not (cards / "cards.json").is_file():
            print(f"search_cost: no cards at {cards} (build them: frugalmerge zoo cards --out {cards})")
            return 1
        card_cost, card_k = _card_cost(cards, benches)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="search_cost_"))
    results: dict[int, dict[str, dict[str, Any]]] = {}
    for seed in seeds:
        results[seed] = {}
        for v in [None, *variants]:
            label = "full" if v is None else v.label
            print(f"seed {seed}: {label} ...", flush=True)
            results[seed][label] = _run(_config(raw, args, seed, v, cards), out)

    first = results[seeds[0]]
    full = first["full"]
    head = ("fitness", "items evaluated", "full / cheap items", "with the cards' one-off cost",
            "candidates", "TRUE test accuracy of the chosen merge (points ± SE)", "cheap - full (points)", "seconds")
    rows = [head]
    for v in variants:
        r = first[v.label]
        oneoff = card_cost if v.card else 0
        amort = (f"{full['items_total'] / (r['items_total'] + oneoff):.2f}x (+{oneoff:,} once)" if v.card else "-")
        parts = [f"calibration {r['calibration_items']:,}"] if r["calibration_items"] else []
        if r.get("promotion_items"):
            parts.append(f"final re-scoring {r['promotion_items']:,}")
        rows.append((v.describe(args.estimator, args.k, args.pool, args.random_merges, card_k),
                     f"{r['items_total']:,}" + (f" ({'; '.join(parts)})" if parts else ""),
                     f"**{full['items_total'] / max(r['items_total'], 1):.1f}x**", amort, str(r["candidates"]),
                     _fmt(r["evolved"]), f"{100 * (_mean(r['evolved']) - _mean(full['evolved'])):+.1f}",
                     f"{r['wall_seconds']:.0f}"))
    rows.append(("full (whole search split)", f"{full['items_total']:,}", "1x", "-", str(full["candidates"]),
                 _fmt(full["evolved"]), "0", f"{full['wall_seconds']:.0f}"))
    lines = [f"### One run (seed {seeds[0]})", "", *_table(rows), "",
             "- targets: items ratio >= 20x (aim 50x); cheap within 1 point of full on TRUE test accuracy",
             "- baselines (TRUE test accuracy): " + "; ".join(f"{m}: {_fmt(c)}" for m, c in full["sources"].items())
             + (f"; naive average: {_fmt(full['average'])}" if full["average"] else "")]
    if card_cost:
        lines.append(f"- cards' one-off cost: {card_cost:,} items (their training models on the whole search split, "
                     f"paid once when the cards were built: `frugalmerge zoo cards`)")
    summary: dict[str, Any] = {}
    if len(seeds) > 1:
        srows = [("fitness", "seeds", "mean full / cheap items", "cheap - full per seed (points)",
                  "mean cheap - full ± SE (points)", "mean TRUE accuracy cheap / full (points)")]
        for v in variants:
            gaps = [100 * (_mean(results[s][v.label]["evolved"]) - _mean(results[s]["full"]["evolved"])) for s in seeds]
            ratios = [results[s]["full"]["items_total"] / max(results[s][v.label]["items_total"], 1) for s in seeds]
            mean = sum(gaps) / len(gaps)
            se = math.sqrt(sum((g - mean) ** 2 for g in gaps) / (len(gaps) - 1) / len(gaps))
            acc_c = sum(100 * _mean(results[s][v.label]["evolved"]) for s in seeds) / len(seeds)
            acc_f = sum(100 * _mean(results[s]["full"]["evolved"]) for s in seeds) / len(seeds)
            summary[v.label] = {"gaps": gaps, "mean_gap": mean, "se_gap": se, "mean_ratio": sum(ratios) / len(ratios)}
            srows.append((v.describe(args.estimator, args.k, args.pool, args.random_merges, card_k),
                          ",".join(map(str, seeds)), f"{sum(ratios) / len(ratios):.1f}x",
                          ", ".join(f"{g:+.1f}" for g in gaps), f"**{mean:+.1f} ± {se:.1f}**",
                          f"{acc_c:.1f} / {acc_f:.1f}"))
        lines += ["", f"### Seeds {', '.join(map(str, seeds))} side by side", "", *_table(srows)]
    text = "\n".join(lines)
    print(text)
    if args.md:
        cmd = "PYTHONPATH=src /work/venv/bin/python benchmarks/search_cost.py " + " ".join(
            shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        md = Path(args.md)
        md.parent.mkdir(parents=True, exist_ok=True)
        header = (f"## Search cost: cheap vs full fitness ({args.showcase})\n\n"
                  f"Zoo: `{zoo.root.name}` ({zoo.size}); algorithm {raw['algorithm']['name']}, population {args.pop}, "
                  f"{args.generations} generations; for each seed the full-fitness search and every cheap variant "
                  f"run with that seed. 1 CPU thread.\n\nCommand:\n\n```\n{cmd}\n```\n\n")
        tmp = md.with_name(f".{md.name}.tmp")
        tmp.write_text(header + text + "\n", encoding="utf-8")
        tmp.replace(md)
        keys = ("items_evaluated", "items_total", "calibration_items", "promotion_items", "candidates", "evolved",
                "wall_seconds", "chosen_estimate", "items_full_fitness")
        md.with_suffix(".json").write_text(json.dumps(
            {"card_one_off_items": card_cost, "summary": summary,
             "runs": {str(s): {lab: {k: r.get(k) for k in keys} for lab, r in runs.items()} for s, runs in results.items()}},
            indent=2))
        print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

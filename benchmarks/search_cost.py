"""Cheap-fitness vs full-fitness search, side by side in one run (and over a few seeds).

Every search uses the same showcase config, algorithm, population and generations; for each seed,
the full-fitness search (every item of the search split) and each cheap variant run with that seed.
Cheap variants (``--variants``, comma list; options joined by ``:``):

* ``calibrated`` - the estimator (``--estimator``) is calibrated inside the run on sources + base +
  naive average + ``--random-merges`` random merges over a ``--pool``-item pool (counted in the run's
  items);
* ``rotN`` - no estimator: each candidate scored on N items of the search split drawn for it alone
  (``rotating: N``; their plain mean), meant with ``:surrogategp``, which pools every candidate's items;
* ``card`` - the shipped estimator cards (``--cards``, written once by ``frugalmerge zoo cards``):
  no calibration in the run; each candidate costs the card's k items; ``card@DIR`` uses the cards
  folder DIR instead (e.g. cards built with pilot searches), so several card sets compare in one run;
* ``:finalN`` - at the end, the top N candidates are re-scored on the whole search split and the
  best of those is chosen (counted); ``:finalN@K`` re-estimates them on K items instead;
* ``:raceZ`` (with ``:promoteN@K``) - racing: only new candidates whose estimate + Z standard errors
  reaches the best value of the earlier generations are promoted (at most N);
* ``:promoteN@K`` - per generation, the N best new candidates are re-estimated on K items (the
  card's estimator refitted at K on the card's training responses; counted);
* ``:surrogateNAME`` (e.g. ``:surrogategp``) - ``fidelity.surrogate``: the optimiser and the final
  pick see a smoother's posterior mean over every evaluated candidate instead of each one's own
  estimate; ``:ucbZ`` promotes by the surrogate's mean + Z SD; ``:pickp`` picks among the promoted only;
  ``:pickzZ`` picks by the surrogate's mean - Z SD (a lower confidence bound); ``:tbE`` (with
  ``:nosteer``) tells the optimiser its estimate + E x the posterior mean (ties broken by the surrogate);
  ``:fsur`` (with ``:finalN``) enters the final re-estimates into the surrogate and picks its argmax;
  ``card:adaptive`` - each candidate takes a sequential adaptive test of the card's k items (2PL IRT
  calibrated on the card's training responses, p-IRT estimate) instead of the card's fixed items;
  ``:nosteer``: the optimiser sees its own estimates, the surrogate only chooses the final merge.

The one-off cost of the cards (their training models' item evaluations, from ``cards.json``) is
reported next to the ratio, and the ratio with that cost amortised over one run. The TRUE test
accuracy (held-out test split) of each chosen merge, the gap to the full-fitness search of the same
seed, and over several seeds the mean gap and its standard error are printed and, with ``--md``,
written to a markdown file with the command that produced them.

``--diagnose FILE.json`` scores every candidate of the first seed's runs on the whole search split
and on the test split (for diagnosis only: counted nowhere, seen by no run) and writes them with a
summary (chosen vs the archive's best, estimate bias, rank correlations) and a PNG of estimate vs
search-split score per run. ``--reuse`` reads back finished runs of the same config (same hash)
under ``--out`` instead of running them again (runs are deterministic).

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

import numpy as np

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Variant:
    """One cheap-fitness variant of the search."""

    label: str
    card: bool
    final_top: int = 0
    promote: int = 0
    promote_k: int | None = None
    cards: str | None = None  # ``card@DIR``: this variant's cards folder instead of ``--cards``
    final_k: int | None = None  # ``finalN@K``: the top N re-estimated on K items (None: the whole split)
    race_z: float | None = None  # ``raceZ``: racing promotions (FidelitySpec.racing_z)
    surrogate: str | None = None  # ``surrogateNAME``: FidelitySpec.surrogate
    ucb_z: float | None = None  # ``ucbZ``: FidelitySpec.surrogate_ucb_z
    pick_promoted: bool = False  # ``pickp``: FidelitySpec.surrogate_pick_promoted
    rotating: int = 0  # ``rotN``: ObjectiveSpec.rotating
    steer: bool = True  # ``nosteer``: FidelitySpec.surrogate_steer False
    pick_z: float = 0.0  # ``pickzZ``: FidelitySpec.surrogate_pick_z (pick by mean - Z SD)
    tiebreak: float = 0.0  # ``tbE``: FidelitySpec.surrogate_tiebreak (told estimate + E x mean)
    final_into: bool = False  # ``fsur``: PromotionSpec.into_surrogate (re-estimates join the surrogate)
    adaptive: bool = False  # ``adaptive`` (with ``card``): ObjectiveSpec.adaptive, IRT from the card's data

    def describe(self, estimator: str, k: int, pool: int, random_merges: int, card_k: dict[str, str]) -> str:
        if self.rotating:
            text = f"{self.rotating} rotating items per candidate (plain mean)"
        elif self.card:
            ks = ", ".join(f"{b} k = {v}" for b, v in card_k.items())
            text = f"card ({ks}{', ' + Path(self.cards).name if self.cards else ''})"
            if self.adaptive:
                text = f"adaptive test of {', '.join(str(v) for v in card_k.values())} items (2PL IRT on the card's data)"
        else:
            text = f"`{estimator}` calibrated in the run (k = {k}, pool {pool}, {random_merges} random merges)"
        if self.promote:
            text += f", {self.promote} promoted/generation to {self.promote_k or 'the whole split of'} items"
            if self.race_z is not None:
                text += f" (racing: estimate + {self.race_z:g} SE >= incumbent)"
        if self.surrogate:
            text += f", {self.surrogate} surrogate over all candidates"
            if self.ucb_z is not None:
                text += f" (promotion by mean + {self.ucb_z:g} SD)"
            if self.pick_promoted:
                text += " (pick among promoted)"
            if self.pick_z:
                text += f" (pick by mean - {self.pick_z:g} SD)"
            if self.tiebreak:
                text += f" (ties of estimates broken by the surrogate, {self.tiebreak:g} x mean)"
            if not self.steer:
                text = text.replace("gp surrogate over all candidates", "final pick by a gp surrogate over all candidates")
        if self.final_top:
            where = (f"{self.final_k} items" if self.final_k else
                     "the whole search split" if self.card else "the calibration pool")
            text += f", top {self.final_top} re-scored on {where}"
            if self.final_into:
                text += " (re-scores into the surrogate, pick by its mean)"
        return text


def parse_variant(text: str) -> Variant:
    """``card:final2:promote1@50`` -> :class:`Variant` (one clear error on anything else)."""
    head, *opts = text.strip().split(":")
    head, _, cards_dir = head.partition("@")
    rot = re.fullmatch(r"rot(\d+)", head)
    if (head not in ("card", "calibrated") and not rot) or (cards_dir and head != "card"):
        raise SystemExit(f"search_cost: variant {text!r} must start with 'card', 'calibrated' or 'rotN'")
    final_top, final_k, promote, promote_k, race_z = 0, None, 0, None, None
    surrogate, ucb_z, pick_promoted, steer, pick_z, tiebreak = None, None, False, True, 0.0, 0.0
    final_into, adaptive = False, False
    for opt in opts:
        if m := re.fullmatch(r"final(\d+)(?:@(\d+))?", opt):
            final_top, final_k = int(m.group(1)), (int(m.group(2)) if m.group(2) else None)
        elif m := re.fullmatch(r"race(\d+(?:\.\d+)?)", opt):
            race_z = float(m.group(1))
        elif m := re.fullmatch(r"surrogate([a-z_]+)", opt):
            surrogate = m.group(1)
        elif m := re.fullmatch(r"ucb(\d+(?:\.\d+)?)", opt):
            ucb_z = float(m.group(1))
        elif m := re.fullmatch(r"pickz(\d+(?:\.\d+)?)", opt):
            pick_z = float(m.group(1))
        elif m := re.fullmatch(r"tb(\d+(?:\.\d+)?)", opt):
            tiebreak = float(m.group(1))
        elif opt == "adaptive":
            adaptive = True
        elif opt == "fsur":
            final_into = True
        elif opt == "pickp":
            pick_promoted = True
        elif opt == "nosteer":
            steer = False
        elif m := re.fullmatch(r"promote(\d+)(?:@(\d+))?", opt):
            promote, promote_k = int(m.group(1)), (int(m.group(2)) if m.group(2) else None)
        else:
            raise SystemExit(f"search_cost: unknown variant option {opt!r} in {text!r} "
                             "(finalN[@K], promoteN[@K], raceZ, surrogateNAME, ucbZ, pickp, pickzZ, tbE, fsur, adaptive, nosteer)")
    if race_z is not None and not promote:
        raise SystemExit(f"search_cost: variant {text!r}: raceZ needs promoteN")
    if adaptive and head != "card":
        raise SystemExit(f"search_cost: variant {text!r}: adaptive needs card")
    # How the surrogate options combine (ucbZ, pickp, pickzZ, nosteer, tbE, fsur) is the search
    # config's rule: main() validates every variant's config before the first run.
    return Variant(text.strip(), head == "card", final_top, promote, promote_k, cards_dir or None, final_k, race_z,
                   surrogate, ucb_z, pick_promoted, int(rot.group(1)) if rot else 0, steer, pick_z,
                   tiebreak, final_into, adaptive)


def _showcase(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from frugalmerge.search.demo import showcase_configs
    from frugalmerge.zoo import ensure_zoo, load_zoo

    zoo = load_zoo(args.zoo) if args.zoo else ensure_zoo("full")
    return zoo, showcase_configs(zoo)[args.showcase]


def _slug(label: str) -> str:
    """A variant label as a folder-name part (``card@/x/y:promote1@40`` -> ``card_x_y_promote1_40``)."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", label).strip("_")


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
           "name": f"{raw['name']}-{'full' if variant is None else _slug(variant.label)}-seed{seed}"}
    if variant is None:
        return cfg
    # Rotating items and cards use no estimator of the config (a card has its own, and its own
    # items unless tested adaptively, where k is the test length): those settings are dropped.
    bare = [{kk: v for kk, v in o.items() if kk not in ("k", "estimator")} for o in objectives]
    if variant.rotating:
        cfg["objectives"] = [{**o, "rotating": variant.rotating} for o in bare]
    if variant.card:
        folder = Path(variant.cards) if variant.cards else cards
        cfg["objectives"] = [{**o, "card": str(folder.resolve() / o["benchmark"]),
                              **({"adaptive": True, "k": args.k} if variant.adaptive else {})} for o in bare]
    if variant.promote:
        cfg["fidelity"] = {"promote_per_generation": variant.promote, "k": variant.promote_k,
                           **({"racing_z": variant.race_z} if variant.race_z is not None else {})}
    # Every surrogate option goes to the config as given (the config's defaults when not chosen, which
    # leave a run's hash unchanged), so the config's own validation rejects a bad combination.
    cfg["fidelity"] = {**cfg["fidelity"], "surrogate": variant.surrogate, "surrogate_ucb_z": variant.ucb_z,
                       "surrogate_pick_promoted": variant.pick_promoted, "surrogate_pick_z": variant.pick_z,
                       "surrogate_tiebreak": variant.tiebreak, "surrogate_steer": variant.steer}
    if variant.final_top or variant.final_into:
        # k above any split size: the promotion is the plain mean over the whole search split.
        cfg["final"] = {**final, "promotion": {"top": variant.final_top, "k": variant.final_k or 1_000_000,
                                               "into_surrogate": variant.final_into}}
    return cfg


def _run(cfg: dict[str, Any], out: Path, reuse: bool = False) -> tuple[dict[str, Any], Path]:
    """Run one search into ``out/<name>-<config hash>``; with ``reuse``, a finished run of the very
    same config found there is read back instead (runs are deterministic)."""
    import hashlib

    from frugalmerge.search.config import config_from_dict
    from frugalmerge.search.loop import run_search

    config = config_from_dict(cfg)
    # Defaults left out: a field added to the config later does not change the hash of old runs.
    key = config.model_dump_json(exclude_defaults=True)
    # A card is named by its path; a rebuilt card at the same path must not read back old runs.
    cards = [o.card for o in config.objectives if o.card is not None]
    if cards:
        key += "".join(hashlib.sha256((Path(c) / "card.json").read_bytes()).hexdigest() for c in cards)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    run_dir = out / f"{cfg['name']}-{digest}"
    done = run_dir / "results.json"
    if reuse and done.is_file():
        result = json.loads(done.read_text(encoding="utf-8"))
        result["wall_seconds"] = result["search_seconds"] + result["final_seconds"]
    else:
        if run_dir.exists():  # an unfinished run of this config: start it afresh
            import shutil

            shutil.rmtree(run_dir)
        t0 = time.perf_counter()
        result = run_search(config, run_dir, quiet=True)
        result["wall_seconds"] = time.perf_counter() - t0
    result["items_total"] = result["items_evaluated"] + result.get("promotion_items", 0)
    return result, run_dir


def _read_log(run_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(candidates by key, promotions by key) of one run's ``candidates.jsonl``."""
    cands: dict[str, dict[str, Any]] = {}
    promos: dict[str, dict[str, Any]] = {}
    for line in (run_dir / "candidates.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if "promotion" in rec:
            promos[rec["key"]] = rec["promotion"]
        elif "recipe" in rec:
            cands[rec["key"]] = rec
    return cands, promos


def diagnose(raw: dict[str, Any], zoo: Any, seed: int, runs: dict[str, dict[str, Any]],
             run_dirs: dict[str, Path], plot: Path | None,
             scores: dict[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """For every candidate of every run of ``seed``: its cheap estimate, its mean over the whole
    search split and its TRUE test accuracy (diagnosis only: none of these scores is counted in any
    run's items, and no run sees them). Returns per-run rows and a summary of where the cheap run
    loses; ``plot``: estimated vs search-split score per run (PNG); ``scores``: known
    (search, test) pairs by recipe key, filled in as candidates are scored."""
    from frugalmerge.search.config import config_from_dict
    from frugalmerge.search.fitness import Fitness
    from frugalmerge.search.space import SearchSpace

    cfg = config_from_dict({**raw, "fitness": "full", "seed": seed}, zoo.root)
    fitness = Fitness.build(cfg, SearchSpace(cfg))
    fitness.calibrate()  # full fitness: nothing is evaluated, the objective takes every search item
    obj = fitness.objectives[0]
    scores = {} if scores is None else scores  # (search-split mean, test accuracy) by recipe key
    report: dict[str, Any] = {}
    for label, result in runs.items():
        cands, promos = _read_log(run_dirs[label])
        rows = []
        for i, (key, rec) in enumerate(sorted(cands.items(), key=lambda kv: kv[1]["order"])):
            if key not in scores:
                print(f"  diagnose seed {seed} {label}: candidate {i + 1}/{len(cands)}", end="\r", flush=True)
                search = obj.evaluate(rec["recipe"], key).value  # type: ignore[attr-defined]
                scores[key] = (search, obj.test_score(rec["recipe"], key).acc)  # type: ignore[attr-defined]
            est = rec["estimate"][obj.name]
            rows.append({"key": key, "order": rec["order"], "generation": rec["generation"],
                         "estimate": est["value"], "se": est["se"],
                         "promoted": promos.get(key, {}).get(obj.name, {}).get("value"),
                         "search": scores[key][0], "test": scores[key][1], "chosen": key == result["chosen"]})
        chosen = next(r for r in rows if r["chosen"])
        best_search = max(rows, key=lambda r: (r["search"], -r["order"]))
        err = np.asarray([r["estimate"] - r["search"] for r in rows])
        top = sorted(rows, key=lambda r: -r["search"])[: max(len(rows) // 10, 3)]
        report[label] = {
            "rows": rows,
            "chosen": {k: chosen[k] for k in ("order", "estimate", "promoted", "search", "test")},
            "archive_best_by_search": {k: best_search[k] for k in ("order", "estimate", "search", "test")},
            "archive_best_test": max(r["test"] for r in rows),
            "estimate_minus_search": {"mean": float(err.mean()), "mae": float(np.abs(err).mean())},
            "top_decile_estimate_minus_search": float(np.mean([r["estimate"] - r["search"] for r in top])),
            "spearman_estimate_search": _spearman([r["estimate"] for r in rows], [r["search"] for r in rows]),
            "spearman_search_test": _spearman([r["search"] for r in rows], [r["test"] for r in rows]),
        }
    print()
    if plot is not None:
        _plot_diagnosis(report, plot, seed)
    return report


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def _plot_diagnosis(report: dict[str, Any], path: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(report), figsize=(4.2 * len(report), 4.2), squeeze=False)
    for ax, (label, rep) in zip(axes[0], report.items()):
        rows = rep["rows"]
        x = [100 * r["search"] for r in rows]
        y = [100 * r["estimate"] for r in rows]
        sc = ax.scatter(x, y, c=[r["generation"] for r in rows], cmap="viridis", s=14)
        ch = rep["chosen"]
        ax.scatter([100 * ch["search"]], [100 * ch["estimate"]], marker="*", s=160, c="red", label="chosen")
        lo, hi = min(x + y), max(x + y)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title(f"{label} (seed {seed})", fontsize=9)
        ax.set_xlabel("mean over the whole search split (points)")
        ax.set_ylabel("search-time estimate (points)")
        ax.legend(fontsize=7, loc="upper left")
        fig.colorbar(sc, ax=ax, label="generation")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(cells: dict[str, Any]) -> str:
    return ", ".join(f"{n} {100 * c['acc']:.1f} ± {100 * c['se']:.1f}" for n, c in cells.items())


def _mean(cells: dict[str, Any]) -> float:
    return sum(c["acc"] for c in cells.values()) / len(cells)


def _card_cost(cards: Path, benchmarks: list[str]) -> tuple[int, dict[str, str]]:
    """(one-off items of the cards these objectives use, {benchmark: "card k[, graded measure]"})."""
    index = json.loads((cards / "cards.json").read_text())
    cost = sum(int(index["cards"][b]["items_evaluated"]) for b in benchmarks)
    ks = {}
    for b in benchmarks:
        card = json.loads((cards / b / "card.json").read_text())
        scoring = card.get("scoring") or {}
        ks[b] = str(card["k"]) + (f", graded {scoring['graded_measure']}" if scoring.get("graded") else "")
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
    parser.add_argument("--reuse", action="store_true",
                        help="read back finished runs of the same config found under --out instead of re-running them")
    parser.add_argument("--md", default=None, help="write the results (markdown) here, and JSON beside it")
    parser.add_argument("--diagnose", default=None, metavar="JSON",
                        help="also score every candidate of the first seed's runs on the whole search split and the "
                             "test split (diagnosis only, not counted) and write them here (+ a PNG beside it)")
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
    card_info: dict[str, tuple[int, dict[str, str]]] = {}  # variant label -> (one-off items, {benchmark: k})
    for v in variants:
        if v.card:
            folder = Path(v.cards) if v.cards else cards
            if not (folder / "cards.json").is_file():
                print(f"search_cost: no cards at {folder} (build them: frugalmerge zoo cards --out {folder})")
                return 1
            card_info[v.label] = _card_cost(folder, benches)
    from frugalmerge.search.config import config_from_dict
    from frugalmerge.search.errors import ConfigError

    for v in variants:  # one clear error per bad variant before any search runs
        try:
            config_from_dict(_config(raw, args, seeds[0], v, cards))
        except ConfigError as exc:
            raise SystemExit(f"search_cost: variant {v.label!r}: {exc}") from None
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="search_cost_"))
    results: dict[int, dict[str, dict[str, Any]]] = {}
    run_dirs: dict[int, dict[str, Path]] = {}
    for seed in seeds:
        results[seed], run_dirs[seed] = {}, {}
        for v in [None, *variants]:
            label = "full" if v is None else v.label
            print(f"seed {seed}: {label} ...", flush=True)
            results[seed][label], run_dirs[seed][label] = _run(_config(raw, args, seed, v, cards), out, args.reuse)
    if args.diagnose:
        diag_path = Path(args.diagnose)
        report = diagnose(raw, zoo, seeds[0], results[seeds[0]], run_dirs[seeds[0]],
                          diag_path.with_suffix(".png"))
        diag_path.parent.mkdir(parents=True, exist_ok=True)
        diag_path.write_text(json.dumps({"seed": seeds[0], "runs": report}, indent=1))
        for label, rep in report.items():
            ch, bs = rep["chosen"], rep["archive_best_by_search"]
            print(f"diagnose {label}: chosen est {100 * ch['estimate']:.1f} search {100 * ch['search']:.1f} "
                  f"test {100 * ch['test']:.1f} | archive best by search: search {100 * bs['search']:.1f} "
                  f"test {100 * bs['test']:.1f} | archive best test {100 * rep['archive_best_test']:.1f} | "
                  f"est-search mean {100 * rep['estimate_minus_search']['mean']:+.1f} "
                  f"mae {100 * rep['estimate_minus_search']['mae']:.1f} top-decile "
                  f"{100 * rep['top_decile_estimate_minus_search']:+.1f} | spearman est/search "
                  f"{rep['spearman_estimate_search']:.2f} search/test {rep['spearman_search_test']:.2f}")

    first = results[seeds[0]]
    full = first["full"]
    head = ("fitness", "items evaluated", "full / cheap items", "with the cards' one-off cost",
            "candidates", "TRUE test accuracy of the chosen merge (points ± SE)", "cheap - full (points)", "seconds")
    rows = [head]
    for v in variants:
        r = first[v.label]
        oneoff = card_info[v.label][0] if v.card else 0
        amort = (f"{full['items_total'] / (r['items_total'] + oneoff):.2f}x (+{oneoff:,} once)" if v.card else "-")
        parts = [f"calibration {r['calibration_items']:,}"] if r["calibration_items"] else []
        if r.get("promotion_items"):
            parts.append(f"final re-scoring {r['promotion_items']:,}")
        rows.append((v.describe(args.estimator, args.k, args.pool, args.random_merges, card_info.get(v.label, (0, {}))[1]),
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
    for folder, cost in sorted({(v.cards or str(cards), card_info[v.label][0]) for v in variants if v.card}):
        lines.append(f"- one-off cost of the cards in `{folder}`: {cost:,} items (their training models on the whole "
                     f"search split, plus any pilot searches; paid once when the cards were built: "
                     f"`frugalmerge zoo cards`)")
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
            srows.append((v.describe(args.estimator, args.k, args.pool, args.random_merges, card_info.get(v.label, (0, {}))[1]),
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
            {"card_one_off_items": {lab: c for lab, (c, _) in card_info.items()}, "summary": summary,
             "runs": {str(s): {lab: {k: r.get(k) for k in keys} for lab, r in runs.items()} for s, runs in results.items()}},
            indent=2))
        print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

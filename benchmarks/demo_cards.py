"""One demo showcase run with different estimator-card folders over a few seeds, side by side.

Answers "does this card set lead the demo's search to better merges?": for each cards folder and
seed, the showcase's demo config (``frugalmerge.search.demo.showcase_configs``, with that folder's
cards and the seed) runs once; the table gives the TRUE test accuracy of the chosen merge (the best,
or the knee of the Pareto set; several objectives: their mean) and the items evaluated. Used to
decide which cards the demo ships with (docs/search.md, "Graded cards").

    PYTHONPATH=src /work/venv/bin/python benchmarks/demo_cards.py --showcase multilingual \\
        --cards estimators/zoo /tmp/cards_graded --seeds 0,1,2 --out /tmp/demo_cards

Runs go to ``OUT/<cards folder name>-seed<N>`` (a finished run there is read back). Needs the
shipped full zoo.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def run_one(cards: Path, showcase: str, seed: int, out: Path) -> dict[str, float]:
    """Run the showcase with ``cards`` and ``seed`` into ``out``; TRUE test accuracy of the choice."""
    from frugalmerge.search.config import config_from_dict
    from frugalmerge.search.demo import showcase_configs
    from frugalmerge.search.loop import run_search
    from frugalmerge.zoo import ensure_zoo
    from frugalmerge.zoo.cards import card_dirs

    if not (out / "results.json").is_file():
        raw = showcase_configs(ensure_zoo("full"), cards=card_dirs(cards))[showcase]
        raw = {**raw, "seed": seed, "final": {**raw["final"], "export": "none"}}
        run_search(config_from_dict(raw), out, quiet=True)
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    accs = [cell["acc"] for cell in result["evolved"].values()]  # the chosen merge (best or knee) on test
    return {"true": sum(accs) / len(accs), "items": float(result["items_evaluated"] + result.get("promotion_items", 0))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--showcase", default="multilingual", choices=["cross_domain", "multilingual"])
    parser.add_argument("--cards", nargs="+", required=True, help="cards folders (written by `frugalmerge zoo cards`)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="/tmp/demo_cards")
    args = parser.parse_args(argv)

    from frugalmerge.runtime import configure_torch_threads
    from frugalmerge.zoo import prebuilt_zoo_dir

    configure_torch_threads()
    if prebuilt_zoo_dir("full") is None:
        print("demo_cards: no shipped full zoo in this checkout; skipped")
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"| cards | {' | '.join(f'seed {s}' for s in seeds)} | mean TRUE accuracy | mean items |")
    print("|---|" + "---|" * (len(seeds) + 2))
    for folder in map(Path, args.cards):
        rows = [run_one(folder, args.showcase, s, Path(args.out) / f"{folder.name}-seed{s}") for s in seeds]
        cells = " | ".join(f"{r['true']:.3f}" for r in rows)
        print(f"| {folder} | {cells} | {sum(r['true'] for r in rows) / len(rows):.3f} | "
              f"{sum(r['items'] for r in rows) / len(rows):,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

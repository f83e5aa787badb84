"""Time merge+evaluate cycles on the zoo: the inner loop of a cheap-fitness search.

One cycle = ``MergeEngine.materialize`` of a random recipe (task arithmetic or TIES over the
showcase's source models, seeded) + ``evaluate`` of the live module on ``--items`` items of each
objective's SEARCH split (the cheap-fitness subset size; no evaluation cache, every cycle is a new
model). Target: 200 cycles in at most 3 minutes on this CPU (1 thread).

    PYTHONPATH=src /work/venv/bin/python benchmarks/zoo_cycles.py [--zoo DIR] [--cycles 200] [--items 50]

Prints a table per showcase (seconds per cycle, split into merge and evaluation, and the
projected time of 200 cycles) and the ratio to the 3-minute target.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

TARGET_SECONDS = 180.0


def random_recipe(rng: np.random.Generator, sources: list[str], base: str) -> dict:
    """A random task arithmetic or TIES recipe (weights in [0, 1.2], density in [0.2, 1])."""
    method = "ties" if rng.random() < 0.5 else "task_arithmetic"
    models = []
    for path in sources:
        params = {"weight": round(float(rng.uniform(0.0, 1.2)), 3)}
        if method == "ties":
            params["density"] = round(float(rng.uniform(0.2, 1.0)), 3)
        models.append({"model": path, "parameters": params})
    return {"merge_method": method, "base_model": base, "models": models, "dtype": "float32"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=None, help="zoo folder (default: shipped)")
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--items", type=int, default=50, help="items per objective per cycle")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from frugalmerge.runtime import configure_torch_threads

    configure_torch_threads(1)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from frugalmerge.evaluation import evaluate, load_benchmark
    from frugalmerge.merging import MergeEngine, MergeRecipe
    from frugalmerge.zoo import ensure_zoo, load_zoo

    zoo = load_zoo(args.zoo) if args.zoo else ensure_zoo("full")
    base = str(zoo.base_path)
    rows = []
    for show_name, show in zoo.showcases.items():
        sources = [str(zoo.model_path(m)) for m in show.models]
        start = time.perf_counter()
        engine = MergeEngine(sources, base_model=base, verbose=False)
        tokenizer = engine.tokenizer
        benches = []
        for objective in show.objectives:
            bench = load_benchmark(zoo.split_path(objective, "search"),
                                   task=zoo.benchmarks[objective].task, name=objective)
            benches.append((bench, [it.id for it in bench.items[: args.items]]))
        setup = time.perf_counter() - start
        rng = np.random.default_rng(args.seed)
        merge_s = eval_s = 0.0
        cpu0 = time.process_time()
        for _ in range(args.cycles):
            recipe = MergeRecipe.model_validate(random_recipe(rng, sources, base))
            t0 = time.perf_counter()
            model = engine.materialize(recipe, seed=0)
            t1 = time.perf_counter()
            for bench, ids in benches:
                evaluate(model, tokenizer, bench, ids, batch_size=64)
            t2 = time.perf_counter()
            merge_s += t1 - t0
            eval_s += t2 - t1
        total = merge_s + eval_s
        cpu = time.process_time() - cpu0  # immune to other processes sharing the cores
        rows.append((show_name, len(sources), len(benches) * args.items, setup,
                     merge_s / args.cycles, eval_s / args.cycles, total * 200 / args.cycles,
                     cpu * 200 / args.cycles))
    print(f"\n{args.cycles} cycles per showcase, {args.items} search items per objective, 1 thread\n")
    print("| showcase | sources | items/cycle | engine set-up s | merge s/cycle | evaluate s/cycle "
          "| 200 cycles, wall s | 200 cycles, CPU s | wall vs 180 s target |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, n_src, n_items, setup, m, e, t200, c200 in rows:
        print(f"| {name} | {n_src} | {n_items} | {setup:.2f} | {m:.4f} | {e:.4f} | {t200:.1f} "
              f"| {c200:.1f} | {t200 / TARGET_SECONDS:.2f}x |")
    print(f"\nload average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()

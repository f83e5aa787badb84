"""How estimators behave with few training models (the search's situation), on metabench data.

Usage: PYTHONPATH=src python benchmarks/estimators_small_n.py [--data ../shared/data] [--k 30] [--methods a,b]
For n_train in (20, 50, 200) and 3 seeded repeats: train on n_train random models, test on 1,000
others (only the k chosen items revealed; sequential estimators such as ``adaptive`` ask through a
counting oracle, k responses per model), print MAE in points per method.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--k", type=int, default=30)
    ap.add_argument("--methods", default="random_mean,ridge,pirt,gpirt,default,adaptive")
    args = ap.parse_args()
    folder = args.data / "metabench_reduced"
    if not folder.is_dir():
        print(f"skip: {folder} not found")
        return
    from frugalmerge.estimators import load_responses, make_estimator
    from frugalmerge.estimators.bench import predict_revealed
    from frugalmerge.runtime import configure_torch_threads

    configure_torch_threads(1)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    print("| data set | n_train | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for ds in ("arc", "gsm8k"):
        r = load_responses(folder / f"{ds}.npz")
        for n in (20, 50, 200):
            res: dict[str, list[float]] = {m: [] for m in methods}
            for rep in range(3):
                perm = np.random.default_rng(rep).permutation(r.n_models)
                train, test = r.select_models(perm[:n]), r.select_models(perm[n:n + 1000])
                for m in methods:
                    est = make_estimator(m).fit(train, k=args.k, seed=rep)
                    out = predict_revealed(est, test, args.k)
                    res[m].append(100 * float(np.abs(out.score - test.target).mean()))
            print(f"| {ds} | {n} | " + " | ".join(f"{np.mean(res[m]):.2f}" for m in methods) + " |", flush=True)


if __name__ == "__main__":
    main()

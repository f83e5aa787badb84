"""Speed of IRT calibration and ability estimation (1 CPU thread, synthetic 2PL data).

Usage: PYTHONPATH=src python benchmarks/estimator_speed.py [--models 5000] [--items 250] [--json OUT]
Prints a table: calibration seconds for 1PL / 2PL / MD-2PL (D=3) on models x items, and ability
estimation time per model (MAP Newton, EAP grid) with 30 and all items revealed, plus parameter
recovery correlations for the 2PL fit.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def synthetic(n: int, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Binary responses from a known 2PL: P = sigmoid(a (theta - b)); returns (y, theta, a, b)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n)
    a = np.exp(rng.normal(0.0, 0.3, m))
    b = rng.normal(size=m)
    p = 1.0 / (1.0 + np.exp(-a * (theta[:, None] - b)))
    return (rng.random((n, m)) < p).astype(float), theta, a, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=5000)
    ap.add_argument("--items", type=int, default=250)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from frugalmerge.estimators.irt import IRTSettings, estimate_ability, fit_irt
    from frugalmerge.runtime import configure_torch_threads

    configure_torch_threads(1)
    y, theta, a, b = synthetic(args.models, args.items)
    rows = []
    params2 = None
    for label, settings in [("1PL", IRTSettings(model="1pl")), ("2PL", IRTSettings()),
                            ("MD-2PL (D=3)", IRTSettings(model="md2pl", dims=3))]:
        start = time.perf_counter()
        params = fit_irt(y, settings=settings)
        secs = time.perf_counter() - start
        if label == "2PL":
            params2 = params
        rows.append({"what": f"calibrate {label}", "shape": f"{args.models}x{args.items}", "seconds": secs,
                     "per_model_ms": None})
    assert params2 is not None
    recovery = {"corr_a": float(np.corrcoef(params2.a[:, 0], a)[0, 1]),
                "corr_b": float(np.corrcoef(params2.difficulty, b)[0, 1]),
                "corr_theta": float(np.corrcoef(params2.train_theta[:, 0], theta)[0, 1])}
    cols30 = np.linspace(0, args.items - 1, 30).astype(int)
    for method in ("map", "eap"):
        for label, cols in (("30 items", cols30), ("all items", np.arange(args.items))):
            start = time.perf_counter()
            estimate_ability(params2, y[:, cols], cols, method=method)
            secs = time.perf_counter() - start
            rows.append({"what": f"ability {method.upper()} ({label})", "shape": f"{args.models} models",
                         "seconds": secs, "per_model_ms": 1000 * secs / args.models})
    table = Table(title=f"IRT speed, 1 thread, synthetic 2PL {args.models} x {args.items}")
    for col in ("what", "data", "seconds", "ms / model"):
        table.add_column(col, justify="left" if col in ("what", "data") else "right")
    for r in rows:
        table.add_row(r["what"], r["shape"], f"{r['seconds']:.3f}",
                      "" if r["per_model_ms"] is None else f"{r['per_model_ms']:.4f}")
    console = Console()
    console.print(table)
    console.print(f"2PL recovery: corr(a) {recovery['corr_a']:.3f}, corr(b) {recovery['corr_b']:.3f}, "
                  f"corr(theta) {recovery['corr_theta']:.3f}")
    console.print(f"target 'seconds for 5000 x 250': 2PL took {rows[1]['seconds']:.1f} s "
                  f"(ratio to a 10 s budget: {rows[1]['seconds'] / 10:.2f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(f".{args.json.name}.tmp")
        tmp.write_text(json.dumps({"rows": rows, "recovery": recovery}, indent=2))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()

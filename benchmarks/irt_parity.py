"""Parity of frugalmerge's torch 2PL calibration with py-irt (the optional ``irt`` backend).

Usage (needs py-irt, Python < 3.12, e.g. a separate venv with ``torch`` then ``py-irt``):
    PYTHONPATH=src /work/pyirt-venv/bin/python benchmarks/irt_parity.py [--models 1000] [--items 100] [--json OUT]

Fits the same synthetic 2PL responses (known abilities, discriminations, difficulties) with our
torch MAP calibration (``backend="torch"``) and with py-irt's 2PL (``backend="py-irt"``, through
:func:`frugalmerge.estimators.irt.fit_irt`), then prints, for each backend, the correlation of the
recovered difficulties / discriminations / abilities with the truth, the correlations between the
two backends, and the fit times. Skips cleanly (exit 0) when py-irt is not installed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from estimator_speed import synthetic  # the same known-2PL generator (benchmarks/ is on the path)


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(x), np.ravel(y))[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    try:
        import py_irt  # noqa: F401
    except ImportError:
        print("skip: py-irt is not installed (pip install 'frugalmerge[irt]', Python < 3.12)")
        return

    from frugalmerge.estimators.irt import IRTSettings, fit_irt
    from frugalmerge.runtime import configure_torch_threads

    configure_torch_threads(1)
    y, theta, a, b = synthetic(args.models, args.items, args.seed)
    fits, secs = {}, {}
    for backend in ("torch", "py-irt"):
        start = time.perf_counter()
        fits[backend] = fit_irt(y, settings=IRTSettings(backend=backend, seed=args.seed))
        secs[backend] = time.perf_counter() - start
    rows = []
    for backend, p in fits.items():
        rows.append({"backend": backend, "seconds": secs[backend], "corr_b": _corr(p.difficulty, b),
                     "corr_a": _corr(p.a[:, 0], a), "corr_theta": _corr(p.train_theta[:, 0], theta)})
    t, q = fits["torch"], fits["py-irt"]
    between = {"corr_b": _corr(t.difficulty, q.difficulty), "corr_a": _corr(t.a[:, 0], q.a[:, 0]),
               "corr_theta": _corr(t.train_theta[:, 0], q.train_theta[:, 0]),
               "corr_p": _corr(t.prob(t.train_theta), q.prob(q.train_theta))}

    print(f"synthetic 2PL {args.models} models x {args.items} items, seed {args.seed}, 1 torch thread")
    print("| backend | fit s | corr(b, truth) | corr(a, truth) | corr(theta, truth) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['seconds']:.1f} | {r['corr_b']:.3f} | {r['corr_a']:.3f} | {r['corr_theta']:.3f} |")
    print(f"torch vs py-irt: corr(b) {between['corr_b']:.3f}, corr(a) {between['corr_a']:.3f}, "
          f"corr(theta) {between['corr_theta']:.3f}, corr(P) {between['corr_p']:.3f}; "
          f"time ratio py-irt / torch {secs['py-irt'] / secs['torch']:.1f}x")
    if args.json:
        doc = {"models": args.models, "items": args.items, "seed": args.seed, "backends": rows, "between": between}
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()

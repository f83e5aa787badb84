"""Seconds per in-memory merge candidate vs the memory-bandwidth floor (synthetic ~100M-parameter Llama).

For linear, ties and dare_ties over three endpoint models and a base, the script times
``MergeEngine.materialize`` (best of ``--repeats``, median also shown) and compares it with the
floor: the bytes of every task vector read once plus the bytes of the merged model written once,
over the memcpy bandwidth measured in the same run (bytes read + written per second by
``Tensor.copy_``). Targets: linear <= 1.5x, ties <= 3x (dare_ties: none). Every timed candidate uses different
weights and densities (seeded), as a search would: no result computed for one candidate can be
reused by the next. Any merge must also read the base model (the reference of the task vectors),
which the floor does not count: with three task vectors the lowest reachable ratio is 1.25x.

    PYTHONPATH=src /work/venv/bin/python benchmarks/merge_speed.py [--params 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import os
import random
import statistics
import tempfile
import time
from pathlib import Path


def synthetic_models(root: Path, target_millions: float, n_models: int = 3) -> tuple[Path, list[Path], int]:
    """A random Llama 'base' and ``n_models`` perturbed copies as safetensors directories."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden = 768
    layers = max(1, round((target_millions * 1e6 - 2 * 16000 * hidden) / (4 * hidden**2 + 3 * hidden * 2048)))
    cfg = LlamaConfig(vocab_size=16000, hidden_size=hidden, intermediate_size=2048, num_hidden_layers=layers,
                      num_attention_heads=12, num_key_value_heads=12, tie_word_embeddings=False)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in LlamaForCausalLM(cfg).state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    base = {k: torch.randn(s, generator=gen) * 0.02 for k, s in shapes.items()}
    n_params = sum(t.numel() for t in base.values())

    def save(d: Path, sd) -> Path:
        d.mkdir(parents=True, exist_ok=True)
        save_file(sd, str(d / "model.safetensors"), metadata={"format": "pt"})
        (d / "config.json").write_text(json.dumps(cfg.to_dict()))
        return d

    base_dir = save(root / "base", base)
    models = []
    for i in range(n_models):
        sd = {k: v + torch.randn(v.shape, generator=gen) * 0.002 for k, v in base.items()}
        models.append(save(root / f"m{i}", sd))
        del sd
    del base
    return base_dir, models, n_params


def memcpy_bandwidth(nbytes: int, repeats: int = 5) -> float:
    """Bytes read + written per second by ``copy_`` of a large float32 buffer (best of ``repeats``)."""
    import torch

    n = nbytes // 4
    src, dst = torch.randn(n), torch.empty(n)
    dst.copy_(src)
    best = min(_timed(lambda: dst.copy_(src)) for _ in range(repeats))
    return 2 * n * 4 / best


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=float, default=100.0, help="model size in millions of parameters")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None, help="write the measurements here")
    ns = ap.parse_args()

    from frugalmerge.runtime import configure_torch_threads

    threads = configure_torch_threads()
    import torch

    from frugalmerge.merging import MergeEngine, MergeRecipe, kernels

    fused = kernels.available()
    t_compile = kernels.warm_up() if fused else 0.0  # numba: compile, or load from its cache
    load = os.getloadavg()
    root = Path(ns.workdir or tempfile.mkdtemp(prefix="merge-speed-"))
    t0 = time.perf_counter()
    base, models, n_params = synthetic_models(root, ns.params)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine = MergeEngine([str(m) for m in models], base_model=str(base), verbose=True)
    t_load = time.perf_counter() - t0

    item = 4
    k = len(models)
    floor_bytes = k * n_params * item + n_params * item
    bandwidth = memcpy_bandwidth(max(256 * 2**20, n_params * item // 2))
    floor = floor_bytes / bandwidth

    def recipe(method: str, i: int) -> MergeRecipe:
        """Candidate ``i``: its own seeded weights (and densities), like a search's population."""
        rng = random.Random(f"{method}/{i}")
        entries = []
        for m in models:
            params = {"weight": round(rng.uniform(0.1, 0.6), 4)}
            if method != "linear":
                params["density"] = round(rng.uniform(0.3, 0.7), 4)
            entries.append({"model": str(m), "parameters": params})
        d = {"merge_method": method, "dtype": "float32", "models": entries}
        if method != "linear":
            d["base_model"] = str(base)
        return MergeRecipe.model_validate(d)

    rows = []
    for method in ("linear", "ties", "dare_ties"):
        # first call: also builds the per-engine caches (|task vector| histograms for ties)
        warm = _timed(lambda: engine.materialize(recipe(method, -1), seed=0))
        cands = [recipe(method, i) for i in range(ns.repeats)]
        times = [_timed(lambda: engine.materialize(r, seed=i + 1)) for i, r in enumerate(cands)]
        # best of N, like the memcpy bandwidth: both sides see the least interference
        sec = min(times)
        med = statistics.median(times)
        rows.append({"method": method, "seconds": sec, "median_seconds": med, "first_call_seconds": warm,
                     "ratio": sec / floor, "median_ratio": med / floor})

    print(f"\nsynthetic Llama: {n_params / 1e6:.1f}M parameters, {k} endpoint models + base, float32, "
          f"{threads} torch thread(s); build {t_build:.1f}s, engine load {t_load:.1f}s")
    print(f"fused numba kernels: {'on' if fused else 'off (torch path)'}"
          + (f", compile/cache load {t_compile:.1f}s" if fused else "")
          + f"; load average at start {load[0]:.2f} (1 min), at end {os.getloadavg()[0]:.2f}")
    print(f"memcpy bandwidth (read+write): {bandwidth / 1e9:.2f} GB/s; floor = "
          f"({k} task vectors + 1 output) x {n_params * item / 1e6:.0f} MB = {floor_bytes / 1e9:.2f} GB "
          f"-> {floor:.3f} s")
    print(f"{'method':<10} {'s/candidate':>12} {'median s':>9} {'first call s':>13} {'x floor':>8} {'median x':>9} "
          f"{'target':>7}")
    targets = {"linear": 1.5, "ties": 3.0}
    for row in rows:
        tgt = targets.get(row["method"])
        print(f"{row['method']:<10} {row['seconds']:>12.3f} {row['median_seconds']:>9.3f} {row['first_call_seconds']:>13.3f} "
              f"{row['ratio']:>8.2f} {row['median_ratio']:>9.2f} {('<= %.1f' % tgt) if tgt else '-':>7}")
    print("note: linear also reads the base model (the task vectors' reference), which the floor does "
          f"not count: its lowest reachable ratio is {(k + 2) / (k + 1):.2f}x")
    if ns.json:
        Path(ns.json).write_text(json.dumps({
            "params": n_params, "floor_s": floor, "bandwidth": bandwidth, "repeats": ns.repeats,
            "fused": fused, "compile_s": t_compile, "loadavg_start": load[0],
            "loadavg_end": os.getloadavg()[0], "rows": rows}, indent=2))
    del engine
    if ns.workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

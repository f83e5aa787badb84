"""Dev-only: the same YAMLs through mergekit 0.1.5 and through ``frugalmerge merge`` (CPU, float32).

Builds tiny Llama checkpoints (a base and three seeded perturbations), runs every method's YAML
through ``mergekit-yaml`` (a separate venv; never a runtime dependency of frugalmerge) and through
``frugalmerge merge``, and prints the max absolute difference over all tensors per method.
Deterministic methods must agree within 1e-5. DARE methods draw different random masks in the two
tools: they are compared at density 1 (exactly) and at density 0.5 only statistically.

    PYTHONPATH=src /work/venv/bin/python benchmarks/mergekit_parity.py [--mergekit PATH] [--out DIR]

Skips cleanly (exit 0) when mergekit is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TOLERANCE = 1e-5


def build_models(root: Path, tied: bool = False) -> dict[str, Path]:
    """A tiny Llama base and three seeded fine-tune stand-ins."""
    from frugalmerge.zoo.tiny import build_tiny_llama, build_word_tokenizer, tiny_llama_config

    words = ["the", "cat", "dog", "plus", "minus", "is", "what", "answer", "=", "+", "-", "."]
    tok = build_word_tokenizer(words)
    cfg = tiny_llama_config(len(tok), hidden_size=32, num_layers=4, num_heads=4, tie_word_embeddings=tied)
    base = build_tiny_llama(root / "base", seed=0, config=cfg, tokenizer=tok)
    out = {"base": base}
    for i, name in enumerate(("a", "b", "c"), start=1):
        out[name] = build_tiny_llama(root / name, seed=i, base_dir=base, perturbation=0.05)
    # Vocabularies that differ from the base's (for tokenizer_source union / base): b gains two
    # words, c gains one of them and a third, with seeded rows.
    out["b_ext"] = extend_vocab(out["b"], root / "b_ext", ["zebra", "quokka"], seed=11)
    out["c_ext"] = extend_vocab(out["c"], root / "c_ext", ["quokka", "walrus"], seed=12)
    return out


def extend_vocab(src: Path, dst: Path, words: list[str], seed: int) -> Path:
    """A copy of ``src`` whose word-level vocabulary gains ``words`` as regular tokens (seeded random rows)."""
    import torch

    from frugalmerge.zoo.tiny import extend_word_vocab

    hidden = json.loads((src / "config.json").read_text())["hidden_size"]
    gen = torch.Generator().manual_seed(seed)
    return extend_word_vocab(src, dst, {w: torch.randn((1, hidden), generator=gen) for w in words})


def recipes(m: dict[str, Path]) -> dict[str, str]:
    """One YAML per method exercising gradients, filters and non-default options."""
    base, a, b, c = (str(m[k]) for k in ("base", "a", "b", "c"))
    bx, cx = str(m["b_ext"]), str(m["c_ext"])
    return {
        "union_linear": f"""
merge_method: linear
dtype: float32
tokenizer_source: union
models:
  - model: {a}
    parameters: {{weight: 0.5}}
  - model: {bx}
    parameters: {{weight: 0.3}}
  - model: {cx}
    parameters: {{weight: 0.2}}
""",
        "union_ties": f"""
merge_method: ties
base_model: {base}
dtype: float32
tokenizer_source: union
models:
  - model: {a}
    parameters: {{weight: 0.6, density: 0.5}}
  - model: {bx}
    parameters: {{weight: 0.4, density: 0.7}}
  - model: {cx}
    parameters: {{weight: 0.3, density: 0.4}}
""",
        "base_tok_task_arithmetic": f"""
merge_method: task_arithmetic
base_model: {base}
dtype: float32
tokenizer_source: base
models:
  - model: {bx}
    parameters: {{weight: 0.6}}
  - model: {cx}
    parameters: {{weight: 0.5}}
""",
        "linear": f"""
merge_method: linear
dtype: float32
models:
  - model: {a}
    parameters: {{weight: [0.2, 0.9]}}
  - model: {b}
    parameters: {{weight: 0.5}}
  - model: {c}
    parameters:
      weight: [{{filter: self_attn, value: 0.7}}, {{filter: mlp, value: [0.1, 0.3, 0.2]}}, {{value: 0.4}}]
""",
        "linear_nonorm": f"""
merge_method: linear
dtype: float32
parameters: {{normalize: false}}
models:
  - model: {a}
    parameters: {{weight: 0.3}}
  - model: {b}
    parameters: {{weight: 0.6}}
""",
        "task_arithmetic": f"""
merge_method: task_arithmetic
base_model: {base}
dtype: float32
parameters: {{lambda: 0.8}}
models:
  - model: {a}
    parameters: {{weight: [1.0, 0.2]}}
  - model: {b}
    parameters: {{weight: [{{filter: mlp, value: -0.5}}, {{value: 0.6}}]}}
  - model: {c}
    parameters: {{weight: 0.3}}
""",
        "ties": f"""
merge_method: ties
base_model: {base}
dtype: float32
models:
  - model: {a}
    parameters: {{weight: 0.6, density: [0.2, 0.8]}}
  - model: {b}
    parameters: {{weight: 0.4, density: 0.5}}
  - model: {c}
    parameters: {{weight: [{{filter: self_attn, value: 0.7}}, {{value: 0.3}}], density: 0.3}}
""",
        "ties_nonorm_rescale": f"""
merge_method: ties
base_model: {base}
dtype: float32
parameters: {{normalize: false, rescale: true, int8_mask: true}}
models:
  - model: {a}
    parameters: {{weight: 0.6, density: 0.4}}
  - model: {b}
    parameters: {{weight: 0.5, density: 0.6}}
""",
        "breadcrumbs": f"""
merge_method: breadcrumbs
base_model: {base}
dtype: float32
models:
  - model: {a}
    parameters: {{weight: 0.5, density: 0.8, gamma: 0.05}}
  - model: {b}
    parameters: {{weight: 0.5, density: [0.9, 0.6], gamma: 0.02}}
""",
        "breadcrumbs_ties": f"""
merge_method: breadcrumbs_ties
base_model: {base}
dtype: float32
parameters: {{normalize: true}}
models:
  - model: {a}
    parameters: {{weight: 0.5, density: 0.7, gamma: 0.1}}
  - model: {b}
    parameters: {{weight: 0.3, density: 0.8}}
  - model: {c}
    parameters: {{weight: 0.4, density: 0.6}}
""",
        "slerp": f"""
merge_method: slerp
base_model: {a}
dtype: float32
models:
  - model: {a}
  - model: {b}
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
""",
        "slerp_slices": f"""
merge_method: slerp
base_model: {base}
dtype: float32
slices:
  - sources:
      - model: {base}
        layer_range: [0, 4]
      - model: {c}
        layer_range: [0, 4]
parameters:
  t: [0.1, 0.9]
""",
        "passthrough": f"""
merge_method: passthrough
dtype: float32
slices:
  - sources:
      - model: {a}
        layer_range: [0, 3]
  - sources:
      - model: {b}
        layer_range: [1, 4]
        parameters: {{scale: [{{filter: o_proj, value: 0.5}}, {{value: 1.0}}]}}
""",
        "dare_ties_density1": f"""
merge_method: dare_ties
base_model: {base}
dtype: float32
models:
  - model: {a}
    parameters: {{weight: 0.5, density: 1.0}}
  - model: {b}
    parameters: {{weight: 0.5, density: 1.0}}
""",
        "dare_linear_density1": f"""
merge_method: dare_linear
base_model: {base}
dtype: float32
models:
  - model: {a}
    parameters: {{weight: 0.7, density: 1.0}}
  - model: {b}
    parameters: {{weight: 0.2, density: 1.0}}
""",
        "dare_ties_density0.5": f"""
merge_method: dare_ties
base_model: {base}
dtype: float32
models:
  - model: {a}
    parameters: {{weight: 0.5, density: 0.5}}
  - model: {b}
    parameters: {{weight: 0.5, density: 0.5}}
""",
    }


def load_tensors(d: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(d.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def by_token(mk: dict, mk_dir: Path, fm_dir: Path) -> dict:
    """mergekit's vocabulary rows reordered into frugalmerge's token order.

    mergekit 0.1.5 appends union tokens in a hash map's iteration order, frugalmerge by model and
    id: the same set of tokens, so rows are compared token by token (the sets must be equal).
    """
    from transformers import AutoTokenizer

    mv = AutoTokenizer.from_pretrained(str(mk_dir)).get_vocab()
    fv = AutoTokenizer.from_pretrained(str(fm_dir)).get_vocab()
    if set(mv) != set(fv):
        raise SystemExit(f"union vocabularies differ: {sorted(set(mv) ^ set(fv))[:5]}")
    order = [mv[tok] for tok, _ in sorted(fv.items(), key=lambda kv: kv[1])]
    out = dict(mk)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        if name in out:
            out[name] = out[name][order]
    return out


def max_abs_diff(x: dict, y: dict) -> tuple[float, float]:
    """(max, mean) absolute difference over all tensors; names/shapes must match."""
    if set(x) != set(y):
        raise SystemExit(f"tensor names differ: {sorted(set(x) ^ set(y))[:5]}")
    worst, total, count = 0.0, 0.0, 0
    for k in x:
        d = (x[k].float() - y[k].float()).abs()
        worst = max(worst, float(d.max()))
        total += float(d.sum())
        count += d.numel()
    return worst, total / count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mergekit", default="/work/mk-venv/bin/mergekit-yaml", help="mergekit-yaml executable")
    ap.add_argument("--out", default=None, help="keep the work directory here")
    ap.add_argument("--only", default=None, help="comma-separated recipe names")
    ns = ap.parse_args()
    mk = shutil.which(ns.mergekit) or (ns.mergekit if os.access(ns.mergekit, os.X_OK) else None)
    if mk is None:
        print(f"mergekit not found at {ns.mergekit}: skipping the parity check")
        return 0
    os.environ.setdefault("FRUGALMERGE_THREADS", "1")
    from frugalmerge.runtime import configure_torch_threads

    configure_torch_threads(1)
    root = Path(ns.out) if ns.out else Path(tempfile.mkdtemp(prefix="mk-parity-"))
    root.mkdir(parents=True, exist_ok=True)
    models = build_models(root / "models")
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "OMP_NUM_THREADS": "1"}
    rows = []
    failed = False
    # Tied embeddings (no lm_head stored) with a union vocabulary.
    tied = build_models(root / "models_tied", tied=True)
    cases = {**recipes(models), "union_linear_tied": recipes(tied)["union_linear"]}
    for name, text in cases.items():
        if ns.only and name not in ns.only.split(","):
            continue
        cfg = root / f"{name}.yml"
        cfg.write_text(text)
        mk_out, fm_out = root / f"mk_{name}", root / f"fm_{name}"
        for d in (mk_out, fm_out):
            shutil.rmtree(d, ignore_errors=True)
        subprocess.run([mk, str(cfg), str(mk_out), "--quiet", "-j", "1", "--random-seed", "0"],
                       check=True, env=env, capture_output=True)
        subprocess.run([sys.executable, "-m", "frugalmerge.cli", "merge", str(cfg), "--out", str(fm_out),
                        "--dtype", "float32", "--seed", "0"], check=True, env=env, capture_output=True)
        mk_t = by_token(load_tensors(mk_out), mk_out, fm_out) if "union" in name else load_tensors(mk_out)
        worst, mean = max_abs_diff(mk_t, load_tensors(fm_out))
        deterministic = "density0.5" not in name
        ok = worst <= TOLERANCE if deterministic else True
        failed |= not ok
        rows.append((name, worst, mean, "exact-compare" if deterministic else "different RNG", "ok" if ok else "FAIL"))
    print(f"{'recipe':<24} {'max |diff|':>12} {'mean |diff|':>12}  {'comparison':<14} status")
    for r in rows:
        print(f"{r[0]:<24} {r[1]:>12.3e} {r[2]:>12.3e}  {r[3]:<14} {r[4]}")
    print(f"(tolerance {TOLERANCE:g} for deterministic recipes; work dir {root})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

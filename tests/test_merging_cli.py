"""``frugalmerge merge``: outputs, checkpoint formats, tied/vocab handling, and every bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from frugalmerge.cli import app
from merging_helpers import tensors

runner = CliRunner()


def write_recipe(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def merge(recipe: Path, out: Path, *extra: str):
    return runner.invoke(app, ["merge", str(recipe), "--out", str(out), *extra])


def ties_yaml(base, *models, density=0.5) -> str:
    lines = [f"merge_method: ties\nbase_model: {base}\ndtype: float32\nmodels:"]
    for m in models:
        lines.append(f"  - model: {m}\n    parameters: {{weight: 0.5, density: {density}}}")
    return "\n".join(lines) + "\n"


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------- happy paths
def test_cli_merge_writes_hf_dir_and_loads(tiny_models, tmp_path):
    m = tiny_models
    recipe = write_recipe(tmp_path / "r.yml", ties_yaml(m["base"], m["model_a"], m["model_b"]))
    res = merge(recipe, tmp_path / "out", "--dtype", "bfloat16", "--seed", "3")
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    for f in ("config.json", "model.safetensors", "tokenizer.json", "mergekit_config.yml", "README.md"):
        assert (out / f).is_file(), f
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert all(t.dtype == torch.bfloat16 for t in tensors(out).values())
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model.config.num_hidden_layers == 4
    assert not any(p.name.startswith(".out.tmp") for p in tmp_path.iterdir())
    # a plain mkdir's permissions (the umask's), not the private 0700 of the temporary folder
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask


def test_passthrough_slices_build_a_deeper_model(tiny_models, tmp_path):
    m = tiny_models
    recipe = write_recipe(tmp_path / "p.yml", f"""
merge_method: passthrough
slices:
  - sources: [{{model: {m['model_a']}, layer_range: [0, 3]}}]
  - sources:
      - model: {m['model_b']}
        layer_range: [1, 4]
        parameters: {{scale: [{{filter: o_proj, value: 0.5}}, {{value: 1.0}}]}}
""")
    res = merge(recipe, tmp_path / "deep")
    assert res.exit_code == 0, res.output
    out = tensors(tmp_path / "deep")
    a, b = tensors(m["model_a"]), tensors(m["model_b"])
    assert json.loads((tmp_path / "deep" / "config.json").read_text())["num_hidden_layers"] == 6
    assert torch.allclose(out["model.layers.2.mlp.up_proj.weight"], a["model.layers.2.mlp.up_proj.weight"])
    assert torch.allclose(out["model.layers.3.mlp.up_proj.weight"], b["model.layers.1.mlp.up_proj.weight"])
    assert torch.allclose(out["model.layers.5.self_attn.o_proj.weight"], 0.5 * b["model.layers.3.self_attn.o_proj.weight"])
    assert torch.allclose(out["model.embed_tokens.weight"], a["model.embed_tokens.weight"])
    assert torch.allclose(out["lm_head.weight"], b["lm_head.weight"])  # post weights: last slice


def test_sharded_and_bin_checkpoints_give_identical_merges(tiny_models, tmp_path):
    m = tiny_models
    sd = tensors(m["model_a"])
    sharded = copy_model(m["model_a"], tmp_path / "sharded")
    (sharded / "model.safetensors").unlink()
    names = sorted(sd)
    half = len(names) // 2
    parts = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for fname, keys in parts.items():
        save_file({k: sd[k] for k in keys}, str(sharded / fname), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {k: f for f, ks in parts.items() for k in ks}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    binary = copy_model(m["model_b"], tmp_path / "binary")
    (binary / "model.safetensors").unlink()
    torch.save(tensors(m["model_b"]), binary / "pytorch_model.bin")
    r1 = write_recipe(tmp_path / "1.yml", ties_yaml(m["base"], m["model_a"], m["model_b"]))
    r2 = write_recipe(tmp_path / "2.yml", ties_yaml(m["base"], sharded, binary))
    assert merge(r1, tmp_path / "o1").exit_code == 0
    res = merge(r2, tmp_path / "o2", "--shard-size", "20KB")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o2" / "model.safetensors.index.json").is_file()
    o1, o2 = tensors(tmp_path / "o1"), tensors(tmp_path / "o2")
    assert set(o1) == set(o2) and all(torch.equal(o1[k], o2[k]) for k in o1)


def test_tied_embeddings_follow_mergekit(tiny_models, tmp_path):
    """An input without lm_head contributes its embedding; with no lm_head anywhere none is written."""
    m = tiny_models
    tied = copy_model(m["model_b"], tmp_path / "tied")
    sd = tensors(tied)
    del sd["lm_head.weight"]
    save_file(sd, str(tied / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((tied / "config.json").read_text())
    cfg["tie_word_embeddings"] = True
    (tied / "config.json").write_text(json.dumps(cfg))
    recipe = write_recipe(tmp_path / "t.yml", f"""
merge_method: linear
models:
  - {{model: {m['model_a']}, parameters: {{weight: 1.0}}}}
  - {{model: {tied}, parameters: {{weight: 1.0}}}}
""")
    assert merge(recipe, tmp_path / "o").exit_code == 0
    out, a = tensors(tmp_path / "o"), tensors(m["model_a"])
    exp = (a["lm_head.weight"] + sd["model.embed_tokens.weight"]) / 2
    assert torch.allclose(out["lm_head.weight"], exp, atol=1e-6)
    only_tied = write_recipe(tmp_path / "t2.yml", f"merge_method: linear\nmodels: [{{model: {tied}, parameters: {{weight: 1}}}}]\n")
    assert merge(only_tied, tmp_path / "o2").exit_code == 0
    assert "lm_head.weight" not in tensors(tmp_path / "o2")


def test_vocab_mismatch_needs_tokenizer_source(tiny_models, tmp_path):
    """A model with two extra tokens: an error naming the tensor, or alignment with tokenizer_source."""
    from transformers import AutoTokenizer

    m = tiny_models
    big = copy_model(m["model_a"], tmp_path / "big")
    tok = AutoTokenizer.from_pretrained(str(big))
    tok.add_tokens(["zebra", "quokka"])
    tok.save_pretrained(str(big))
    sd = tensors(big)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        sd[name] = torch.cat([sd[name], torch.ones(2, sd[name].shape[1])])
    save_file(sd, str(big / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((big / "config.json").read_text())
    cfg["vocab_size"] += 2
    (big / "config.json").write_text(json.dumps(cfg))
    text = ties_yaml(m["base"], big, m["model_b"], density=1.0)
    res = merge(write_recipe(tmp_path / "v.yml", text), tmp_path / "o")
    assert res.exit_code != 0 and "vocabularies differ" in res.output and not (tmp_path / "o").exists()
    res = merge(write_recipe(tmp_path / "v2.yml", text + "tokenizer_source: base\n"), tmp_path / "o2")
    assert res.exit_code == 0, res.output
    out = tensors(tmp_path / "o2")
    # the extra rows are dropped; the base vocabulary's rows are those of model_a: same merge as a + b
    plain = write_recipe(tmp_path / "v3.yml", ties_yaml(m["base"], m["model_a"], m["model_b"], density=1.0))
    assert merge(plain, tmp_path / "o3").exit_code == 0
    expected = tensors(tmp_path / "o3")
    assert all(torch.equal(out[k], expected[k]) for k in expected)


# ------------------------------------------------------------------- bad input
def _mismatched(tiny_models, tmp_path):
    from frugalmerge.zoo.tiny import build_tiny_llama, tiny_llama_config

    base_cfg = json.loads((tiny_models["base"] / "config.json").read_text())
    cfg = tiny_llama_config(base_cfg["vocab_size"], hidden_size=32, num_layers=4, num_heads=4, intermediate_size=48)
    return build_tiny_llama(tmp_path / "wide", seed=9, config=cfg), "model.layers.0.mlp.down_proj.weight"


def _missing_tensor(tiny_models, tmp_path):
    d = copy_model(tiny_models["model_a"], tmp_path / "missing")
    sd = tensors(d)
    del sd["model.layers.1.mlp.up_proj.weight"]
    save_file(sd, str(d / "model.safetensors"), metadata={"format": "pt"})
    return d, "model.layers.1.mlp.up_proj.weight"


def _corrupt(tiny_models, tmp_path):
    d = copy_model(tiny_models["model_a"], tmp_path / "corrupt")
    data = bytearray((d / "model.safetensors").read_bytes())
    data[8:40] = b"\x00garbage-not-json-header!!!!!!!"
    (d / "model.safetensors").write_bytes(bytes(data))
    return d, "corrupt safetensors"


def _nan(tiny_models, tmp_path):
    d = copy_model(tiny_models["model_a"], tmp_path / "nan")
    sd = tensors(d)
    sd["model.layers.2.self_attn.k_proj.weight"][0, 0] = float("nan")
    save_file(sd, str(d / "model.safetensors"), metadata={"format": "pt"})
    return d, "model.layers.2.self_attn.k_proj.weight"


@pytest.mark.parametrize("make", [_mismatched, _missing_tensor, _corrupt, _nan])
def test_bad_models_fail_cleanly(tiny_models, tmp_path, make):
    bad, culprit = make(tiny_models, tmp_path)
    recipe = write_recipe(tmp_path / "r.yml", ties_yaml(tiny_models["base"], tiny_models["model_b"], bad))
    out = tmp_path / "out"
    res = merge(recipe, out)
    assert res.exit_code != 0
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and culprit in lines[0], res.output
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    ("body", "culprit"),
    [
        ("merge_method: ties\nbase_model: {base}\nmodels: [{{model: {a}, parameters: {{weight: 1, density: 1.5}}}}]", "density"),
        ("merge_method: frankenmerge\nmodels: [{{model: {a}}}]", "frankenmerge"),
        ("merge_method: ties\nbase_model: {base}\nmodels: [{{model: /nonexistent/model_x, parameters: {{weight: 1}}}}]", "/nonexistent/model_x"),
        ("merge_method: ties\nbase_model: {base}\nmodels: [{{model: {a}}}]", "weight"),
        ("merge_method: slerp\nbase_model: {base}\nmodels: [{{model: {a}}}, {{model: {base}}}, {{model: {b}}}]", "slerp"),
        ("merge_method: ties\nmodels: [{{model: {a}\n", "YAML"),
    ],
)
def test_bad_recipes_fail_cleanly(tiny_models, tmp_path, body, culprit):
    m = tiny_models
    recipe = write_recipe(tmp_path / "r.yml", body.format(base=m["base"], a=m["model_a"], b=m["model_b"]))
    out = tmp_path / "out"
    res = merge(recipe, out)
    assert res.exit_code != 0
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and culprit in lines[0], res.output
    assert not out.exists()


def test_missing_recipe_file_and_bad_dtype(tmp_path):
    res = merge(tmp_path / "nope.yml", tmp_path / "o")
    assert res.exit_code != 0 and "nope.yml" in res.output
    res = merge(tmp_path / "nope.yml", tmp_path / "o", "--dtype", "int8")
    assert res.exit_code != 0 and "int8" in res.output

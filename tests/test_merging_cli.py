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


def _config_not_object(tiny_models, tmp_path):
    d = copy_model(tiny_models["model_a"], tmp_path / "cfg_list")
    (d / "config.json").write_text("[1, 2]")
    return d, "cfg_list/config.json: expected a JSON object"


def _layers_not_int(tiny_models, tmp_path):
    d = copy_model(tiny_models["model_a"], tmp_path / "cfg_layers")
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_hidden_layers"] = "four"
    (d / "config.json").write_text(json.dumps(cfg))
    return d, "num_hidden_layers must be an integer, got 'four'"


def _index_not_map(tiny_models, tmp_path):
    d = copy_model(tiny_models["model_a"], tmp_path / "idx")
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": ["model.safetensors"]}))
    return d, "idx/model.safetensors.index.json: invalid index"


def _index_bad_values(tiny_models, tmp_path):
    d = copy_model(tiny_models["model_a"], tmp_path / "idx2")
    index = {"weight_map": {k: 1 for k in tensors(d)}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    return d, "idx2/model.safetensors.index.json: invalid index"


def _int_tensor(tiny_models, tmp_path):
    d = copy_model(tiny_models["model_a"], tmp_path / "int")
    sd = tensors(d)
    sd["model.layers.1.mlp.up_proj.weight"] = sd["model.layers.1.mlp.up_proj.weight"].to(torch.int64)
    save_file(sd, str(d / "model.safetensors"), metadata={"format": "pt"})
    return d, "dtype mismatch for model.layers.1.mlp.up_proj.weight"


def _bool_tensor_bin(tiny_models, tmp_path):
    d = copy_model(tiny_models["model_a"], tmp_path / "boolbin")
    sd = tensors(d)
    sd["model.norm.weight"] = sd["model.norm.weight"] > 0
    (d / "model.safetensors").unlink()
    torch.save(sd, d / "pytorch_model.bin")
    return d, "dtype mismatch for model.norm.weight"


def _float8_nan(tiny_models, tmp_path):
    d = copy_model(tiny_models["model_a"], tmp_path / "f8nan")
    sd = {k: v.to(torch.float8_e4m3fn) for k, v in tensors(d).items()}
    sd["model.layers.0.mlp.gate_proj.weight"][0, 0] = float("nan")
    save_file(sd, str(d / "model.safetensors"), metadata={"format": "pt"})
    return d, "model.layers.0.mlp.gate_proj.weight contains NaN"


@pytest.mark.parametrize("make", [_mismatched, _missing_tensor, _corrupt, _nan, _config_not_object, _layers_not_int,
                                  _index_not_map, _index_bad_values, _int_tensor, _bool_tensor_bin, _float8_nan])
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
        # keys mergekit drops silently (the merge then used the fallback value without a word)
        ("merge_method: ties\nbase_model: {base}\nmodels: [{{model: {a}, densty: 0.3, parameters: {{weight: 1}}}}]",
         "models.0.densty: Extra inputs are not permitted"),
        ("merge_method: linear\nmodels: [{{model: {a}, parameters: {{weight: [{{filtr: mlp, value: 2}}, {{value: 1}}]}}}}]",
         "filtr"),
        ("merge_method: linear\nparamters: {{weight: 1}}\nmodels: [{{model: {a}}}]",
         "unknown key 'paramters' (did you mean 'parameters'?)"),
        ("merge_method: linear\nmodels: [{{model: {a}, parameters: {{weigth: 1, weight: 1}}}}]",
         ".parameters.weigth: no merge method has a parameter 'weigth' (did you mean 'weight'?)"),
        ("merge_method: linear\ntokenizer: {{source: union}}\nmodels: [{{model: {a}, parameters: {{weight: 1}}}}]",
         "tokenizer: mergekit's tokenizer block is not supported; use tokenizer_source"),
        ("merge_method: linear\nchat_template: chatml\nmodels: [{{model: {a}, parameters: {{weight: 1}}}}]",
         "chat_template: not supported"),
        ("merge_method: ties\nbase_model: {base}\nparameters: {{density: 0.3}}\nparameters: {{density: 0.9}}\n"
         "models: [{{model: {a}, parameters: {{weight: 1}}}}]", "duplicate key 'parameters'"),
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


def one_error_line(res, *culprits: str) -> str:
    """The CLI's single ``error:`` line, asserted to name every culprit."""
    assert res.exit_code != 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert all(c in lines[0] for c in culprits), res.output
    return lines[0]


def no_output(tmp_path: Path, out: Path) -> bool:
    return not out.exists() and not any(p.name.startswith(f".{out.name}.") for p in out.parent.iterdir())


@pytest.mark.parametrize(("weights", "culprit"), [
    ("{weight: 1}|{weight: -1}", "[1.0, -1.0]"),
    ("{weight: 0}|{weight: 0}", "[0.0, 0.0]"),
    ("{weight: [1, 0]}|{weight: [1, 0]}", "[0.0, 0.0] of tensor model.layers.3."),  # ~0 on the last layer only
])
def test_linear_weights_summing_to_zero_name_the_tensor(tiny_models, tmp_path, weights, culprit):
    m = tiny_models
    wa, wb = weights.split("|")
    recipe = write_recipe(tmp_path / "r.yml", f"merge_method: linear\nmodels:\n"
                          f"  - {{model: {m['model_a']}, parameters: {wa}}}\n  - {{model: {m['model_b']}, parameters: {wb}}}\n")
    out = tmp_path / "out"
    one_error_line(merge(recipe, out), culprit, "normalize: false")
    assert no_output(tmp_path, out)
    ok = write_recipe(tmp_path / "ok.yml", recipe.read_text() + "parameters: {normalize: false}\n")
    assert merge(ok, out).exit_code == 0


def test_non_utf8_recipe_fails_cleanly(tmp_path):
    recipe = tmp_path / "bin.yml"
    recipe.write_bytes(b"\xff\xfemerge_method: linear\n")
    one_error_line(merge(recipe, tmp_path / "out"), "bin.yml", "UTF-8")
    assert not (tmp_path / "out").exists()


def test_float8_inputs_merge_as_their_float32_upcast(tiny_models, tmp_path):
    """float8 weights (no isfinite kernel) are checked on an upcast copy and merged like float32."""
    m = tiny_models
    f8 = copy_model(m["model_b"], tmp_path / "f8")
    sd8 = {k: v.to(torch.float8_e4m3fn) for k, v in tensors(f8).items()}
    save_file(sd8, str(f8 / "model.safetensors"), metadata={"format": "pt"})
    up = copy_model(m["model_b"], tmp_path / "up")
    save_file({k: v.to(torch.float32) for k, v in sd8.items()}, str(up / "model.safetensors"), metadata={"format": "pt"})
    r8 = write_recipe(tmp_path / "8.yml", ties_yaml(m["base"], m["model_a"], f8))
    r32 = write_recipe(tmp_path / "32.yml", ties_yaml(m["base"], m["model_a"], up))
    assert merge(r8, tmp_path / "o8").exit_code == 0
    assert merge(r32, tmp_path / "o32").exit_code == 0
    o8, o32 = tensors(tmp_path / "o8"), tensors(tmp_path / "o32")
    assert set(o8) == set(o32) and all(torch.equal(o8[k], o32[k]) for k in o8)


@pytest.mark.parametrize(("body", "culprit"), [
    ("merge_method: task_arithmetic\nbase_model: {base}\nmodels: [{{model: {a}, parameters: {{weight: 1.0e+39}}}}]",
     "parameter weight: 1e+39"),
    ("merge_method: ties\nbase_model: {base}\nparameters: {{lambda: 1.0e+39}}\n"
     "models: [{{model: {a}, parameters: {{weight: 1, density: 0.5}}}}]", "parameter lambda: 1e+39"),
    ("merge_method: passthrough\nslices: [{{sources: [{{model: {a}, layer_range: [0, 2], parameters: {{scale: -1.0e+39}}}}]}}]",
     "parameter scale: -1e+39"),
])
def test_parameters_beyond_float32_are_rejected(tiny_models, tmp_path, body, culprit):
    m = tiny_models
    recipe = write_recipe(tmp_path / "r.yml", body.format(base=m["base"], a=m["model_a"]))
    out = tmp_path / "out"
    one_error_line(merge(recipe, out), culprit, "outside the float32 range")
    assert no_output(tmp_path, out)


def test_non_finite_merged_tensors_are_never_written(tiny_models, tmp_path):
    """Finite inputs and parameters whose merge overflows: float32 sums, float16 output."""
    m = tiny_models
    big = copy_model(m["model_a"], tmp_path / "big")
    sd = tensors(big)
    sd["model.layers.1.mlp.up_proj.weight"][0, 0] = 3.0e38
    sd["model.layers.2.mlp.up_proj.weight"][0, 0] = 1.0e5  # finite in float32, Inf in float16
    save_file(sd, str(big / "model.safetensors"), metadata={"format": "pt"})
    out = tmp_path / "out"
    twice = write_recipe(tmp_path / "r.yml", f"merge_method: linear\nparameters: {{normalize: false}}\nmodels:\n"
                         f"  - {{model: {big}, parameters: {{weight: 1}}}}\n  - {{model: {big}-same, parameters: {{weight: 1}}}}\n")
    shutil.copytree(big, f"{big}-same")
    one_error_line(merge(twice, out), "merged tensor model.layers.1.mlp.up_proj.weight", "NaN or Inf")
    assert no_output(tmp_path, out)
    sd["model.layers.1.mlp.up_proj.weight"][0, 0] = 0.0
    save_file(sd, str(big / "model.safetensors"), metadata={"format": "pt"})
    single = write_recipe(tmp_path / "s.yml", f"merge_method: linear\nmodels: [{{model: {big}, parameters: {{weight: 1}}}}]\n")
    one_error_line(merge(single, out, "--dtype", "float16"), "model.layers.2.mlp.up_proj.weight", "float16")
    assert no_output(tmp_path, out)
    assert merge(single, out).exit_code == 0  # float32 holds it


@pytest.mark.filterwarnings("error::RuntimeWarning")  # no numpy overflow noise either
def test_export_from_engine_refuses_non_finite_tensors(tiny_models, tmp_path):
    from frugalmerge.merging import MergeEngine, export_merge
    from frugalmerge.merging.errors import MergeError
    from frugalmerge.merging.recipe import MergeRecipe

    m = tiny_models
    engine = MergeEngine([str(m["model_a"]), str(m["model_b"])], verbose=False)
    recipe = MergeRecipe.model_validate({"merge_method": "linear", "parameters": {"normalize": False}, "models": [
        {"model": str(m["model_a"]), "parameters": {"weight": 3.0e38}},
        {"model": str(m["model_b"]), "parameters": {"weight": 3.0e38}}]})
    with pytest.raises(MergeError, match="merged tensor .* NaN or Inf"):
        export_merge(recipe, tmp_path / "out", engine=engine)
    assert no_output(tmp_path, tmp_path / "out")
    with pytest.raises(MergeError, match="is the input model"):
        export_merge(recipe, m["model_b"], engine=engine)


@pytest.mark.parametrize("where", ["models", "base_model", "tokenizer_source"])
def test_empty_model_paths_are_rejected(tiny_models, tmp_path, where):
    m = tiny_models
    a, base, tok = m["model_a"], m["base"], m["base"]
    if where == "models":
        a = "''"
    elif where == "base_model":
        base = "''"
    else:
        tok = "''"
    body = ties_yaml(base, a, m["model_b"]) + f"tokenizer_source: {tok}\n"
    out = tmp_path / "out"
    one_error_line(merge(write_recipe(tmp_path / "r.yml", body), out), "empty model path",
                   {"models": "models[0].model", "base_model": "base_model", "tokenizer_source": "tokenizer_source"}[where])
    assert no_output(tmp_path, out)


@pytest.mark.parametrize("size", ["0", "-1", "0KB"])
def test_shard_size_must_be_positive(tiny_models, tmp_path, size):
    m = tiny_models
    recipe = write_recipe(tmp_path / "r.yml", ties_yaml(m["base"], m["model_a"], m["model_b"]))
    one_error_line(merge(recipe, tmp_path / "out", "--shard-size", size), "--shard-size must be positive")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("target", ["model", "inside", "base", "tokenizer", "parent"])
def test_out_must_not_be_an_input_model(tiny_models, tmp_path, target):
    m = tiny_models
    b = copy_model(m["model_b"], tmp_path / "models" / "b")
    base = copy_model(m["base"], tmp_path / "base")
    tok = copy_model(m["model_a"], tmp_path / "tok")
    out, culprit = {"model": (b, b), "inside": (b / "merged", b), "base": (base, base),
                    "tokenizer": (tok, tok), "parent": (tmp_path / "models", b)}[target]
    before = {p: p.read_bytes() for d in (b, base, tok) for p in sorted(d.iterdir())}
    recipe = write_recipe(tmp_path / "r.yml", ties_yaml(base, m["model_a"], b) + f"tokenizer_source: {tok}\n")
    one_error_line(merge(recipe, out), str(culprit), "choose another --out")
    assert {p: p.read_bytes() for d in (b, base, tok) for p in sorted(d.iterdir())} == before
    assert not (b / "merged").exists()


def test_output_in_use_error_is_one_plain_line(tiny_models, tmp_path):
    m = tiny_models
    recipe = write_recipe(tmp_path / "r.yml", ties_yaml(m["base"], m["model_a"], m["model_b"]))
    (tmp_path / "out").write_text("keep me")
    line = one_error_line(merge(recipe, tmp_path / "out"), str(tmp_path / "out"), "existing file")
    assert "OutputInUseError" not in line and (tmp_path / "out").read_text() == "keep me"


def test_written_yaml_records_the_dtype_override(tiny_models, tmp_path):
    """``--dtype bfloat16`` over a recipe's float32: the YAML says bfloat16 and re-running it
    (no override) reproduces the output bit for bit."""
    import yaml

    m = tiny_models
    text = ties_yaml(m["base"], m["model_a"], m["model_b"]) + "out_dtype: float16\n"
    recipe = write_recipe(tmp_path / "r.yml", text)
    first = tmp_path / "first"
    assert merge(recipe, first, "--dtype", "bfloat16").exit_code == 0
    written = yaml.safe_load((first / "mergekit_config.yml").read_text())
    assert written["dtype"] == "bfloat16" and "out_dtype" not in written
    assert "dtype: bfloat16" in (first / "README.md").read_text()
    again = tmp_path / "again"
    assert merge(first / "mergekit_config.yml", again).exit_code == 0
    t1, t2 = tensors(first), tensors(again)
    assert all(t.dtype == torch.bfloat16 for t in t1.values())
    assert set(t1) == set(t2) and all(torch.equal(t1[k], t2[k]) for k in t1)
    assert json.loads((again / "config.json").read_text())["dtype"] == "bfloat16"
    # without an override the recipe is written as given
    plain = tmp_path / "plain"
    assert merge(recipe, plain).exit_code == 0
    assert yaml.safe_load((plain / "mergekit_config.yml").read_text()) == yaml.safe_load(text)


def test_engine_on_missing_cuda_is_one_merge_error(tiny_models, monkeypatch):
    from frugalmerge.merging import MergeEngine
    from frugalmerge.merging.errors import MergeError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MergeError, match="'cuda'.*no CUDA device"):
        MergeEngine([str(tiny_models["model_a"])], device="cuda", verbose=False)
    with pytest.raises(MergeError, match="'tpu:x' is not a torch device"):
        MergeEngine([str(tiny_models["model_a"])], device="tpu:x", verbose=False)


def test_filter_matching_no_tensor_is_warned_and_the_merge_still_runs(tiny_models, tmp_path):
    """mergekit skips a filter that matches nothing without a word (a typo merges with the
    fallback value); the CLI names it. Filters that match (self_attn) or match all (*) are quiet."""
    m = tiny_models
    recipe = write_recipe(tmp_path / "r.yml", (
        f"merge_method: linear\ndtype: float32\nmodels:\n"
        f"  - model: {m['model_a']}\n    parameters: {{weight: [{{filter: self_atn, value: 0.9}}, "
        f"{{filter: self_attn, value: 0.8}}, {{filter: '*', value: 0.5}}]}}\n"
        f"  - model: {m['model_b']}\n    parameters: {{weight: 0.5}}\n"))
    res = runner.invoke(app, ["merge", str(recipe), "--out", str(tmp_path / "out")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    warned = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert warned == [f"warning: filter 'self_atn' matches no tensor of {m['model_a']}: its values apply to no tensor"]
    assert (tmp_path / "out" / "config.json").is_file()


def test_another_methods_parameter_is_accepted_as_mergekit_does(tiny_models, tmp_path):
    """``density`` on ``linear`` is a parameter of other methods (multi-method YAMLs share blocks):
    ignored, as mergekit does; the output equals the recipe without it."""
    m = tiny_models
    body = "merge_method: linear\ndtype: float32\nmodels:\n  - model: {a}\n    parameters: {{weight: 1{extra}}}\n" \
           "  - model: {b}\n    parameters: {{weight: 1}}\n"
    with_density = write_recipe(tmp_path / "d.yml", body.format(a=m["model_a"], b=m["model_b"], extra=", density: 0.3"))
    plain = write_recipe(tmp_path / "p.yml", body.format(a=m["model_a"], b=m["model_b"], extra=""))
    assert merge(with_density, tmp_path / "o1").exit_code == 0 and merge(plain, tmp_path / "o2").exit_code == 0
    t1, t2 = tensors(tmp_path / "o1"), tensors(tmp_path / "o2")
    assert all(torch.equal(t1[k], t2[k]) for k in t1)


def test_written_yaml_records_the_seed_dare_used(tiny_models, tmp_path):
    """``--seed 3`` over ``random_seed: 7``: the DARE masks are seed 3's, and so is the YAML's
    random_seed, so re-running the written YAML reproduces the weights (it said 7 before)."""
    import yaml

    m = tiny_models
    text = (f"merge_method: dare_ties\nbase_model: {m['base']}\ndtype: float32\nrandom_seed: 7\nmodels:\n"
            f"  - model: {m['model_a']}\n    parameters: {{weight: 0.5, density: 0.4}}\n"
            f"  - model: {m['model_b']}\n    parameters: {{weight: 0.5, density: 0.4}}\n")
    recipe = write_recipe(tmp_path / "r.yml", text)
    assert merge(recipe, tmp_path / "first", "--seed", "3").exit_code == 0
    assert yaml.safe_load((tmp_path / "first" / "mergekit_config.yml").read_text())["random_seed"] == 3
    assert merge(tmp_path / "first" / "mergekit_config.yml", tmp_path / "again").exit_code == 0
    assert merge(recipe, tmp_path / "seven").exit_code == 0
    t1, t2, t7 = tensors(tmp_path / "first"), tensors(tmp_path / "again"), tensors(tmp_path / "seven")
    assert all(torch.equal(t1[k], t2[k]) for k in t1)
    assert not all(torch.equal(t1[k], t7[k]) for k in t1)  # the seed matters: 3 is not 7
    # no seed anywhere: DARE ran with 0 and says so
    plain = write_recipe(tmp_path / "p.yml", text.replace("random_seed: 7\n", ""))
    assert merge(plain, tmp_path / "zero").exit_code == 0
    assert yaml.safe_load((tmp_path / "zero" / "mergekit_config.yml").read_text())["random_seed"] == 0


@pytest.mark.parametrize("config_dtype", [None, "auto"])
def test_output_dtype_follows_the_stored_weights_when_config_json_says_nothing(tiny_models, tmp_path, config_dtype):
    """A bfloat16 model whose config.json has no (or an ``auto``) dtype was merged to float32,
    twice its size; the stored dtype is used now."""
    models = []
    for name in ("model_a", "model_b"):
        d = copy_model(tiny_models[name], tmp_path / name)
        save_file({k: v.to(torch.bfloat16) for k, v in tensors(d).items()}, str(d / "model.safetensors"),
                  metadata={"format": "pt"})
        cfg = json.loads((d / "config.json").read_text())
        cfg.pop("torch_dtype", None)
        cfg.pop("dtype", None)
        if config_dtype is not None:
            cfg["torch_dtype"] = config_dtype
        (d / "config.json").write_text(json.dumps(cfg))
        models.append(d)
    recipe = write_recipe(tmp_path / "r.yml", "merge_method: linear\nmodels:\n" + "".join(
        f"  - model: {d}\n    parameters: {{weight: 1}}\n" for d in models))
    assert merge(recipe, tmp_path / "out").exit_code == 0
    assert all(t.dtype == torch.bfloat16 for t in tensors(tmp_path / "out").values())
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "bfloat16"

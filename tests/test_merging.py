"""Merging: hand-computed method results, recipe semantics, engine placement, round trips."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from frugalmerge.merging import MergeEngine, MergeRecipe, RecipeError, export_merge, run_merge
from frugalmerge.merging.methods import CHUNK, Operand, TensorArgs, get_method
from frugalmerge.merging.recipe import ConditionalParameter, evaluate_setting
from merging_helpers import tensors

# ------------------------------------------------------------------ helpers


def call(method: str, base, inputs, per_input, shared=None, seed=0, refs_shared=True):
    """Run one registered method function on small float tensors (base-aware or not)."""
    m = get_method(method)
    shared = {p.name: p.default for p in m.shared_params} | (shared or {})
    out = torch.empty(inputs[0].numel())
    if m.base == "required":
        b = Operand(base.reshape(-1).float())
        ops = [Operand(b.ref, x.reshape(-1).float() - b.ref) for x in inputs]
        m.fn(TensorArgs("t", out, b, ops, shared, per_input, seed, {}))
    else:
        ops = [Operand(x.reshape(-1).float()) for x in inputs]
        m.fn(TensorArgs("t", out, None, ops, shared, per_input, seed, {}))
    return out.reshape(inputs[0].shape)


# ------------------------------------------------------- hand-computed, per method
def test_linear_hand_computed():
    x, y = torch.tensor([1.0, 2.0, -4.0]), torch.tensor([3.0, 0.0, 4.0])
    out = call("linear", None, [x, y], [{"weight": 1.0}, {"weight": 3.0}])
    assert torch.allclose(out, torch.tensor([2.5, 0.5, 2.0]))
    out = call("linear", None, [x, y], [{"weight": 1.0}, {"weight": 3.0}], {"normalize": False})
    assert torch.allclose(out, torch.tensor([10.0, 2.0, 8.0]))


def test_task_arithmetic_hand_computed():
    base = torch.tensor([1.0, 1.0, 1.0])
    a, b = torch.tensor([2.0, 1.0, 0.0]), torch.tensor([1.0, 3.0, 1.0])
    # deltas (1,0,-1) and (0,2,0); weights 0.5, 1; lambda 2
    out = call("task_arithmetic", base, [a, b], [{"weight": 0.5}, {"weight": 1.0}], {"lambda": 2.0})
    assert torch.allclose(out, torch.tensor([2.0, 5.0, 0.0]))
    out = call("task_arithmetic", base, [a, b], [{"weight": 0.5}, {"weight": 1.0}], {"normalize": True})
    assert torch.allclose(out, base + torch.tensor([0.5, 2.0, -0.5]) / 1.5)


def test_ties_hand_computed():
    base = torch.zeros(4)
    a = torch.tensor([3.0, -1.0, 0.5, -2.0])
    b = torch.tensor([-1.0, 2.0, -4.0, 0.1])
    # density 0.5 keeps the 2 largest |delta|: a -> (3, 0, 0, -2), b -> (0, 2, -4, 0)
    # weights 1 and 0.5: weighted (3,0,0,-2), (0,1,-2,0); signs of sums: +, +, -, -
    # all kept entries agree with their majority; divisor = weight of agreeing inputs
    out = call("ties", base, [a, b], [{"weight": 1.0, "density": 0.5}, {"weight": 0.5, "density": 0.5}])
    assert torch.allclose(out, torch.tensor([3.0, 1.0 / 0.5, -2.0 / 0.5, -2.0]))
    # disagreement: element 0 has +3 (w 1) vs -4 (w 1): majority -, only b counts
    a2, b2 = torch.tensor([3.0, 1.0]), torch.tensor([-4.0, 1.0])
    out = call("ties", torch.zeros(2), [a2, b2], [{"weight": 1.0, "density": 1.0}] * 2)
    assert torch.allclose(out, torch.tensor([-4.0, 1.0]))
    out = call("ties", torch.zeros(2), [a2, b2], [{"weight": 1.0, "density": 1.0}] * 2, {"normalize": False})
    assert torch.allclose(out, torch.tensor([-4.0, 2.0]))


def test_breadcrumbs_hand_computed():
    base = torch.zeros(10)
    d = torch.arange(1.0, 11.0)  # magnitudes 1..10
    # density 0.5, gamma 0.2: drop the 2 largest (10, 9), then keep 5 -> 4..8
    out = call("breadcrumbs", base, [d], [{"weight": 1.0, "density": 0.5, "gamma": 0.2}])
    expected = torch.where((d >= 4) & (d <= 8), d, torch.zeros(()))
    assert torch.allclose(out, expected)
    # breadcrumbs_ties with one input and normalize: consensus divides by the weight
    out = call("breadcrumbs_ties", base, [-d], [{"weight": 2.0, "density": 0.5, "gamma": 0.2}], {"normalize": True})
    assert torch.allclose(out, -expected)


def test_slerp_hand_computed():
    v0, v1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    out = call("slerp", v0, [v1], [{}], {"t": 0.5})
    # theta = 90 deg; coefficients sin(45)/sin(90) on the unnormalized vectors
    c = math.sin(math.pi / 4)
    assert torch.allclose(out, torch.tensor([c, 2 * c]))
    # collinear -> linear interpolation
    out = call("slerp", v0, [3 * v0], [{}], {"t": 0.25})
    assert torch.allclose(out, torch.tensor([1.5, 0.0]))


def test_dare_density_one_equals_deterministic_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    base, a, b = (torch.randn(3 * CHUNK + 17, generator=g) for _ in range(3))
    per = [{"weight": 0.6, "density": 1.0}, {"weight": 0.4, "density": 1.0}]
    dense = call("dare_ties", base, [a, b], per)
    # dare_ties at density 1 = ties at density 1 (normalize off)
    assert torch.equal(dense, call("ties", base, [a, b], per, {"normalize": False}))
    assert torch.equal(call("dare_linear", base, [a, b], per), call("task_arithmetic", base, [a, b], per))
    per = [{"weight": 0.6, "density": 0.3}, {"weight": 0.4, "density": 0.3}]
    r1, r2 = call("dare_ties", base, [a, b], per, seed=1), call("dare_ties", base, [a, b], per, seed=1)
    assert torch.equal(r1, r2)
    assert not torch.equal(r1, call("dare_ties", base, [a, b], per, seed=2))
    # about 30% of each task vector survives; L1 rescale keeps the L1 mass of each delta
    kept = (call("dare_linear", base, [a], [{"weight": 1.0, "density": 0.3}], seed=3) - base) != 0
    assert 0.27 < kept.float().mean().item() < 0.33
    res = call("dare_linear", base, [a], [{"weight": 1.0, "density": 0.3}], seed=3) - base
    assert math.isclose(res.abs().sum().item(), (a - base).abs().sum().item(), rel_tol=1e-4)


def test_ties_threshold_selection_matches_full_sort():
    g = torch.Generator().manual_seed(1)
    base, a = torch.randn(5000, generator=g), torch.randn(5000, generator=g)
    for density in (0.01, 0.37, 0.9):
        out = call("ties", base, [a], [{"weight": 1.0, "density": density}])
        d = a - base
        k = max(1, int(density * d.numel()))
        keep = torch.zeros_like(d)
        keep[torch.argsort(d.abs(), descending=True)[:k]] = 1
        assert torch.allclose(out, base + d * keep)


# ------------------------------------------------------------------ recipe semantics
def test_gradient_and_filter_resolution():
    f = float
    assert evaluate_setting("x", [0.0, 1.0], 0.25, f) == 0.25
    assert evaluate_setting("x", [0.0, 1.0, 0.0], 0.75, f) == 0.5
    assert evaluate_setting("x", [2.0], 0.7, f) == 2.0
    cond = [ConditionalParameter(filter="mlp", value=[0.1, 0.3]), ConditionalParameter(value=0.9)]
    assert evaluate_setting("model.layers.0.mlp.up_proj.weight", cond, 1.0, f) == 0.3
    assert evaluate_setting("model.layers.0.self_attn.q_proj.weight", cond, 1.0, f) == 0.9
    only = [ConditionalParameter(filter="mlp", value=1.0)]
    assert evaluate_setting("model.norm.weight", only, 0.0, f) is None


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        ("merge_method: nope\nmodels: [{model: a}]", "nope"),
        ("merge_method: ties\nbase_model: a\nmodels: [{model: b, parameters: {density: 1.2}}]", "density"),
        ("merge_method: ties\nmodels: [{model: a, parameters: {density: [0.5, -0.1]}}]", "density"),
        ("merge_method: linear\nmodels: [{model: a\n", "YAML"),
        ("merge_method: linear", "models"),
        ("- just\n- a list", "mapping"),
    ],
)
def test_bad_recipes_name_the_culprit(text, culprit):
    with pytest.raises(RecipeError, match=culprit):
        MergeRecipe.from_yaml(text)


def test_recipe_yaml_round_trip_and_frozen():
    text = (
        "merge_method: ties\nbase_model: b\nmodels:\n  - model: x\n    parameters:\n"
        "      weight: [{filter: mlp, value: [0.1, 0.2]}, {value: 1}]\n      density: 0.5\n"
    )
    r = MergeRecipe.from_yaml(text)
    assert MergeRecipe.from_yaml(r.to_yaml()) == r
    assert MergeRecipe.model_validate(r.to_dict()) == r
    with pytest.raises(Exception):
        r.merge_method = "linear"


# ------------------------------------------------------------- on the tiny models
def _recipe(method: str, m: dict[str, Path], **extra) -> MergeRecipe:
    base, a, b, c = (str(m[k]) for k in ("base", "model_a", "model_b", "model_c"))
    models = {
        "linear": [{"model": a, "parameters": {"weight": 0.5}}, {"model": b, "parameters": {"weight": [0.2, 0.8]}},
                   {"model": c, "parameters": {"weight": 0.3}}],
        "slerp": [{"model": base}, {"model": a}],
    }.get(method, [
        {"model": a, "parameters": {"weight": 0.5, "density": 0.6}},
        {"model": b, "parameters": {"weight": [{"filter": "mlp", "value": 0.2}, {"value": 0.7}], "density": 0.4}},
        {"model": c, "parameters": {"weight": 0.3, "density": [0.3, 0.9]}},
    ])
    d = {"merge_method": method, "models": models, "dtype": "float32"}
    if method != "linear":
        d["base_model"] = base
    if method == "slerp":
        d["parameters"] = {"t": [0.0, 0.4, 1.0]}
    d.update(extra)
    return MergeRecipe.model_validate(d)


@pytest.fixture(scope="module")
def engine(tiny_models):
    m = tiny_models
    return MergeEngine([str(m["model_a"]), str(m["model_b"]), str(m["model_c"])], base_model=str(m["base"]),
                       verbose=False)


def test_engine_matches_hand_computed_linear_and_gradient(engine, tiny_models):
    m = tiny_models
    mod = engine.materialize(_recipe("linear", m))
    sd = mod.state_dict()
    a, b, c = (tensors(m[k]) for k in ("model_a", "model_b", "model_c"))
    for layer, wb in ((0, 0.2), (3, 0.8), (1, 0.2 + 0.6 / 3)):
        name = f"model.layers.{layer}.mlp.down_proj.weight"
        exp = (0.5 * a[name] + wb * b[name] + 0.3 * c[name]) / (0.5 + wb + 0.3)
        assert torch.allclose(sd[name], exp, atol=1e-6)
    # tensors outside the layer stack use t = 0
    exp = (0.5 * a["model.norm.weight"] + 0.2 * b["model.norm.weight"] + 0.3 * c["model.norm.weight"]) / 1.0
    assert torch.allclose(sd["model.norm.weight"], exp, atol=1e-6)


def test_engine_ties_filters_and_gradients(engine, tiny_models):
    m = tiny_models
    mod = engine.materialize(_recipe("ties", m))
    sd = mod.state_dict()
    base = tensors(m["base"])
    eps = [tensors(m[k]) for k in ("model_a", "model_b", "model_c")]
    for name, layer in (("model.layers.2.self_attn.q_proj.weight", 2), ("model.layers.3.mlp.up_proj.weight", 3)):
        t = layer / 3
        weights = [0.5, 0.2 if "mlp" in name else 0.7, 0.3]
        dens = [0.6, 0.4, 0.3 + 0.6 * t]
        ds = []
        for e, w, dn in zip(eps, weights, dens):
            d = e[name] - base[name]
            k = max(1, int(dn * d.numel()))
            keep = torch.zeros(d.numel())
            keep[torch.argsort(d.abs().reshape(-1), descending=True)[:k]] = 1
            ds.append(w * d * keep.reshape(d.shape))
        s = torch.stack(ds)
        maj = s.sum(0) >= 0
        agree = torch.where(maj, s > 0, s < 0)
        w = torch.tensor(weights).view(-1, 1, 1)
        div = (w * agree).sum(0)
        div[div == 0] = 1
        exp = base[name] + (s * agree).sum(0) / div
        assert torch.allclose(sd[name], exp, atol=1e-6), name


def test_engine_slerp_endpoints(engine, tiny_models):
    m = tiny_models
    sd = engine.materialize(_recipe("slerp", m)).state_dict()
    base, a = tensors(m["base"]), tensors(m["model_a"])
    n0, n3 = "model.layers.0.self_attn.o_proj.weight", "model.layers.3.self_attn.o_proj.weight"
    assert torch.allclose(sd[n0], base[n0], atol=1e-6)  # t = 0 on the first layer
    assert torch.allclose(sd[n3], a[n3], atol=1e-6)  # t = 1 on the last layer


def test_engine_materializes_in_place_and_reproducibly(engine, tiny_models):
    m = tiny_models
    mod = engine.materialize(_recipe("dare_ties", m), seed=5)
    ptr = mod.model.embed_tokens.weight.data_ptr()
    first = {k: v.clone() for k, v in mod.state_dict().items()}
    engine.materialize(_recipe("ties", m))
    again = engine.materialize(_recipe("dare_ties", m), seed=5)
    assert again is mod and mod.model.embed_tokens.weight.data_ptr() == ptr
    assert all(torch.equal(first[k], v) for k, v in again.state_dict().items())
    other = engine.materialize(_recipe("dare_ties", m), seed=6).state_dict()
    assert not torch.equal(first["model.layers.1.mlp.up_proj.weight"], other["model.layers.1.mlp.up_proj.weight"])


@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "breadcrumbs_ties", "dare_ties", "slerp"])
def test_round_trip_export_yaml_cli_equals_engine(engine, tiny_models, tmp_path, method):
    recipe = _recipe(method, tiny_models, random_seed=11)
    sd = {k: v.clone() for k, v in engine.materialize(recipe).state_dict().items()}
    exported = export_merge(recipe, tmp_path / "exp", engine=engine)
    again = MergeRecipe.from_yaml(exported / "mergekit_config.yml")
    assert again == recipe
    streamed = tensors(run_merge(again, tmp_path / "cli", progress=False))
    assert set(streamed) == set(tensors(exported))
    # Bit-identical when the recipe uses every engine model (same kernels on the same stacked
    # task vectors); slerp uses one of three, so the engine combines rows one by one.
    for name, value in streamed.items():
        if method == "slerp":
            assert torch.allclose(value, sd[name], rtol=0, atol=1e-7), name
        else:
            assert torch.equal(value, sd[name]), name
    assert (exported / "tokenizer.json").is_file() and "```yaml" in (exported / "README.md").read_text()


def test_placement_plans_under_simulated_budgets(tiny_models):
    m = tiny_models
    models = [str(m["model_a"]), str(m["model_b"])]
    full = MergeEngine(models, base_model=str(m["base"]), verbose=False)
    module_bytes = full.plan.module_bytes
    cache_bytes = full.plan.bytes_on("device")
    assert full.plan.count_on("device") == len(full.plan.tensors)
    half = MergeEngine(models, base_model=str(m["base"]), max_device_memory=module_bytes + cache_bytes // 2,
                       verbose=False)
    assert 0 < half.plan.count_on("device") < len(half.plan.tensors) and half.plan.count_on("host") > 0
    assert half.plan.bytes_on("device") <= cache_bytes // 2
    tight = MergeEngine(models, base_model=str(m["base"]), max_device_memory=module_bytes,
                        max_host_memory=cache_bytes // 3, verbose=False)
    assert tight.plan.count_on("device") == 0 and tight.plan.count_on("mmap") > 0
    assert "memory-mapped" in tight.plan.summary()
    recipe = MergeRecipe.model_validate({
        "merge_method": "ties", "base_model": str(m["base"]),
        "models": [{"model": p, "parameters": {"weight": 0.5, "density": 0.5}} for p in models]})
    ref = {k: v.clone() for k, v in full.materialize(recipe).state_dict().items()}
    for eng in (half, tight):
        got = eng.materialize(recipe).state_dict()
        assert all(torch.equal(ref[k], got[k]) for k in ref)
    with pytest.raises(Exception, match="live module"):
        MergeEngine(models, base_model=str(m["base"]), max_device_memory=1000, verbose=False)


def test_storage_dtype_bfloat16_close_to_float32(engine, tiny_models):
    m = tiny_models
    eng = MergeEngine([str(m["model_a"]), str(m["model_b"]), str(m["model_c"])], base_model=str(m["base"]),
                      storage_dtype="bfloat16", verbose=False)
    recipe = _recipe("task_arithmetic", m)
    got = eng.materialize(recipe).state_dict()
    exp = engine.materialize(recipe).state_dict()
    assert all(torch.allclose(got[k], exp[k], atol=2e-3) for k in exp)


def test_engine_rejects_unknown_models_and_out_of_range_layers(engine, tiny_models, tmp_path):
    m = tiny_models
    bad = MergeRecipe.model_validate({"merge_method": "linear", "models": [{"model": str(tmp_path), "parameters": {"weight": 1}}]})
    with pytest.raises(RecipeError, match="not loaded"):
        engine.materialize(bad)
    sliced = MergeRecipe.model_validate({"merge_method": "passthrough", "slices": [
        {"sources": [{"model": str(m["model_a"]), "layer_range": [2, 6]}]}]})
    with pytest.raises(RecipeError, match="out of range"):
        engine.materialize(sliced)

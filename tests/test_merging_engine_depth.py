"""The engine materializes recipes that change the layer count (passthrough stacking) in place too."""

from __future__ import annotations

import pytest
import torch

from frugalmerge.merging import MergeEngine, MergeRecipe, export_merge, run_merge
from merging_helpers import tensors


@pytest.fixture(scope="module")
def engine(tiny_models):
    m = tiny_models
    return MergeEngine([str(m["model_a"]), str(m["model_b"])], base_model=str(m["base"]), verbose=False)


def _stack(m, a_range, b_range, scale=1.0) -> MergeRecipe:
    return MergeRecipe.model_validate({"merge_method": "passthrough", "slices": [
        {"sources": [{"model": str(m["model_a"]), "layer_range": list(a_range)}]},
        {"sources": [{"model": str(m["model_b"]), "layer_range": list(b_range),
                      "parameters": {"scale": [{"filter": "o_proj", "value": scale}, {"value": 1.0}]}}]},
    ]})


def close(x, y) -> bool:
    # the engine rebuilds a source tensor as reference + cached task vector: float32 rounding only
    return torch.allclose(x, y, rtol=0, atol=1e-7)


def test_deeper_stack_is_materialized_like_the_cli_merge(engine, tiny_models, tmp_path):
    m = tiny_models
    recipe = _stack(m, (0, 3), (1, 4), scale=0.5)  # 3 + 3 = 6 layers from 4-layer models
    module = engine.materialize(recipe)
    assert module.config.num_hidden_layers == 6 and len(module.model.layers) == 6
    got = dict(module.named_parameters())
    a, b = tensors(m["model_a"]), tensors(m["model_b"])
    assert close(got["model.layers.2.mlp.up_proj.weight"], a["model.layers.2.mlp.up_proj.weight"])
    assert close(got["model.layers.3.mlp.up_proj.weight"], b["model.layers.1.mlp.up_proj.weight"])
    assert close(got["model.layers.5.self_attn.o_proj.weight"], 0.5 * b["model.layers.3.self_attn.o_proj.weight"])
    cli = tensors(run_merge(recipe, tmp_path / "cli", progress=False))
    exported = tensors(export_merge(recipe, tmp_path / "exp", engine=engine))
    assert set(cli) == set(exported)
    for name, t in cli.items():
        assert close(exported[name], t), name
    # the stacked module runs
    with torch.no_grad():
        logits = module(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape[:2] == (1, 3) and torch.isfinite(logits).all()


def test_depth_modules_are_reused_in_place_and_bounded(engine, tiny_models):
    m = tiny_models
    first = engine.materialize(_stack(m, (0, 3), (1, 4), scale=0.5))
    ptr = first.model.layers[5].self_attn.o_proj.weight.data_ptr()
    again = engine.materialize(_stack(m, (0, 3), (1, 4), scale=0.25))
    assert again is first and again.model.layers[5].self_attn.o_proj.weight.data_ptr() == ptr
    b = tensors(m["model_b"])
    assert close(again.model.layers[5].self_attn.o_proj.weight, 0.25 * b["model.layers.3.self_attn.o_proj.weight"])
    shallow = engine.materialize(_stack(m, (0, 1), (3, 4)))
    assert shallow.config.num_hidden_layers == 2
    engine.materialize(_stack(m, (0, 2), (0, 3)))  # a third depth evicts the least recent one
    assert len(engine._extra) == engine.max_extra_modules
    assert all(layers != 6 for layers, _vocab in engine._extra)
    # the reference depth still uses the start-up module
    lin = MergeRecipe.model_validate({"merge_method": "linear", "models": [
        {"model": str(m["model_a"]), "parameters": {"weight": 1.0}}]})
    assert engine.materialize(lin) is engine.module

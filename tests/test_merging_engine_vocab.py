"""The engine merges models with different vocabularies exactly like the CLI merge."""

from __future__ import annotations

import pytest
import torch

from frugalmerge.merging import MergeEngine, MergeRecipe, RecipeError, run_merge
from test_merging_tokenizer import EMB, HEAD, tensors, with_extra_words


def _recipe(method: str, models: list, base=None, tokenizer_source="base") -> MergeRecipe:
    spec = {"merge_method": method, "tokenizer_source": tokenizer_source,
            "models": [{"model": str(m), "parameters": {"weight": w, "density": 0.7}}
                       for m, w in zip(models, (0.6, 0.5, 0.4))]}
    if base is not None:
        spec["base_model"] = str(base)
    return MergeRecipe.model_validate(spec)


def _same_as_cli(engine, recipe, out, atol=0.0):
    got = {k: v.clone() for k, v in engine.materialize(recipe, seed=3).state_dict().items()}
    cli = tensors(run_merge(recipe, out, seed=3, progress=False))
    for name, value in cli.items():
        assert torch.allclose(got[name], value, rtol=0, atol=atol), name
    return cli


@pytest.mark.parametrize("method", ["ties", "task_arithmetic", "breadcrumbs_ties"])
def test_base_with_extra_tokens(tiny_models, tmp_path, method):
    """Models lacking the base's extra tokens get the base's rows (zero task vector), as mergekit."""
    m = tiny_models
    big = with_extra_words(m["base"], tmp_path / "bigbase", {"zebra": 0.5, "quokka": -0.5})
    engine = MergeEngine([str(m["model_a"]), str(m["model_b"])], base_model=str(big), verbose=False)
    out = _same_as_cli(engine, _recipe(method, [m["model_a"], m["model_b"]], base=big), tmp_path / "cli")
    assert torch.equal(out[EMB][-2:], tensors(big)[EMB][-2:])


def test_no_base_fills_by_the_recipes_models_only(tiny_models, tmp_path):
    """Without a base, a missing row is the mean over the recipe's models that have the token."""
    m = tiny_models
    a = with_extra_words(m["model_a"], tmp_path / "a", {"zebra": 0.5})
    b = with_extra_words(m["model_b"], tmp_path / "b", {"zebra": -0.25})
    engine = MergeEngine([str(a), str(b), str(m["model_c"])], verbose=False)
    pair = _same_as_cli(engine, _recipe("linear", [a, m["model_c"]]), tmp_path / "pair", atol=1e-7)
    assert torch.allclose(pair[HEAD][-1], torch.full_like(pair[HEAD][-1], 0.5))  # only a has it
    trio = _same_as_cli(engine, _recipe("linear", [a, b, m["model_c"]]), tmp_path / "trio", atol=1e-7)
    # c gets the mean of a's and b's rows (0.125); weights 0.6, 0.5, 0.4 (normalized)
    exp = (0.6 * 0.5 + 0.5 * -0.25 + 0.4 * 0.125) / 1.5
    assert torch.allclose(trio[HEAD][-1], torch.full_like(trio[HEAD][-1], exp), atol=1e-6)


def test_engine_refuses_other_vocabularies(tiny_models, tmp_path):
    m = tiny_models
    a = with_extra_words(m["model_a"], tmp_path / "a", {"zebra": 0.5})
    engine = MergeEngine([str(a), str(m["model_b"])], verbose=False)
    with pytest.raises(RecipeError, match="different vocabularies"):
        engine.materialize(_recipe("linear", [a, m["model_b"]], tokenizer_source=None))
    with pytest.raises(RecipeError, match="union"):
        engine.materialize(_recipe("linear", [a, m["model_b"]], tokenizer_source="union"))
    with pytest.raises(RecipeError, match="aligns vocabularies"):  # "base" = first model = model_b here
        engine.materialize(_recipe("linear", [m["model_b"], a]))

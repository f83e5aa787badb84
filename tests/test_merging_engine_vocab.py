"""The engine merges models with different vocabularies exactly like the CLI merge."""

from __future__ import annotations

import pytest
import torch

from frugalmerge.merging import MergeEngine, MergeRecipe, RecipeError, run_merge
from merging_helpers import EMB, HEAD, tensors, with_extra_words


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
    with pytest.raises(RecipeError, match="aligns vocabularies"):  # "base" = first model = model_b here
        engine.materialize(_recipe("linear", [m["model_b"], a]))


@pytest.mark.parametrize("method", ["linear", "ties"])
def test_union_vocabulary_matches_the_cli_merge(tiny_models, tmp_path, method):
    """tokenizer_source: union in the engine: a live module with the union's rows, the CLI's values,
    and an export whose tokenizer knows every model's tokens."""
    from transformers import AutoTokenizer

    from frugalmerge.merging import export_merge

    m = tiny_models
    a = with_extra_words(m["model_a"], tmp_path / "a", {"zebra": 0.5})
    b = with_extra_words(m["model_b"], tmp_path / "b", {"quokka": -0.25, "zebra": 0.25})
    engine = MergeEngine([str(a), str(b)], base_model=str(m["base"]), verbose=False)
    base = m["base"] if method == "ties" else None
    recipe = _recipe(method, [a, b], base=base, tokenizer_source="union")
    # linear has no base: the CLI takes deltas against model a, the engine against its base (a few ulp)
    cli = _same_as_cli(engine, recipe, tmp_path / "cli", atol=3e-7)
    n = len(AutoTokenizer.from_pretrained(str(m["base"])))
    assert cli[EMB].shape[0] == n + 2
    module = engine.materialize(recipe, seed=3)
    assert module.get_input_embeddings().weight.shape[0] == n + 2
    with torch.no_grad():  # the union module runs on the union's new ids
        assert torch.isfinite(module(torch.tensor([[n, n + 1]])).logits).all()
    exported = export_merge(recipe, tmp_path / "exp", engine=engine, seed=3)
    tok = AutoTokenizer.from_pretrained(str(exported))
    assert len(tok) == n + 2 and {"zebra", "quokka"} <= set(tok.get_vocab())
    assert len(engine.tokenizer_for(recipe)) == n + 2 and len(engine.tokenizer) == n  # the reference (base) vocabulary

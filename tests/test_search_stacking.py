"""Layer-stacking search spaces (``stacking:``): genotype -> passthrough recipe, checks, a real run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from frugalmerge.merging import MergeEngine, MergeRecipe, export_merge
from frugalmerge.search.config import config_from_dict
from frugalmerge.search.errors import ConfigError
from frugalmerge.search.loop import run_search
from frugalmerge.search.space import SearchSpace

TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _tests_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


def _cfg(tiny_models, **over):
    raw = {
        "name": "stack", "seed": 1,
        "models": {"model_a": str(tiny_models["model_a"]), "model_b": str(tiny_models["model_b"])},
        "method": "passthrough",
        "stacking": {"scale": [0.0, 2.0]},
        "objectives": [{"name": "depth", "function": "search_objectives:depth_five"}],
        "algorithm": {"name": "ga", "pop_size": 8},
        "budget": {"generations": 6},
        "final": {"export": "none"},
    }
    raw.update(over)
    return raw


def test_decode_picks_and_scales_slots_in_order(tiny_models):
    space = SearchSpace(config_from_dict(_cfg(tiny_models)))
    # slots: model_a layers 0-3, then model_b layers 0-3; one use gene + one scale gene each
    assert space.n_var == 16 and space.gene_names[5] == "use[5:model_b.1]"
    x = np.zeros(16)
    x[[1, 5, 6]] = 0.9
    x[8 + 5] = 0.25
    recipe = space.decode(x)
    sources = [s["sources"][0] for s in recipe["slices"]]
    a, b = str(tiny_models["model_a"]), str(tiny_models["model_b"])
    assert [(s["model"], s["layer_range"]) for s in sources] == [(a, [1, 2]), (b, [1, 2]), (b, [2, 3])]
    assert sources[1]["parameters"]["scale"] == [{"filter": "o_proj", "value": 0.5},
                                                 {"filter": "down_proj", "value": 0.5}, {"value": 1.0}]
    MergeRecipe.model_validate(recipe)  # a valid mergekit passthrough recipe
    # nothing chosen: the most wanted slot; more than max_layers: the most wanted, in slot order
    x = np.full(16, 0.1)
    x[3] = 0.4
    assert [s["sources"][0]["layer_range"] for s in space.decode(x)["slices"]] == [[3, 4]]
    capped = SearchSpace(config_from_dict(_cfg(tiny_models, stacking={"repeats": 2, "max_layers": 2})))
    assert capped.n_var == 16
    x = np.full(16, 0.6)
    x[[12, 2]] = 0.9
    assert [s["sources"][0]["layer_range"] for s in capped.decode(x)["slices"]] == [[2, 3], [0, 1]]


def test_stacked_recipe_materializes_in_the_engine(tiny_models):
    space = SearchSpace(config_from_dict(_cfg(tiny_models)))
    x = np.zeros(16)
    x[[0, 1, 2, 3, 4, 5]] = 0.9
    engine = MergeEngine([str(tiny_models["model_a"]), str(tiny_models["model_b"])], verbose=False)
    module = engine.materialize(MergeRecipe.model_validate(space.decode(x)))
    assert module.config.num_hidden_layers == 6


@pytest.mark.parametrize("over, message", [
    ({"method": "ties", "base_model": None}, "stacking: needs `method: passthrough`"),
    ({"stacking": None}, "needs a `stacking:` section"),
    ({"search": {"weight": {"bounds": [0, 1]}}}, "do not apply to layer stacking"),
    ({"fixed": {"parameters": {"normalize": False}}}, "`fixed` merge parameters do not apply to layer stacking"),
    ({"stacking": {"models": ["model_c"]}}, "unknown model 'model_c'"),
    ({"stacking": {"scale": [1.5, 0.5]}}, "scale bounds must be increasing"),
    ({"stacking": {"scale": [0.5, 1.5], "scale_filters": ["c_proj"]}}, "stacking.scale_filters: 'c_proj' matches no tensor"),
    ({"method": {"choices": ["passthrough", "ties"]}}, "cannot be one of several method choices"),
])
def test_bad_stacking_configs(tiny_models, over, message):
    raw = _cfg(tiny_models, **over)
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("`", "`")):
        config_from_dict(raw)


def test_stacking_run_finds_the_depth_and_exports_it(tiny_models, tmp_path):
    cfg = config_from_dict(_cfg(tiny_models, stacking={}))
    summary = run_search(cfg, tmp_path / "run", quiet=True)
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    depth = len(best["recipe"]["slices"])
    assert depth == 5 and summary["candidates"] > 8
    engine = MergeEngine([str(tiny_models["model_a"]), str(tiny_models["model_b"])], verbose=False)
    exported = export_merge(MergeRecipe.model_validate(best["recipe"]), tmp_path / "best", engine=engine)
    assert json.loads((exported / "config.json").read_text())["num_hidden_layers"] == 5
    assert MergeRecipe.from_yaml(exported / "mergekit_config.yml") == MergeRecipe.model_validate(best["recipe"])

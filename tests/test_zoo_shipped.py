"""The shipped full zoo: it loads, its splits are disjoint, and both showcase effects hold on the
held-out test split through the library's own merge engine and evaluation runner."""

from __future__ import annotations

import json

import numpy as np
import pytest

from frugalmerge.zoo import ensure_zoo, prebuilt_zoo_dir


@pytest.fixture(scope="module")
def zoo():
    if prebuilt_zoo_dir("full") is None:
        pytest.skip("this installation ships no prebuilt zoo")
    return ensure_zoo("full")


def test_shipped_zoo_manifest_and_splits(zoo):
    assert zoo.size == "full"
    assert set(zoo.showcases) == {"cross_domain", "multilingual"}
    for name in zoo.benchmarks:
        keys = {}
        for split, count in (("train", 1000), ("search", 400), ("test", 600)):
            rows = [json.loads(x) for x in zoo.split_path(name, split).read_text().splitlines()]
            assert len(rows) == count
            keys[split] = {r["metadata"]["structure"] for r in rows}
        assert not (keys["train"] & keys["test"]) and not (keys["search"] & keys["test"])
        assert not keys["train"] & keys["search"]


def _scores(engine, tokenizer, recipe, benches):
    from frugalmerge.evaluation import evaluate
    from frugalmerge.merging import MergeRecipe

    model = engine.materialize(MergeRecipe.model_validate(recipe), seed=0)
    return {name: np.array(list(evaluate(model, tokenizer, b, batch_size=128).values()))
            for name, b in benches.items()}


def _recipe(method, base, weights, **params):
    return {"merge_method": method, "base_model": base, "dtype": "float32",
            "models": [{"model": m, "parameters": {"weight": w, **params}}
                       for m, w in weights.items()]}


def test_both_showcase_effects_hold_on_the_test_split(zoo):
    from frugalmerge.evaluation import load_benchmark
    from frugalmerge.merging import MergeEngine

    paths = {name: str(path) for name, path in zoo.models.items()}
    base = paths["base"]
    engine = MergeEngine([paths["math_en"], paths["lang_de"], paths["lang_fr"]], base_model=base,
                         verbose=False)
    tok = engine.tokenizer
    benches = {name: load_benchmark(zoo.split_path(name, "test"), task=zoo.benchmarks[name].task)
               for name in ("math_de", "read_en", "read_de", "read_fr")}

    # cross-domain: math in German, English math expert + German expert
    math_de = {"math_de": benches["math_de"]}
    sources = {m: _scores(engine, tok, _recipe("task_arithmetic", base, {paths[m]: 1.0}),
                          math_de)["math_de"] for m in ("math_en", "lang_de")}
    merged = _scores(engine, tok, _recipe("task_arithmetic", base,
                                          {paths["math_en"]: 0.75, paths["lang_de"]: 1.0}),
                     math_de)["math_de"]
    assert merged.size >= 500
    for m, s in sources.items():
        assert merged.mean() - s.mean() >= 0.05, (m, merged.mean(), s.mean())

    # multilingual: mean reading accuracy over en/de/fr beats every expert
    reading = {k: v for k, v in benches.items() if k.startswith("read_")}
    means = {}
    for m in ("math_en", "lang_de", "lang_fr"):
        s = _scores(engine, tok, _recipe("task_arithmetic", base, {paths[m]: 1.0}), reading)
        means[m] = np.mean([v.mean() for v in s.values()])
    s = _scores(engine, tok, _recipe("ties", base, {paths["lang_de"]: 1.0, paths["lang_fr"]: 1.0},
                                     density=0.5), reading)
    merged_mean = np.mean([v.mean() for v in s.values()])
    assert all(merged_mean > v + 0.1 for v in means.values()), (merged_mean, means)

"""The shipped zoo estimator cards (estimators/zoo) and the command that builds them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from frugalmerge.zoo import ensure_zoo, prebuilt_zoo_dir
from frugalmerge.zoo.cards import INDEX_FILE, RESPONSES_FILE, build_cards, card_dirs, refit_card
from frugalmerge.zoo.errors import ZooError

CARDS = Path(__file__).resolve().parents[1] / "estimators" / "zoo"
GRADED = CARDS.with_name("zoo_graded")
GRADED_SCORING = {"graded": True, "graded_measure": "token_probability"}


@pytest.fixture(scope="module")
def zoo():
    if prebuilt_zoo_dir("full") is None or not (CARDS / INDEX_FILE).is_file():
        pytest.skip("this checkout ships no prebuilt zoo or no zoo cards")
    return ensure_zoo("full")


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("root", [CARDS, GRADED], ids=["0/1", "graded"])
def test_every_shipped_card_loads_and_uses_search_items_only(zoo, root):
    from frugalmerge.estimators import load_card, load_responses

    cards = card_dirs(root)
    if root == CARDS:  # one card per objective of every showcase
        assert set(cards) == {o for show in zoo.showcases.values() for o in show.objectives}
    else:  # graded cards where they measured better: the cross-domain showcase
        assert set(cards) == set(zoo.showcases["cross_domain"].objectives)
    for bench, folder in cards.items():
        est, card = load_card(folder)
        assert card.get("scoring") == (GRADED_SCORING if root == GRADED else None)
        search = _ids(zoo.benchmarks[bench].splits.search)
        test = set(_ids(zoo.benchmarks[bench].splits.test))
        assert card["k"] == len(est.selected_items_) > 0
        assert set(est.selected_items_) <= set(search)
        assert not set(est.selected_items_) & test
        data = load_responses(folder / RESPONSES_FILE)
        assert list(data.item_ids) == search  # trained on the whole search split, nothing else
        assert data.sha256() == card["training_data"]["sha256"]
        assert (data.target is not None) == (root == GRADED)  # graded: 0/1 accuracy is the target
        assert {"source:" + m for m in zoo.showcases[json.loads((root / INDEX_FILE).read_text())
                                                     ["cards"][bench]["showcase"]].models} <= set(data.model_ids)
        assert card["validation"]["n_test"] > 0 and 0.0 <= card["validation"]["mae"] < 0.1
        size = sum(p.stat().st_size for p in folder.iterdir())
        assert size < 200_000, f"{folder} is {size} bytes: cards must stay small"


def test_estimators_predict_works_on_a_shipped_card(zoo, tmp_path):
    from typer.testing import CliRunner

    from frugalmerge.cli import app
    from frugalmerge.estimators import load_card, load_responses

    folder = CARDS / "math_de"
    est, _ = load_card(folder)
    data = load_responses(folder / RESPONSES_FILE)
    observed = data.select_models(np.arange(6)).select_items(est.selected_items_)
    observed.to_csv(tmp_path / "obs.csv")
    result = CliRunner().invoke(app, ["estimators", "predict", str(folder), str(tmp_path / "obs.csv"),
                                      "--json", str(tmp_path / "pred.json")])
    assert result.exit_code == 0, result.output
    pred = json.loads((tmp_path / "pred.json").read_text())["predictions"]
    assert list(pred) == list(observed.model_ids)
    expected = est.predict(observed).score
    np.testing.assert_allclose([pred[m] for m in observed.model_ids], expected, atol=1e-12)
    assert all(0.0 <= v <= 1.0 for v in pred.values())


@pytest.mark.parametrize("root", [CARDS, GRADED], ids=["0/1", "graded"])
def test_rebuilding_a_card_from_its_data_reproduces_it(zoo, tmp_path, root):
    from safetensors.numpy import load_file

    folder = root / "math_de"
    out = refit_card(folder, tmp_path / "again")
    shipped, rebuilt = (json.loads((d / "card.json").read_text()) for d in (folder, out))
    assert rebuilt == shipped, "card differs from a refit on its own data: rebuild with 'frugalmerge zoo cards'"
    a, b = load_file(str(folder / "params.safetensors")), load_file(str(out / "params.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_rebuilding_from_different_data_fails_on_the_hash(zoo, tmp_path):
    folder = tmp_path / "math_de"
    shutil.copytree(CARDS / "math_de", folder)
    with np.load(folder / RESPONSES_FILE) as z:
        arrays = dict(z)
    arrays["values"] = arrays["values"].copy()
    arrays["values"][0, 0] = 1.0 - arrays["values"][0, 0]
    np.savez_compressed(folder / RESPONSES_FILE, **arrays)
    with pytest.raises(ZooError, match="differs from the card's training data"):
        refit_card(folder, tmp_path / "out")
    # the same check guards a search that recalibrates from the card's responses
    from frugalmerge.estimators.card import load_card_responses
    from frugalmerge.estimators.errors import CardError

    card = json.loads((folder / "card.json").read_text())
    with pytest.raises(CardError, match="differs from the card's training data"):
        load_card_responses(folder, card)
    (folder / RESPONSES_FILE).unlink()
    assert load_card_responses(folder, card) is None


@pytest.fixture(scope="module")
def smoke_zoo(tmp_path_factory) -> Path:
    from frugalmerge.zoo import build_zoo

    out = tmp_path_factory.mktemp("zoo") / "smoke"
    build_zoo("smoke", out)
    return out


def test_build_cards_then_search_with_card_promotion_and_final_rescoring(smoke_zoo, tmp_path):
    """``build_cards`` counts its one-off cost; a search on the card calibrates nothing, promotes on
    a card refitted at a larger k (its stored data, no items), and re-scores the top on the whole split."""
    from frugalmerge.estimators import load_card
    from frugalmerge.search.config import config_from_dict
    from frugalmerge.search.loop import run_search

    index = build_cards(smoke_zoo, tmp_path / "cards", estimator="pirt", k=4, random_merges=3,
                        showcases=["cross_domain"])
    search_ids = _ids(smoke_zoo / "benchmarks" / "math_de" / "search.jsonl")
    # sources (2) + base + average + 3 random merges, each on the whole search split
    assert index["cards"]["math_de"]["items_evaluated"] == 7 * len(search_ids) == index["items_evaluated"]
    est, card = load_card(tmp_path / "cards" / "math_de")
    assert card["estimator"] == "pirt" and len(est.selected_items_) == 4
    raw = {
        "name": "cd", "seed": 1, "zoo": str(smoke_zoo), "base_model": "base", "models": ["math_en", "lang_de"],
        "method": {"choices": ["task_arithmetic", "ties"]},
        "search": {"weight": {"bounds": [0.0, 1.5]}, "density": {"bounds": [0.3, 1.0]}},
        "objectives": [{"name": "math_de", "benchmark": "math_de", "card": str(tmp_path / "cards" / "math_de")}],
        "algorithm": {"name": "ga", "pop_size": 4}, "budget": {"generations": 2},
        "fidelity": {"promote_per_generation": 1, "k": 8},
        "final": {"test": False, "export": "none", "promotion": {"top": 2, "k": 1_000_000}},
    }
    result = run_search(config_from_dict(raw), tmp_path / "run", quiet=True)
    assert result["calibration_items"] == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "candidates.jsonl").read_text().splitlines()]
    promotions = [r for r in log if "promotion" in r]
    assert len(promotions) == 2 and all(r["items"] == 8 for r in promotions)
    assert sum(r["items"] for r in log) == result["items_evaluated"]
    assert all(r["items"] == 4 for r in log if "promotion" not in r)
    # final re-scoring: 2 candidates on every search item
    assert result["promotion_items"] == 2 * len(search_ids)
    total = result["items_evaluated"] + result["promotion_items"]  # the report's ratio counts both
    assert (f"items evaluated by this search: **{total:,}** ({result['items_evaluated']:,} during the generations"
            in (tmp_path / "run" / "report.md").read_text())
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    # the chosen merge is one of the re-scored ones; its value is a whole-split mean
    value = best["promoted"]["math_de"]["value"]
    assert 0.0 <= value <= 1.0 and round(value * len(search_ids)) == pytest.approx(value * len(search_ids))


def test_demo_configs_use_the_shipped_cards_on_the_shipped_zoo_only(zoo, smoke_zoo):
    from frugalmerge.search.config import config_from_dict
    from frugalmerge.search.demo import showcase_configs
    from frugalmerge.zoo import load_zoo
    from frugalmerge.zoo.cards import shipped_cards_for

    cards = shipped_cards_for(zoo)
    assert cards is not None and set(cards) == set(card_dirs(CARDS))
    # the graded card replaces the 0/1 card of its objective
    assert cards["math_de"] == GRADED / "math_de" and cards["read_de"] == CARDS / "read_de"
    assert shipped_cards_for(load_zoo(smoke_zoo)) is None  # other models: no cards
    plain = showcase_configs(zoo)
    for name, raw in showcase_configs(zoo, cards=cards).items():
        cfg = config_from_dict(raw)
        assert all(o.card == Path(cards[o.benchmark]) for o in cfg.objectives)
        if name == "cross_domain":  # graded card: no promotions, the final pick by the surrogate
            assert cfg.fidelity.promote_per_generation == 0 and cfg.fidelity.surrogate == "gp"
            assert not cfg.fidelity.surrogate_steer
        else:  # promotions refit the card at a larger k, not the whole split
            assert cfg.fidelity.k is not None and cfg.fidelity.promote_per_generation > 0
        # the search itself (space, algorithm, budget) is the same with or without cards
        assert {k: v for k, v in raw.items() if k not in ("objectives", "fidelity")} == \
            {k: v for k, v in plain[name].items() if k not in ("objectives", "fidelity")}


def test_build_cards_with_pilot_searches_adds_their_best_candidates(smoke_zoo, tmp_path):
    """Pilot searches (run with a first card) add their best distinct candidates to the training
    data, evaluated on every search item; their own items count in the one-off cost."""
    from frugalmerge.estimators import load_responses

    index = build_cards(smoke_zoo, tmp_path / "cards", estimator="pirt", k=4, random_merges=3,
                        showcases=["cross_domain"], pilot_searches=2, pilot_top=2, pilot_generations=2)
    n_search = len(_ids(smoke_zoo / "benchmarks" / "math_de" / "search.jsonl"))
    card = index["cards"]["math_de"]
    data = load_responses(tmp_path / "cards" / "math_de" / RESPONSES_FILE)
    pilots = [m for m in data.model_ids if m.startswith("pilot")]
    assert pilots == ["pilot0:0", "pilot0:1", "pilot1:0", "pilot1:1"] and card["pilot_models"] == 4
    assert data.values.shape == (7 + 4, n_search) and not np.isnan(data.values).any()
    # each pilot: 2 generations (<= 10 new candidates each at k = 4, + 1 promotion per generation)
    assert 2 * 4 <= card["pilot_search_items"] <= 2 * 2 * (10 * 4 + n_search)
    assert card["items_evaluated"] == data.values.size + card["pilot_search_items"] == index["items_evaluated"]
    assert index["pilot_searches"] == 2 and index["pilot_top"] == 2


def test_graded_cards_score_their_items_by_token_probability_and_keep_the_accuracy_target(smoke_zoo, tmp_path):
    """``graded``: the training responses are graded token probabilities, the target each model's
    0/1 search accuracy; the card records it, a search scores the card's items (and promotions) the
    same way while the test split stays 0/1; refit keeps it; adaptive testing refuses the card."""
    from frugalmerge.estimators import load_card, load_responses
    from frugalmerge.evaluation import TaskSpec, evaluate
    from frugalmerge.search.config import config_from_dict
    from frugalmerge.search.errors import SearchError
    from frugalmerge.search.fitness import Fitness
    from frugalmerge.search.loop import run_search
    from frugalmerge.search.space import SearchSpace

    build_cards(smoke_zoo, tmp_path / "cards", estimator="pirt", k=4, random_merges=3,
                showcases=["cross_domain"], graded="token_probability")
    folder = tmp_path / "cards" / "math_de"
    scoring = {"graded": True, "graded_measure": "token_probability"}
    est, card = load_card(folder)
    assert card["scoring"] == scoring
    data = load_responses(folder / RESPONSES_FILE)
    assert data.model_ids[0] == "source:math_en" and data.target is not None
    assert ((data.values > 0) & (data.values < 1)).mean() > 0.9  # continuous, not 0/1
    raw = {
        "name": "cd", "seed": 1, "zoo": str(smoke_zoo), "base_model": "base", "models": ["math_en", "lang_de"],
        "method": {"choices": ["task_arithmetic", "ties"]},
        "search": {"weight": {"bounds": [0.0, 1.5]}, "density": {"bounds": [0.3, 1.0]}},
        "objectives": [{"name": "math_de", "benchmark": "math_de", "card": str(folder)}],
        "algorithm": {"name": "ga", "pop_size": 4}, "budget": {"generations": 2},
        "fidelity": {"promote_per_generation": 1, "k": 8},
        "final": {"test": True, "export": "none"},
    }
    cfg = config_from_dict(raw)
    fitness = Fitness.build(cfg, SearchSpace(cfg))
    fitness.calibrate()
    obj = fitness.objectives[0]
    source = ("source:math_en", fitness.calibration_recipes()[0][1])
    model = obj.host.model_for(source[1], "src")
    binary = evaluate(model, obj.host.tokenizer, obj.search_bench)
    graded = evaluate(model, obj.host.tokenizer, obj.estimate_bench)
    assert obj.estimate_bench.task == TaskSpec.model_validate({**obj.search_bench.task.model_dump(), **scoring})
    assert data.target[0] == pytest.approx(np.mean(list(binary.values())))
    assert data.values[0] == pytest.approx([graded[i] for i in data.item_ids])
    # a resumed run restores the scoring from the checkpointed state, without reading the card
    fresh = Fitness.build(cfg, SearchSpace(cfg))
    fresh.restore(fitness.state())
    assert fresh.objectives[0].scoring == scoring
    assert fresh.objectives[0].estimate_bench.task == obj.estimate_bench.task
    result = run_search(cfg, tmp_path / "run", quiet=True)
    assert result["calibration_items"] == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "candidates.jsonl").read_text().splitlines()]
    assert any(r["items"] == 8 for r in log if "promotion" in r)
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    n_test = len(_ids(smoke_zoo / "benchmarks" / "math_de" / "test.jsonl"))
    true = best["test"]["math_de"]["acc"]  # 0/1 accuracy on the test split
    assert round(true * n_test) == pytest.approx(true * n_test)
    refit_card(folder, tmp_path / "refit")
    assert json.loads((tmp_path / "refit" / "card.json").read_text())["scoring"] == scoring
    adaptive = {**raw, "objectives": [{**raw["objectives"][0], "adaptive": True}]}
    cfg = config_from_dict(adaptive)
    with pytest.raises(SearchError, match="0/1 responses"):
        Fitness.build(cfg, SearchSpace(cfg)).calibrate()
    # the same card on a benchmark whose task has no graded score: one error naming card and benchmark
    split = smoke_zoo / "benchmarks" / "math_de"
    generative = {**raw, "benchmarks": {"math_de": {"search": str(split / "search.jsonl"), "test": str(split / "test.jsonl"),
                                                    "task": {"type": "generative_exact"}}}}
    cfg = config_from_dict(generative)
    with pytest.raises(SearchError, match=r"card .*math_de was scored with .* benchmark 'math_de' cannot use"):
        Fitness.build(cfg, SearchSpace(cfg)).calibrate()


def test_estimators_fit_records_the_graded_measure_of_its_responses(zoo, tmp_path):
    """``estimators fit --graded-measure`` writes the card's scoring (as ``zoo cards --graded``
    does); graded responses without a 0/1 target and unknown measures are refused."""
    from typer.testing import CliRunner

    from frugalmerge.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["estimators", "fit", str(GRADED / "math_de" / RESPONSES_FILE), "--k", "10",
                              "--folds", "0", "--graded-measure", "token_probability", "--out", str(tmp_path / "card")])
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "card" / "card.json").read_text())
    assert card["scoring"] == GRADED_SCORING
    assert card["selected_item_ids"] == json.loads((GRADED / "math_de" / "card.json").read_text())["selected_item_ids"]
    res = runner.invoke(app, ["estimators", "fit", str(CARDS / "math_de" / RESPONSES_FILE), "--k", "10",
                              "--folds", "0", "--graded-measure", "token_probability", "--out", str(tmp_path / "no")])
    assert res.exit_code == 1 and "need the 0/1 full score as the target" in res.output
    assert not (tmp_path / "no").exists()
    res = runner.invoke(app, ["estimators", "fit", str(GRADED / "math_de" / RESPONSES_FILE), "--k", "10",
                              "--graded-measure", "logits", "--out", str(tmp_path / "bad")])
    assert res.exit_code == 1 and "--graded-measure 'logits'" in res.output
    # 0/1 responses recorded as graded: a search would then score the card's items graded
    from frugalmerge.estimators import ResponseMatrix

    rng = np.random.default_rng(0)
    ResponseMatrix((rng.random((12, 8)) < 0.5).astype(float), tuple(f"m{i}" for i in range(12)),
                   tuple(f"q{j}" for j in range(8)), target=np.linspace(0.1, 0.9, 12)).to_csv(tmp_path / "r.csv")
    res = runner.invoke(app, ["estimators", "fit", str(tmp_path / "r.csv"), "--target", "target", "--k", "4",
                              "--folds", "0", "--graded-measure", "token_probability", "--out", str(tmp_path / "g")])
    assert res.exit_code == 1 and "--graded-measure given, but every response is 0 or 1" in res.output
    res = runner.invoke(app, ["estimators", "fit", str(tmp_path / "r.csv"), "--target", "target", "--k", "4",
                              "--method", "mpirt", "--endpoints", "m0,m0,m1", "--out", str(tmp_path / "e")])
    assert res.exit_code == 1 and "--endpoints: 'm0' is listed twice" in res.output


def test_card_settings_that_would_be_dropped_fail_before_any_evaluation(smoke_zoo, tmp_path):
    """`--k` above a benchmark's search items made a smaller card recorded as k in cards.json;
    `--pilot-top` without pilot searches was dropped. Both fail at once, before evaluating."""
    from typer.testing import CliRunner

    from frugalmerge.cli import app

    n = len(_ids(smoke_zoo / "benchmarks" / "math_de" / "search.jsonl"))
    with pytest.raises(ZooError, match=f"--k {n + 1} exceeds the {n} search items of benchmark 'math_de'"):
        build_cards(smoke_zoo, tmp_path / "cards", estimator="pirt", k=n + 1, showcases=["cross_domain"])
    res = CliRunner().invoke(app, ["zoo", "cards", "--zoo", str(smoke_zoo), "--out", str(tmp_path / "c2"),
                                   "--pilot-searches", "0", "--pilot-top", "3"])
    assert res.exit_code == 1 and "--pilot-top needs pilot searches" in res.output
    assert not (tmp_path / "cards").exists() and not (tmp_path / "c2").exists()

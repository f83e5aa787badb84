"""Cheap fitness on real benchmarks (smoke zoo): calibration accounting, estimates, test scores, demo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from frugalmerge.search.config import config_from_dict, load_config
from frugalmerge.search.errors import ConfigError, SearchError
from frugalmerge.search.loop import run_search


@pytest.fixture(scope="module")
def smoke_zoo(tmp_path_factory) -> Path:
    from frugalmerge.zoo import build_zoo

    out = tmp_path_factory.mktemp("zoo") / "smoke"
    build_zoo("smoke", out)
    return out


def _raw(zoo: Path, **over):
    raw = {
        "name": "cd", "seed": 1, "zoo": str(zoo), "base_model": "base",
        "models": ["math_en", "lang_de"],
        "method": {"choices": ["task_arithmetic", "ties"]},
        "search": {"weight": {"bounds": [0.0, 1.5], "per": "layers", "groups": 2},
                   "density": {"bounds": [0.3, 1.0]}},
        "objectives": [{"name": "math_de", "benchmark": "math_de", "k": 5, "estimator": "default"}],
        "calibration": {"random_merges": 2, "pool": 20},
        "algorithm": {"name": "ga", "pop_size": 4},
        "budget": {"generations": 2},
        "final": {"max_pareto_test": 2},
    }
    raw.update(over)
    return raw


def _candidates_and_promotions(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """A run's candidate log split into candidate rows and promotion rows."""
    log = [json.loads(line) for line in (run_dir / "candidates.jsonl").read_text().splitlines()]
    return [r for r in log if "recipe" in r], [r for r in log if "promotion" in r]


def _crash_and_resume(raw: dict, run_dir: Path) -> None:
    """Run ``raw`` into ``run_dir``, crash it after its first generation, then resume it; the resume
    must restore the fitted estimators from the checkpoint instead of calibrating again."""
    from frugalmerge.search import loop

    real = loop.SearchRun._generation
    calls = {"n": 0}

    def crashing(self, state):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real(self, state)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop.SearchRun, "_generation", crashing)
        with pytest.raises(KeyboardInterrupt):
            run_search(config_from_dict(raw), run_dir, quiet=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop.Fitness, "calibrate", lambda self: pytest.fail("resume must not calibrate again"))
        run_search(config_from_dict(raw), run_dir, resume=True, quiet=True)


def test_cheap_fitness_run_accounts_items_and_scores_test(smoke_zoo, tmp_path):
    cfg = config_from_dict(_raw(smoke_zoo, final={"max_pareto_test": 2, "promotion": {"top": 2, "k": 10}}))
    result = run_search(cfg, tmp_path / "run", quiet=True)
    # multi-fidelity: the top 2 candidates re-estimated on 10 items each
    assert result["promotion_items"] == 2 * 10
    log = [json.loads(line) for line in (tmp_path / "run" / "candidates.jsonl").read_text().splitlines()]
    # calibration: 2 sources + base + average + 2 random merges on a 20-item pool
    assert result["calibration_items"] == 6 * 20
    # every new candidate costs exactly k = 5 items; the total adds up
    assert all(r["items"] == 5 for r in log)
    assert result["items_evaluated"] == 120 + 5 * len(log)
    search_items = len((smoke_zoo / "benchmarks" / "math_de" / "search.jsonl").read_text().splitlines())
    test_items = len((smoke_zoo / "benchmarks" / "math_de" / "test.jsonl").read_text().splitlines())
    assert result["items_full_fitness"] == len(log) * search_items
    assert result["evolved"]["math_de"]["n"] == test_items
    for cell in [result["evolved"], result["average"], *result["sources"].values()]:
        assert 0.0 <= cell["math_de"]["acc"] <= 1.0
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["promoted"] is not None and 0.0 <= best["promoted"]["math_de"]["value"] <= 1.0
    export = tmp_path / "run" / "export" / "best"
    assert (export / "config.json").is_file() and (export / "mergekit_config.yml").is_file()
    assert yaml.safe_load((export / "mergekit_config.yml").read_text())["merge_method"] == best["recipe"]["merge_method"]


def test_full_fitness_evaluates_every_search_item(smoke_zoo, tmp_path):
    cfg = config_from_dict(_raw(smoke_zoo, fitness="full", budget={"generations": 1},
                                final={"test": False, "export": "none"}))
    result = run_search(cfg, tmp_path / "run", quiet=True)
    assert result["calibration_items"] == 0
    assert result["items_evaluated"] == result["items_full_fitness"]
    log = [json.loads(line) for line in (tmp_path / "run" / "candidates.jsonl").read_text().splitlines()]
    assert all(r["estimate"]["math_de"]["value"] in {i / r["items"] for i in range(r["items"] + 1)} for r in log)


def test_adaptive_testing_objective(smoke_zoo, tmp_path):
    cfg = config_from_dict(_raw(smoke_zoo, objectives=[{"name": "math_de", "benchmark": "math_de", "k": 4,
                                                        "adaptive": True}],
                                budget={"generations": 1}, final={"test": False, "export": "none"}))
    result = run_search(cfg, tmp_path / "run", quiet=True)
    log = [json.loads(line) for line in (tmp_path / "run" / "candidates.jsonl").read_text().splitlines()]
    assert log and all(r["items"] == 4 for r in log)
    assert all(0.0 <= r["estimate"]["math_de"]["value"] <= 1.0 for r in log)
    assert result["items_evaluated"] == result["calibration_items"] + 4 * len(log)


def test_unknown_estimator_and_language_rule_errors(smoke_zoo, tmp_path):
    with pytest.raises(ConfigError, match="unknown estimator 'oracle'"):
        config_from_dict(_raw(smoke_zoo, objectives=[{"name": "m", "benchmark": "math_de", "estimator": "oracle"}]))
    with pytest.raises(ConfigError, match="language"):
        config_from_dict(_raw(smoke_zoo, objectives=[{"name": "m", "benchmark": "math_de", "language_fidelity": True}]))
    with pytest.raises(ConfigError, match="estimator_params: .*unknown parameter 'bogus'"):
        config_from_dict(_raw(smoke_zoo, objectives=[{"name": "m", "benchmark": "math_de",
                                                      "estimator_params": {"bogus": 1}}]))
    broken = tmp_path / "card"
    broken.mkdir()
    (broken / "card.json").write_text('{"hello": 1}')
    with pytest.raises(ConfigError, match="objective 'm': card .*unsupported card format"):
        config_from_dict(_raw(smoke_zoo, objectives=[{"name": "m", "benchmark": "math_de", "card": str(broken)}]))


def test_quick_demo_writes_contract_summary_and_rerunnable_configs(smoke_zoo, tmp_path):
    from frugalmerge.search.demo import run_demo

    out = tmp_path / "demo"
    run_demo(out, zoo_dir=smoke_zoo, quick=True)
    summary = json.loads((out / "summary.json").read_text())
    names = [s["name"] for s in summary["showcases"]]
    assert names == ["cross_domain", "multilingual"]
    for show in summary["showcases"]:
        assert isinstance(show["objectives"], list) and show["objectives"]
        for model, accs in show["sources"].items():
            assert set(accs) == set(show["objectives"])
        assert set(show["average"]) == set(show["objectives"]) == set(show["evolved"])
        assert isinstance(show["items_evaluated"], int) and isinstance(show["items_full_fitness"], int)
        assert all(0.0 <= v <= 1.0 for v in show["evolved"].values())
        cfg = load_config(out / show["name"] / "config.yaml")  # re-runnable with `frugalmerge evolve`
        assert cfg.objective_names == show["objectives"]
        assert (out / show["name"] / "run" / ("pareto.json" if len(show["objectives"]) > 1 else "best.json")).is_file()
    ml = summary["showcases"][1]
    pareto = json.loads((out / "multilingual" / "run" / "pareto.json").read_text())
    assert pareto["knee"] in {p["key"] for p in pareto["points"]}
    assert (out / "multilingual" / "run" / "pareto.png").is_file()
    assert np.isfinite(list(ml["evolved"].values())).all()


def test_demo_out_must_be_new_empty_or_an_earlier_demo(smoke_zoo, tmp_path):
    """Checked before any work; user files are never overwritten."""
    from frugalmerge.search.demo import run_demo
    from frugalmerge.search.errors import SearchError

    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(SearchError, match="holds 'notes.txt', which is not a demo output"):
        run_demo(user, zoo_dir=smoke_zoo, quick=True)
    assert [p.name for p in user.iterdir()] == ["notes.txt"]
    with pytest.raises(SearchError, match="notes.txt is a file, not a directory"):
        run_demo(user / "notes.txt" / "demo", zoo_dir=smoke_zoo, quick=True)


def test_resume_with_real_fitness_matches(smoke_zoo, tmp_path):
    """Crash after generation 1 of a real (engine + estimator) run; the resumed run, which restores
    the fitted estimator from the checkpoint instead of calibrating again, ends identically."""
    raw = _raw(smoke_zoo, final={"max_pareto_test": 1, "export": "none"})
    run_search(config_from_dict(raw), tmp_path / "ref", quiet=True)
    _crash_and_resume(raw, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "best.json").read_text()) == json.loads((tmp_path / "ref" / "best.json").read_text())


def test_estimator_card_objective_needs_no_calibration(smoke_zoo, tmp_path):
    """A card fitted on responses of earlier merges drives the fitness; the run calibrates nothing."""
    from frugalmerge.estimators import ResponseMatrix, make_estimator, save_card

    ids = [json.loads(line)["id"] for line in (smoke_zoo / "benchmarks" / "math_de" / "search.jsonl").read_text().splitlines()]
    rng = np.random.default_rng(0)
    values = (rng.random((12, len(ids))) < np.linspace(0.1, 0.9, 12)[:, None]).astype(float)
    matrix = ResponseMatrix(values, tuple(f"m{i}" for i in range(12)), tuple(ids))
    est = make_estimator("random_mean").fit(matrix, k=6, seed=0)
    save_card(est, matrix, tmp_path / "card")
    raw = _raw(smoke_zoo, objectives=[{"name": "math_de", "benchmark": "math_de", "card": str(tmp_path / "card")}],
               budget={"generations": 1}, final={"test": False, "export": "none"})
    result = run_search(config_from_dict(raw), tmp_path / "run", quiet=True)
    assert result["calibration_items"] == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "candidates.jsonl").read_text().splitlines()]
    assert all(r["items"] == 6 for r in log)
    with pytest.raises(ConfigError, match="no estimator card"):
        config_from_dict(_raw(smoke_zoo, objectives=[{"name": "m", "benchmark": "math_de", "card": str(tmp_path / "nope")}]))
    # Settings the card overrides were ignored without a word; now they must agree with it.
    card = {"name": "m", "benchmark": "math_de", "card": str(tmp_path / "card")}
    for extra, message in (({"estimator": "mpirt"}, "estimator 'mpirt', but card .* holds a fitted 'random_mean'"),
                           ({"k": 9}, "k = 9, but card .* selects 6 items"),
                           ({"subset": "random"}, "`subset` is not used with `card`"),
                           ({"estimator": "full"}, "estimator: full .* excludes `card`")):
        with pytest.raises(ConfigError, match=message):
            config_from_dict(_raw(smoke_zoo, objectives=[{**card, **extra}]))
    config_from_dict(_raw(smoke_zoo, objectives=[{**card, "k": 6, "estimator": "random_mean"}]))  # agreeing: fine


def test_settings_a_mode_ignores_and_k_beyond_the_pool_fail_before_calibration(smoke_zoo, tmp_path):
    from frugalmerge.search.fitness import Fitness
    from frugalmerge.search.space import SearchSpace

    bench = {"name": "m", "benchmark": "math_de"}
    with pytest.raises(ConfigError, match="`estimator` is not used with `adaptive`"):
        config_from_dict(_raw(smoke_zoo, objectives=[{**bench, "adaptive": True, "estimator": "pirt"}]))
    with pytest.raises(ConfigError, match="`k` is not used with `rotating`"):
        config_from_dict(_raw(smoke_zoo, objectives=[{**bench, "rotating": 4, "k": 8}]))
    # k beyond the items the estimator may draw from (calibration.pool 20): capped silently before
    cfg = config_from_dict(_raw(smoke_zoo, objectives=[{**bench, "k": 25}]))
    with pytest.raises(ConfigError, match=r"k = 25 exceeds the 20 items .*\(calibration.pool: 20\)"):
        Fitness.build(cfg, SearchSpace(cfg))
    n = len((smoke_zoo / "benchmarks" / "math_de" / "search.jsonl").read_text().splitlines())
    # rotating items draw from the whole split, whatever calibration.pool (20) says
    cfg = config_from_dict(_raw(smoke_zoo, objectives=[{**bench, "rotating": 25}]))
    Fitness.build(cfg, SearchSpace(cfg))
    cfg = config_from_dict(_raw(smoke_zoo, objectives=[{**bench, "rotating": n + 1}]))
    with pytest.raises(ConfigError, match=f"rotating = {n + 1} exceeds the {n} items it can draw from, the {n} items"):
        Fitness.build(cfg, SearchSpace(cfg))
    # A card of another benchmark's items fails while the run is built, before any calibration.
    from frugalmerge.estimators import ResponseMatrix, make_estimator, save_card

    ids = [f"elsewhere-{i}" for i in range(8)]
    matrix = ResponseMatrix(np.eye(8)[:6] * 0 + np.arange(6)[:, None] % 2, tuple(f"m{i}" for i in range(6)), tuple(ids))
    save_card(make_estimator("random_mean").fit(matrix, k=3, seed=0), matrix, tmp_path / "card")
    cfg = config_from_dict(_raw(smoke_zoo, objectives=[{**bench, "card": str(tmp_path / "card")}]))
    with pytest.raises(SearchError, match="selects item 'elsewhere-.*not in the search split of 'math_de'"):
        Fitness.build(cfg, SearchSpace(cfg))


def test_rotating_items_per_candidate_with_surrogate(smoke_zoo, tmp_path):
    """``rotating: 6``: each candidate scored on its own 6 search items (no calibration), the plain
    mean; promotions extend the same per-candidate draw; the surrogate picks the final merge."""
    from frugalmerge.search.fitness import Fitness
    from frugalmerge.search.space import SearchSpace

    obj = [{"name": "math_de", "benchmark": "math_de", "rotating": 6}]
    raw = _raw(smoke_zoo, objectives=obj, fidelity={"promote_per_generation": 1, "k": 9, "surrogate": "gp"},
               final={"test": False, "export": "none"})
    result = run_search(config_from_dict(raw), tmp_path / "run", quiet=True)
    assert result["calibration_items"] == 0
    cands, promos = _candidates_and_promotions(tmp_path / "run")
    assert all(r["items"] == 6 for r in cands) and all(r["items"] == 9 for r in promos)
    assert len(promos) == 2 and result["items_evaluated"] == 6 * len(cands) + 9 * 2
    for r in cands:
        assert r["estimate"]["math_de"]["value"] in {i / 6 for i in range(7)}
    # the draw: 6 distinct search items per candidate, fixed by (seed, recipe), a prefix of the promotion's
    cfg = config_from_dict(raw)
    fit = Fitness.build(cfg, SearchSpace(cfg))
    fit.calibrate()
    o = fit.objectives[0]
    a, b = cands[0]["key"], cands[1]["key"]
    assert len(set(o._rotation(a, 6))) == 6 and o._rotation(a, 6) == o._rotation(a, 6)
    assert o._rotation(a, 6) != o._rotation(b, 6)
    assert set(o._rotation(a, 6)) <= set(o._rotation(a, 9))
    with pytest.raises(ConfigError, match="rotating items need a benchmark"):
        config_from_dict(_raw(smoke_zoo, objectives=[{**obj[0], "card": "/x"}]))


@pytest.mark.filterwarnings("ignore:Number of distinct clusters")  # the smoke card's k-means, harmless
def test_adaptive_test_on_a_card_calibrates_irt_on_the_cards_training_responses(smoke_zoo, tmp_path):
    """``adaptive: true`` with a card: each candidate takes a sequential test of k items, its 2PL
    IRT calibrated on the card's stored training responses (no calibration items in the run);
    promotions test more items; a card without its responses is one clear error."""
    from frugalmerge.estimators import ResponseMatrix, make_estimator, save_card
    from frugalmerge.estimators.irt import IRTParams
    from frugalmerge.search.errors import SearchError
    from frugalmerge.search.fitness import Fitness
    from frugalmerge.search.space import SearchSpace
    from frugalmerge.zoo.cards import build_cards

    build_cards(smoke_zoo, tmp_path / "cards", estimator="pirt", k=4, random_merges=3, showcases=["cross_domain"],
                pilot_searches=0)
    obj = [{"name": "math_de", "benchmark": "math_de", "k": 5, "adaptive": True,
            "card": str(tmp_path / "cards" / "math_de")}]
    raw = _raw(smoke_zoo, objectives=obj, fidelity={"promote_per_generation": 1, "k": 8},
               final={"test": False, "export": "none"})
    result = run_search(config_from_dict(raw), tmp_path / "run", quiet=True)
    assert result["calibration_items"] == 0
    cands, promos = _candidates_and_promotions(tmp_path / "run")
    assert all(r["items"] == 5 for r in cands) and len(promos) == 2 and all(r["items"] == 8 for r in promos)
    assert all(0.0 <= r["estimate"]["math_de"]["value"] <= 1.0 for r in cands)
    # a crash after generation 1, then resume: the IRT model comes back from the checkpoint
    _crash_and_resume(raw, tmp_path / "crashed")
    assert (json.loads((tmp_path / "crashed" / "best.json").read_text())
            == json.loads((tmp_path / "run" / "best.json").read_text()))
    cfg = config_from_dict(raw)
    fit = Fitness.build(cfg, SearchSpace(cfg))
    fit.calibrate()
    o = fit.objectives[0]
    search_ids = [json.loads(line)["id"] for line in
                  (smoke_zoo / "benchmarks" / "math_de" / "search.jsonl").read_text().splitlines()]
    assert isinstance(o.estimator, IRTParams) and list(o.estimator.item_ids) == search_ids == o.items
    assert o.describe().startswith("math_de: benchmark math_de, sequential adaptive test of 5")
    # a card written without its training responses cannot calibrate the IRT model
    values = (np.random.default_rng(0).random((6, len(search_ids))) < 0.4).astype(float)
    matrix = ResponseMatrix(values, tuple(f"m{i}" for i in range(6)), tuple(search_ids))
    save_card(make_estimator("random_mean").fit(matrix, k=4, seed=0), matrix, tmp_path / "bare")
    bare = config_from_dict(_raw(smoke_zoo, objectives=[{**obj[0], "card": str(tmp_path / "bare")}]))
    with pytest.raises(SearchError, match="needs the card's training responses"):
        Fitness.build(bare, SearchSpace(bare)).calibrate()

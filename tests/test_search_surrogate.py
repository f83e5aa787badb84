"""The surrogate fitness (fidelity.surrogate): smoother accuracy, features, and a run that uses it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from frugalmerge.search.config import config_from_dict
from frugalmerge.search.errors import ConfigError
from frugalmerge.search.loop import run_search
from frugalmerge.search.space import SearchSpace
from frugalmerge.search.store import load_checkpoint
from frugalmerge.search.surrogate import genotype_features, make_surrogate, surrogate_names

TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _tests_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


def _smooth(X: np.ndarray, g: np.ndarray) -> np.ndarray:
    return 0.15 + 0.1 * np.sin(3.0 * X[:, 0]) * np.cos(2.0 * X[:, 1]) + 0.04 * g


def test_gp_recovers_a_smooth_function_from_noisy_samples():
    rng = np.random.default_rng(0)
    X = rng.random((100, 3))
    g = (rng.random(100) < 0.5).astype(int)
    se = np.full(100, 0.04)
    y = _smooth(X, g) + rng.normal(0.0, 0.04, 100)
    model = make_surrogate("gp").fit(X, g, y, se)
    mean, sd = model.predict(X, g)
    own = np.abs(y - _smooth(X, g)).mean()
    pooled = np.abs(mean - _smooth(X, g)).mean()
    assert pooled < 0.6 * own  # pooling neighbours removes well over a third of the noise
    # new points too, and the posterior SD is below the observation noise where data is dense
    Xn = rng.random((50, 3))
    gn = (rng.random(50) < 0.5).astype(int)
    mean_n, sd_n = model.predict(Xn, gn)
    assert np.abs(mean_n - _smooth(Xn, gn)).mean() < own
    assert float(np.median(sd)) < 0.04
    # the ranking: the true best of the sample is among the surrogate's top 5
    assert int(np.argmax(_smooth(X, g))) in set(np.argsort(-mean)[:5].tolist())


def test_gp_hyperparameters_on_a_subsample_still_smooth_every_point():
    """grid_points < n: the grid search sees an even subsample, the posterior every observation."""
    from frugalmerge.search.surrogate import GPSurrogate

    rng = np.random.default_rng(1)
    X = rng.random((120, 3))
    g = np.zeros(120, dtype=int)
    y = _smooth(X, g) + rng.normal(0.0, 0.04, 120)
    sub = GPSurrogate(grid_points=40).fit(X, g, y, np.full(120, 0.04))
    mean, _ = sub.predict(X, g)
    assert np.abs(mean - _smooth(X, g)).mean() < 0.7 * np.abs(y - _smooth(X, g)).mean()
    # fixed at the subsample's choice, the full fit gives the very same posterior
    hp = sub.hyperparameters
    same = GPSurrogate(length_scale=hp["ls"], rho=hp["rho"], noise=hp["noise"]).fit(X, g, y, np.full(120, 0.04))
    assert same.hyperparameters["ls"] == hp["ls"]


def test_gp_far_from_data_returns_the_mean_and_prior_sd():
    X = np.array([[0.0, 0.0], [0.05, 0.0], [0.0, 0.05]])
    y = np.array([0.2, 0.25, 0.3])
    model = make_surrogate("gp", length_scale=0.1, rho=0.0, noise=1.0).fit(X, np.zeros(3), y, np.full(3, 0.02))
    hp = model.hyperparameters
    far_mean, far_sd = model.predict(np.array([[10.0, 10.0]]), np.zeros(1))
    assert far_mean[0] == pytest.approx(hp["mean"])
    assert far_sd[0] == pytest.approx(np.sqrt(hp["sf"]))
    # another method (rho 0) knows nothing from these points either
    other_mean, _ = model.predict(X[:1], np.ones(1))
    assert other_mean[0] == pytest.approx(hp["mean"])
    # a noisier observation pulls the posterior less: equal values, se 0.02 vs 0.2 at the same spot
    two = make_surrogate("gp", length_scale=0.5, rho=0.0, noise=1.0).fit(
        np.array([[0.5], [0.5]]), np.zeros(2), np.array([0.1, 0.3]), np.array([0.02, 0.2]))
    assert two.predict(np.array([[0.5]]), np.zeros(1))[0][0] < 0.2


def test_unknown_surrogate_is_a_config_error():
    assert "gp" in surrogate_names()
    with pytest.raises(ConfigError, match="unknown surrogate 'nope'"):
        make_surrogate("nope")


def _raw(tiny_models, **over):
    raw = {
        "name": "s", "seed": 5,
        "base_model": str(tiny_models["base"]),
        "models": {"model_a": str(tiny_models["model_a"]), "model_b": str(tiny_models["model_b"])},
        "method": {"choices": ["task_arithmetic", "ties"]},
        "search": {"weight": {"bounds": [0.0, 1.0]}, "density": {"bounds": [0.2, 1.0]}},
        "objectives": [{"name": "close", "function": "search_objectives:noisy_closeness"}],
        "algorithm": {"name": "ga", "pop_size": 8},
        "budget": {"generations": 6},
        "fidelity": {"surrogate": "gp"},
        "final": {"export": "none"},
    }
    raw.update(over)
    return raw


def _observations(tiny_models, entries: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The GP's inputs for a run's cached candidates: (features, method groups, estimates, SEs)."""
    Z, groups = genotype_features(SearchSpace(config_from_dict(_raw(tiny_models))),
                                  np.asarray([e["genotype"] for e in entries]))
    y = np.asarray([e["estimate"]["close"]["value"] for e in entries])
    se = np.asarray([e["estimate"]["close"]["se"] for e in entries])
    return Z, groups, y, se


def _log_without_timings(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run_dir / "candidates.jsonl").read_text().splitlines()]


def test_features_make_the_method_categorical_and_mask_unused_genes(tiny_models):
    space = SearchSpace(config_from_dict(_raw(tiny_models)))
    # genes: method, model_a.weight, model_a.density, model_b.weight, model_b.density
    X = np.array([[0.1, 0.2, 0.9, 0.4, 0.1], [0.9, 0.2, 0.9, 0.4, 0.1]])
    Z, groups = genotype_features(space, X)
    assert groups.tolist() == [0, 1]  # task_arithmetic, ties
    assert Z[0].tolist() == [0.2, 0.5, 0.4, 0.5]  # densities unused by task arithmetic
    assert Z[1].tolist() == [0.2, 0.9, 0.4, 0.1]


def test_run_with_surrogate_tells_and_picks_the_posterior_mean(tiny_models, tmp_path):
    summary = run_search(config_from_dict(_raw(tiny_models)), tmp_path / "run", quiet=True)
    log = [json.loads(line) for line in (tmp_path / "run" / "candidates.jsonl").read_text().splitlines()]
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["smoothed"] is not None and len(log) == summary["candidates"]
    # the pick maximises the surrogate over every candidate, not the raw noisy estimate
    cache = load_checkpoint(tmp_path / "run")["cache"]
    top = max(cache.values(), key=lambda e: (e["smoothed"]["close"]["value"], -e["order"]))
    assert best["key"] == top["key"]
    assert best["smoothed"] == top["smoothed"]
    # refitting on the logged candidates reproduces the stored posterior means exactly
    entries = sorted(cache.values(), key=lambda e: e["order"])
    Z, groups, y, se = _observations(tiny_models, entries)
    mean, _ = make_surrogate("gp").fit(Z, groups, y, se).predict(Z, groups)
    assert mean.tolist() == [e["smoothed"]["close"]["value"] for e in entries]
    # and the smoothed values track the noise-free objective better than the raw estimates
    from search_objectives import closeness

    truth = np.asarray([closeness(e["recipe"]) for e in entries])
    assert np.abs(mean - truth).mean() < np.abs(y - truth).mean()


def test_surrogate_without_steering_only_changes_the_pick(tiny_models, tmp_path):
    """surrogate_steer: false - the optimiser sees its own estimates (the very same candidates as
    without a surrogate, promotions included); only the final merge is the surrogate's argmax."""
    fid = {"promote_per_generation": 1}
    plain = run_search(config_from_dict(_raw(tiny_models, fidelity=fid)), tmp_path / "plain", quiet=True)
    pick = run_search(config_from_dict(_raw(tiny_models, fidelity={**fid, "surrogate": "gp", "surrogate_steer": False})),
                      tmp_path / "pick", quiet=True)
    assert _log_without_timings(tmp_path / "plain") == _log_without_timings(tmp_path / "pick")
    assert plain["items_evaluated"] == pick["items_evaluated"]
    best = json.loads((tmp_path / "pick" / "best.json").read_text())
    entries = sorted(load_checkpoint(tmp_path / "pick")["cache"].values(), key=lambda e: e["order"])
    Z, groups, y, se = _observations(tiny_models, entries)
    mean, _ = make_surrogate("gp").fit(Z, groups, y, se).predict(Z, groups)
    top = int(np.argmax(mean))  # argmax: the first of ties, i.e. the earliest candidate
    assert best["key"] == entries[top]["key"]
    assert best["smoothed"]["close"]["value"] == mean[top]


def test_multi_objective_run_with_surrogate_smooths_each_objective(tiny_models, tmp_path):
    """NSGA-II with a steering surrogate: one GP per objective; the Pareto set and the knee are
    taken on the posterior means, which every point of pareto.json carries."""
    from frugalmerge.search.loop import pareto_mask

    objectives = [{"name": "a", "function": "search_objectives:first_weight"},
                  {"name": "b", "function": "search_objectives:second_weight"}]
    raw = _raw(tiny_models, objectives=objectives, algorithm={"name": "nsga2", "pop_size": 8},
               budget={"generations": 3})
    run_search(config_from_dict(raw), tmp_path / "run", quiet=True)
    pareto = json.loads((tmp_path / "run" / "pareto.json").read_text())
    cache = list(load_checkpoint(tmp_path / "run")["cache"].values())
    vals = np.asarray([[e["smoothed"][n]["value"] for n in ("a", "b")] for e in cache])
    front = {e["key"] for e, keep in zip(cache, pareto_mask(vals)) if keep}
    assert {p["key"] for p in pareto["points"]} == front
    assert all(set(p["smoothed"]) == {"a", "b"} for p in pareto["points"])
    assert pareto["knee"] in front


def test_pick_by_lower_confidence_bound_changes_only_the_pick(tiny_models, tmp_path):
    """surrogate_pick_z: the final merge maximises posterior mean - z SD; the search is the same."""
    fid = {"promote_per_generation": 1, "surrogate": "gp", "surrogate_steer": False}
    run_search(config_from_dict(_raw(tiny_models, fidelity=fid)), tmp_path / "mean", quiet=True)
    run_search(config_from_dict(_raw(tiny_models, fidelity={**fid, "surrogate_pick_z": 2.0})), tmp_path / "lcb",
               quiet=True)
    assert _log_without_timings(tmp_path / "mean") == _log_without_timings(tmp_path / "lcb")
    # the checkpoint holds the candidates (a non-steering surrogate is fitted once, at the end)
    entries = sorted(load_checkpoint(tmp_path / "lcb")["cache"].values(), key=lambda e: e["order"])
    Z, groups, y, se = _observations(tiny_models, entries)
    means, sds = make_surrogate("gp").fit(Z, groups, y, se).predict(Z, groups)
    best = json.loads((tmp_path / "lcb" / "best.json").read_text())
    assert best["key"] == entries[int(np.argmax(means - 2.0 * sds))]["key"]
    assert best["smoothed"]["close"]["value"] == pytest.approx(float(means[np.argmax(means - 2.0 * sds)]), abs=1e-12)
    mean_best = json.loads((tmp_path / "mean" / "best.json").read_text())
    assert mean_best["key"] == entries[int(np.argmax(means))]["key"]
    with pytest.raises(ConfigError, match="surrogate_pick_z"):
        config_from_dict(_raw(tiny_models, fidelity={**fid, "surrogate_pick_z": -1.0}))


def test_tiebreak_tells_the_estimate_plus_a_sliver_of_the_posterior_mean(tiny_models, tmp_path):
    """surrogate_tiebreak: the optimiser is told estimate + eps x posterior mean, so coarse
    estimates that tie are ordered by the surrogate; the estimates themselves are untouched."""
    objectives = [{"name": "close", "function": "search_objectives:coarse_closeness"}]
    fid = {"surrogate": "gp", "surrogate_steer": False, "surrogate_tiebreak": 0.001}
    summary = run_search(config_from_dict(_raw(tiny_models, objectives=objectives, fidelity=fid)),
                         tmp_path / "tb", quiet=True)
    plain = run_search(config_from_dict(_raw(tiny_models, objectives=objectives,
                                             fidelity={"surrogate": "gp", "surrogate_steer": False})),
                       tmp_path / "plain", quiet=True)
    entries = list(load_checkpoint(tmp_path / "tb")["cache"].values())
    for e in entries:
        est, sm = e["estimate"]["close"]["value"], e["smoothed"]["close"]["value"]
        assert est == round(est, 1)  # the coarse estimate itself, not smoothed
        assert e["told"]["close"]["value"] == pytest.approx(est + 0.001 * sm, abs=1e-12)
    # ties among the estimates exist, and the tie-break reorders the search (other candidates)
    assert len({e["estimate"]["close"]["value"] for e in entries}) < len(entries)
    assert summary["candidates"] and plain["candidates"]
    keys = lambda p: [json.loads(l)["key"] for l in (p / "candidates.jsonl").read_text().splitlines()]
    assert keys(tmp_path / "tb")[:8] == keys(tmp_path / "plain")[:8]  # generation 1: same random start
    assert keys(tmp_path / "tb") != keys(tmp_path / "plain")
    with pytest.raises(ConfigError, match="surrogate_tiebreak"):
        config_from_dict(_raw(tiny_models, objectives=objectives, fidelity={**fid, "surrogate_tiebreak": -0.1}))
    with pytest.raises(ConfigError, match="surrogate_tiebreak needs surrogate_steer: false"):
        config_from_dict(_raw(tiny_models, objectives=objectives, fidelity={**fid, "surrogate_steer": True}))
    with pytest.raises(ConfigError, match="need fidelity.surrogate"):
        config_from_dict(_raw(tiny_models, objectives=objectives, fidelity={"surrogate_tiebreak": 0.001}))


def test_final_reestimates_join_the_surrogate_and_its_argmax_is_the_pick(tiny_models, tmp_path, monkeypatch):
    """final.promotion.into_surrogate: the top candidates' re-estimates replace their estimates as
    the surrogate's observations; the merge chosen is the refitted posterior mean's argmax."""
    from search_objectives import closeness

    from frugalmerge.search.fitness import FunctionObjective, Score

    # a stand-in for a higher-fidelity re-estimate: the noise-free value with a small SE
    monkeypatch.setattr(FunctionObjective, "promote",
                        lambda self, recipe, key, k: Score(closeness(recipe), 0.001, k))
    fid = {"surrogate": "gp", "surrogate_steer": False}
    final = {"export": "none", "promotion": {"top": 3, "k": 50, "into_surrogate": True}}
    summary = run_search(config_from_dict(_raw(tiny_models, fidelity=fid, final=final)), tmp_path / "run", quiet=True)
    assert summary["promotion_items"] == 3 * 50
    entries = sorted(load_checkpoint(tmp_path / "run")["cache"].values(), key=lambda e: e["order"])
    Z, groups, y, se = _observations(tiny_models, entries)
    mean, _ = make_surrogate("gp").fit(Z, groups, y, se).predict(Z, groups)
    top = sorted(range(len(entries)), key=lambda i: (-mean[i], i))[:3]
    for i in top:
        y[i], se[i] = closeness(entries[i]["recipe"]), 0.001
    refit, _ = make_surrogate("gp").fit(Z, groups, y, se).predict(Z, groups)
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["key"] == entries[int(np.argmax(refit))]["key"]
    assert best["smoothed"]["close"]["value"] == pytest.approx(float(refit.max()), abs=1e-12)
    with pytest.raises(ConfigError, match="into_surrogate needs final.promotion.top"):
        config_from_dict(_raw(tiny_models, fidelity=fid, final={"promotion": {"into_surrogate": True}}))
    with pytest.raises(ConfigError, match="need fidelity.surrogate"):
        config_from_dict(_raw(tiny_models, fidelity={}, final=final))

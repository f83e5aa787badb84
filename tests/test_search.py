"""Search machinery: config validation, genotype -> recipe, algorithms, loop, kill -9 + resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from frugalmerge.search.algorithms import algorithm_names, make_algorithm
from frugalmerge.search.config import config_from_dict
from frugalmerge.search.errors import ConfigError
from frugalmerge.search.final import knee_index
from frugalmerge.search.loop import pareto_mask, run_search
from frugalmerge.search.space import SearchSpace, model_num_layers, recipe_key

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def _cfg(tiny_models, **over):
    raw = {
        "name": "t", "seed": 3,
        "base_model": str(tiny_models["base"]),
        "models": {"model_a": str(tiny_models["model_a"]), "model_b": str(tiny_models["model_b"])},
        "method": "task_arithmetic",
        "search": {"weight": {"bounds": [0.0, 1.0], "per": "layers", "groups": 2}},
        "objectives": [{"name": "close", "function": "search_objectives:closeness"}],
        "algorithm": {"name": "ga", "pop_size": 6},
        "budget": {"generations": 4},
        "final": {"export": "none"},
    }
    raw.update(over)
    return raw


@pytest.fixture(autouse=True)
def _tests_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


# --- genotype -> recipe ------------------------------------------------------------------------

def test_decode_scales_bounds_layers_and_filters(tiny_models):
    cfg = config_from_dict(_cfg(
        tiny_models,
        method={"choices": ["task_arithmetic", "ties"]},
        search={"weight": {"bounds": [0.0, 2.0], "per": "layers", "groups": 3},
                "density": {"bounds": [0.2, 1.0], "per": "filters", "filters": ["self_attn", "mlp"]}},
        global_search={"lambda": {"bounds": [0.5, 1.5]}},
        fixed={"parameters": {"normalize": False}},
    ))
    space = SearchSpace(cfg)
    # method + 2 models x (3 weight + 3 density) + lambda
    assert space.n_var == 1 + 2 * 6 + 1
    assert space.gene_names[:4] == ["method", "model_a.weight[0]", "model_a.weight[1]", "model_a.weight[2]"]
    x = np.zeros(space.n_var)
    x[0] = 0.75                      # second of two methods: ties
    x[1:4] = [0.0, 0.5, 1.0]         # model_a weight gradient -> 0, 1, 2
    x[4:7] = [0.25, 0.5, 1.0]        # model_a density per filter -> 0.4, 0.6, default 1.0
    x[-1] = 0.25                     # lambda -> 0.75
    r = space.decode(x)
    assert r["merge_method"] == "ties"
    assert r["base_model"] == str(tiny_models["base"].resolve())
    a = r["models"][0]["parameters"]
    assert a["weight"] == [0.0, 1.0, 2.0]
    assert a["density"] == [{"filter": "self_attn", "value": 0.4}, {"filter": "mlp", "value": 0.6}, {"value": 1.0}]
    assert r["parameters"] == {"normalize": False, "lambda": 0.75}
    # task_arithmetic does not use density: dropped from the recipe, the gene is ignored
    x[0] = 0.1
    r2 = space.decode(x)
    assert r2["merge_method"] == "task_arithmetic" and "density" not in r2["models"][0]["parameters"]
    # pure + rounding: equal recipes share one cache key
    assert space.decode(x) == r2
    y = x.copy()
    y[1] += 1e-6
    assert recipe_key(space.decode(y)) == recipe_key(r2)


def test_layers_default_to_one_value_per_layer(tiny_models):
    cfg = config_from_dict(_cfg(tiny_models, search={"weight": {"bounds": [0, 1], "per": "layers"}}))
    space = SearchSpace(cfg)
    assert space.n_var == 2 * 4  # the tiny models have 4 layers
    assert len(space.decode(np.full(space.n_var, 0.5))["models"][1]["parameters"]["weight"]) == 4


def test_decoded_recipes_validate_as_merge_recipes(tiny_models):
    merging = pytest.importorskip("frugalmerge.merging")
    if not hasattr(merging, "MergeRecipe"):
        pytest.skip("merging stage not available")
    cfg = config_from_dict(_cfg(tiny_models, method={"choices": ["linear", "ties", "dare_ties"]},
                                search={"weight": {"bounds": [0, 1], "per": "layers", "groups": 2},
                                        "density": {"bounds": [0.1, 1], "per": "filters"}}))
    space = SearchSpace(cfg)
    rng = np.random.default_rng(0)
    for x in space.random(rng, 6):
        recipe = merging.MergeRecipe.model_validate(space.decode(x))
        assert recipe.merge_method in ("linear", "ties", "dare_ties")


# --- bad configs: one clear error before any work ----------------------------------------------

@pytest.mark.parametrize("over, message", [
    ({"models": {"a": "/nonexistent/model_x"}}, "model path '/nonexistent/model_x' does not exist"),
    ({"search": {}}, "empty search space"),
    ({"search": {"weight": {"bounds": [1.0, 0.2]}}}, "bounds must be increasing"),
    ({"algorithm": {"name": "simulated_annealing"}}, "unknown algorithm 'simulated_annealing'"),
    ({"objectives": [{"name": "x", "benchmark": "klingon_math"}]}, "unknown benchmark 'klingon_math'"),
    ({"objectives": [{"name": "a", "function": "search_objectives:first_weight"},
                     {"name": "b", "function": "search_objectives:second_weight"}]}, "single-objective"),
    ({"search": {"density": {"bounds": [0, 1]}}}, "search.density: parameter not used"),
    ({"objectives": [{"name": "f", "function": "search_objectives:nope"}]}, "cannot import function"),
    ({"fidelity": {"surrogate": "kriging"}}, "fidelity.surrogate: unknown surrogate 'kriging'"),
    ({"fidelity": {"surrogate_ucb_z": 1.0}}, "need fidelity.surrogate"),
    # fixed values no method reads were dropped from every recipe without a word
    ({"fixed": {"parameters": {"normalise": False}}}, "fixed.parameters.normalise: parameter not used"),
    ({"fixed": {"parameters": {"weight": 0.5}}}, "it is a per-model parameter: put it under fixed.model_parameters"),
    ({"fixed": {"model_parameters": {"normalize": True}}}, "it is a global parameter: put it under fixed.parameters"),
    ({"global_search": {"lambda": {"bounds": [0.5, 1.5]}}, "fixed": {"parameters": {"lambda": 1.0}}},
     "lambda is both searched and fixed"),
    # a filter matching no tensor (GPT-2 says attn, not self_attn) left its genes without effect
    ({"search": {"weight": {"bounds": [0, 1], "per": "filters", "filters": ["self_attn", "c_attn"]}}},
     "search.weight.filters: 'c_attn' matches no tensor of"),
])
def test_bad_configs_raise_one_clear_error(tiny_models, over, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(_cfg(tiny_models, **over))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_config_with_a_repeated_key_is_refused(tiny_models, tmp_path):
    """PyYAML keeps the last of two equal keys: a second `search:` silently replaced the first."""
    from frugalmerge.search.config import load_config

    text = yaml.safe_dump(_cfg(tiny_models), sort_keys=False) + "search: {weight: {bounds: [0, 2]}}\n"
    (tmp_path / "c.yaml").write_text(text)
    line = text.count("\n")
    with pytest.raises(ConfigError, match=rf"invalid YAML \(line {line}\): duplicate key 'search'"):
        load_config(tmp_path / "c.yaml")


def _cli(args, env_extra=None, **kw):
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{TESTS}", "FRUGALMERGE_THREADS": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "frugalmerge.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_cli_bad_config_fails_before_any_work(tiny_models, tmp_path):
    raw = _cfg(tiny_models, search={"weight": {"bounds": [0.9, 0.1]}})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = _cli(["evolve", str(path), "--out", str(tmp_path / "run")])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert err.strip().count("\n") == 0 and "bounds must be increasing" in err
    assert not (tmp_path / "run").exists()


# --- algorithms -------------------------------------------------------------------------------

def test_registry_has_every_algorithm():
    assert {"ga", "de", "cmaes", "nsga2", "nsga3", "random"} <= set(algorithm_names())


@pytest.mark.parametrize("name, n_obj", [("ga", 1), ("de", 1), ("cmaes", 1), ("random", 1),
                                         ("nsga2", 2), ("nsga3", 3)])
def test_algorithms_ask_tell_in_box_and_improve(name, n_obj):
    target = np.array([0.8, 0.3, 0.6])

    def f(X):
        d = ((X - target) ** 2)
        return np.stack([d.sum(axis=1)] + [d[:, j] for j in range(1, n_obj)], axis=1)[:, :n_obj]

    opt = make_algorithm(name, 3, n_obj, 8, seed=1)
    first = None
    best = np.inf
    for _ in range(12):
        X = opt.ask()
        assert X.ndim == 2 and X.shape[1] == 3 and (X >= 0).all() and (X <= 1).all()
        F = f(X)
        opt.tell(X, F)
        first = F[:, 0].min() if first is None else first
        best = min(best, F[:, 0].min())
    assert best <= first
    if name != "random" and n_obj == 1:
        assert best < 0.02


def test_knee_and_pareto_hand_computed():
    vals = np.array([[1.0, 0.0], [0.6, 0.6], [0.0, 1.0], [0.5, 0.5], [0.6, 0.6]])
    assert pareto_mask(vals).tolist() == [True, True, True, False, True]
    assert knee_index(vals[[0, 1, 2]]) == 1


# --- the loop ----------------------------------------------------------------------------------

def test_loop_writes_run_dir_and_dedups(tiny_models, tmp_path):
    cfg = config_from_dict(_cfg(tiny_models, search={"weight": {"bounds": [0, 1]}}, precision=1))
    summary = run_search(cfg, tmp_path / "run", quiet=True)
    run = tmp_path / "run"
    for name in ("config.yaml", "checkpoint.pkl", "candidates.jsonl", "best.json", "results.json", "report.md",
                 "fitness.png", "estimated_vs_true.png"):
        assert (run / name).is_file(), name
    log = [json.loads(line) for line in (run / "candidates.jsonl").read_text().splitlines()]
    keys = [r["key"] for r in log]
    # precision 1 -> at most 11 x 11 recipes; every logged candidate is distinct (dedup by cache)
    assert len(keys) == len(set(keys)) == summary["candidates"]
    assert all({"recipe", "estimate", "items", "seconds"} <= set(r) for r in log)
    best = json.loads((run / "best.json").read_text())
    assert best["estimate"]["close"]["value"] == max(r["estimate"]["close"]["value"] for r in log)
    assert best["test"]["close"]["acc"] == pytest.approx(best["estimate"]["close"]["value"])
    # the resolved config re-validates, and a second run into the same dir is refused
    assert config_from_dict(yaml.safe_load((run / "config.yaml").read_text())).model_dump() == cfg.model_dump()
    with pytest.raises(Exception, match="already holds a run"):
        run_search(cfg, run, quiet=True)


def test_run_dir_guards_and_resume_before_the_first_checkpoint(tiny_models, tmp_path):
    """A run killed before its first checkpoint resumes by starting over (same result); a resume
    never starts into a foreign folder; a fresh run refuses a non-run folder; broken checkpoints and
    configs give one ResumeError naming the file."""
    import dill

    from frugalmerge.search.errors import ResumeError, SearchError

    cfg = config_from_dict(_cfg(tiny_models, search={"weight": {"bounds": [0, 1]}}, budget={"generations": 2}))
    ref = run_search(cfg, tmp_path / "ref", quiet=True)
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "config.yaml").write_text(cfg.to_yaml())  # what a kill during calibration leaves
    (killed / "candidates.jsonl").write_text("")
    out = run_search(cfg, killed, resume=True, quiet=True)
    assert (out["candidates"], out["items_evaluated"]) == (ref["candidates"], ref["items_evaluated"])
    best, ref_best = (json.loads((d / "best.json").read_text()) for d in (killed, tmp_path / "ref"))
    assert (best["recipe"], best["estimate"]) == (ref_best["recipe"], ref_best["estimate"])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SearchError, match="not a run directory"):
        run_search(cfg, foreign, quiet=True)
    with pytest.raises(ResumeError, match="config.yaml is missing"):
        run_search(cfg, foreign, resume=True, quiet=True)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    (killed / "checkpoint.pkl").write_bytes(dill.dumps([1, 2]))
    with pytest.raises(ResumeError, match="checkpoint.pkl holds a list"):
        run_search(cfg, killed, resume=True, quiet=True)
    (killed / "config.yaml").write_text("seed: [unclosed")
    with pytest.raises(ResumeError, match="config.yaml is unreadable"):
        run_search(cfg, killed, resume=True, quiet=True)


def test_bad_algorithm_options_and_gene_ranges_fail_before_calibration(tiny_models, tmp_path):
    from frugalmerge.search.errors import ConfigError

    for options, match in (({"bogus_opt": 3}, "unknown option 'bogus_opt' for pymoo's GA"),
                           ({"pop_size": 9}, "'pop_size' is set by the config itself")):
        cfg = config_from_dict(_cfg(tiny_models, algorithm={"name": "ga", "pop_size": 4, "options": options}))
        with pytest.raises(ConfigError, match=match):
            run_search(cfg, tmp_path / "run", quiet=True)
        assert not (tmp_path / "run").exists()  # nothing written, nothing calibrated
    cfg = config_from_dict(_cfg(tiny_models, algorithm={"name": "de", "pop_size": 4, "options": {"variant": "x"}}))
    with pytest.raises(ConfigError, match="algorithm 'de': bad option"):
        run_search(cfg, tmp_path / "run", quiet=True)
    with pytest.raises(ConfigError, match=r"search.density: bounds \[0.2, 3.0\] leave ties's valid range \[0.0, 1.0\]"):
        config_from_dict(_cfg(tiny_models, method="ties", search={"weight": {"bounds": [0, 1]},
                                                                   "density": {"bounds": [0.2, 3.0]}}))
    layers = model_num_layers(tiny_models["base"])
    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "config.json").write_text("[4]")
    with pytest.raises(ConfigError, match="listed/config.json: expected a JSON object, got list"):
        model_num_layers(listed)
    with pytest.raises(ConfigError, match=f"weight: groups {layers + 1} exceeds the models' {layers} layers"):
        config_from_dict(_cfg(tiny_models, search={"weight": {"bounds": [0, 1], "per": "layers", "groups": layers + 1}}))
    with pytest.raises(ConfigError, match="benchmarks: expected a mapping"):
        config_from_dict(_cfg(tiny_models, benchmarks=["x"]))
    with pytest.raises(ConfigError, match="weight.bounds.1: Input should be a finite number"):
        config_from_dict(_cfg(tiny_models, search={"weight": {"bounds": [0, float("inf")]}}))


def test_config_mistakes_fail_before_any_work(tiny_models, tmp_path):
    """Each of these used to be silent (a model dropped, NaN results) or a traceback after the
    calibration was paid for."""
    from frugalmerge.search.errors import SearchError

    a, b = tiny_models["model_a"], tiny_models["model_b"]
    twins = tmp_path / "x" / a.name
    twins.parent.mkdir()
    twins.symlink_to(b, target_is_directory=True)
    with pytest.raises(ConfigError, match=f"two entries are named {a.name!r}"):
        config_from_dict(_cfg(tiny_models, models=[str(a), str(twins)]))
    with pytest.raises(ConfigError, match="'x' and 'y' are the same model"):
        config_from_dict(_cfg(tiny_models, models={"x": str(a), "y": str(a)}))
    for seed in (-1, 2**64):
        with pytest.raises(ConfigError, match="seed"):
            config_from_dict(_cfg(tiny_models, seed=seed))
    with pytest.raises(ConfigError, match="decodes to are invalid: parameters.normalize: .*expected a boolean"):
        config_from_dict(_cfg(tiny_models, global_search={"normalize": {"bounds": [0, 1]}}))
    with pytest.raises(ConfigError, match="fidelity.surrogate_ucb_z: Input should be a finite number"):
        config_from_dict(_cfg(tiny_models, fidelity={"surrogate": "gp", "surrogate_ucb_z": float("inf")}))
    with pytest.raises(ConfigError, match="cannot import function ':closeness': ValueError"):
        config_from_dict(_cfg(tiny_models, objectives=[{"name": "f", "function": ":closeness"}]))
    cfg = config_from_dict(_cfg(tiny_models, objectives=[{"name": "f", "function": "search_objectives:not_a_number"}]))
    with pytest.raises(SearchError, match="not_a_number returned nan: the score must be finite"):
        run_search(cfg, tmp_path / "nan", quiet=True)
    # a budget the calibration already used up still runs one generation and reports a best merge
    cfg = config_from_dict(_cfg(tiny_models, budget={"generations": 5, "max_items": 1}))
    assert run_search(cfg, tmp_path / "tight", quiet=True)["generations"] == 1
    assert (tmp_path / "tight" / "best.json").is_file()


def test_item_budget_stops_early(tiny_models, tmp_path):
    cfg = config_from_dict(_cfg(tiny_models, budget={"generations": 50, "max_items": 10}))
    summary = run_search(cfg, tmp_path / "run", quiet=True)
    assert summary["generations"] == 2  # 6 items per generation: stops once >= 10
    assert summary["items_evaluated"] >= 10


def _strip(result: dict) -> dict:
    return json.loads(json.dumps(result))


@pytest.mark.parametrize("algo, objectives, fidelity", [
    ("ga", [{"name": "close", "function": "search_objectives:closeness"}], {}),
    ("nsga2", [{"name": "a", "function": "search_objectives:first_weight"},
               {"name": "b", "function": "search_objectives:second_weight"}], {}),
    # the surrogate is rebuilt from the checkpointed candidates: the same smoothed values and pick
    ("ga", [{"name": "close", "function": "search_objectives:noisy_closeness"}],
     {"surrogate": "gp", "promote_per_generation": 1, "surrogate_ucb_z": 1.0}),
    # told values tie-broken by the surrogate (stored in the checkpointed cache), pick by mean - SD
    ("ga", [{"name": "close", "function": "search_objectives:coarse_closeness"}],
     {"surrogate": "gp", "surrogate_steer": False, "surrogate_tiebreak": 0.001, "surrogate_pick_z": 1.0,
      "promote_per_generation": 1}),
])
def test_kill_9_and_resume_matches_uninterrupted(tiny_models, tmp_path, algo, objectives, fidelity):
    raw = _cfg(tiny_models, algorithm={"name": algo, "pop_size": 6}, objectives=objectives,
               budget={"generations": 5}, fidelity=fidelity)
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    # Uninterrupted reference run (in process: the same code path as the CLI).
    ref_dir = tmp_path / "ref"
    run_search(config_from_dict(raw), ref_dir, quiet=True)

    run_dir = tmp_path / "killed"
    n_ref = len((ref_dir / "candidates.jsonl").read_text().splitlines())
    kill_after = random.Random().randint(7, n_ref - 3)  # candidates logged before the kill: mid-run, random
    proc = _cli(["evolve", str(cfg_path), "--out", str(run_dir), "--quiet"], env_extra={"FM_TEST_SLEEP": "0.03"})
    log = run_dir / "candidates.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= kill_after:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"run ended before the kill: {proc.communicate()[1]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "best.json").exists()

    proc = _cli(["evolve", str(cfg_path), "--out", str(run_dir), "--resume", "--quiet"])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    name = "pareto.json" if len(objectives) > 1 else "best.json"
    for fname in {name, "best.json"}:
        assert _strip(json.loads((run_dir / fname).read_text())) == _strip(json.loads((ref_dir / fname).read_text()))
    # the log was truncated to the checkpoint, then continued: same candidates in the same order
    strip = lambda p: [{k: v for k, v in json.loads(l).items() if k != "seconds"} for l in p.read_text().splitlines()]
    assert strip(run_dir / "candidates.jsonl") == strip(ref_dir / "candidates.jsonl")


def test_resume_refuses_changed_config(tiny_models, tmp_path):
    raw = _cfg(tiny_models, budget={"generations": 1})
    run_search(config_from_dict(raw), tmp_path / "run", quiet=True)
    changed = config_from_dict({**raw, "seed": 99})
    with pytest.raises(Exception, match="config differs"):
        run_search(changed, tmp_path / "run", resume=True, quiet=True)


@pytest.mark.parametrize("algo", ["cmaes"])
def test_crash_mid_run_and_resume_in_process(tiny_models, tmp_path, monkeypatch, algo):
    """The same guarantee for CMA-ES (the cma package; global numpy RNG): a crash at generation 3 of 4."""
    from frugalmerge.search import loop

    raw = _cfg(tiny_models, algorithm={"name": algo, "pop_size": 6})
    run_search(config_from_dict(raw), tmp_path / "ref", quiet=True)
    real = loop.SearchRun._generation
    calls = {"n": 0}

    def crashing(self, state):
        calls["n"] += 1
        if calls["n"] == 3:
            self._evaluate(state, np.full(self.space.n_var, 0.123))  # a partial generation in the log
            raise KeyboardInterrupt
        real(self, state)

    monkeypatch.setattr(loop.SearchRun, "_generation", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_search(config_from_dict(raw), tmp_path / "run", quiet=True)
    monkeypatch.setattr(loop.SearchRun, "_generation", real)
    run_search(config_from_dict(raw), tmp_path / "run", resume=True, quiet=True)
    a = json.loads((tmp_path / "run" / "best.json").read_text())
    b = json.loads((tmp_path / "ref" / "best.json").read_text())
    assert a == b


def test_racing_promotes_only_contenders_of_the_incumbent(tiny_models, tmp_path):
    """fidelity.racing_z = 0 with SE 0 (function objective): a candidate is promoted only when its
    estimate reaches the best value of the earlier generations; at most promote_per_generation."""
    fid = {"promote_per_generation": 3, "racing_z": 0.0}
    cfg = config_from_dict(_cfg(tiny_models, fidelity=fid, budget={"generations": 5}))
    run_search(cfg, tmp_path / "race", quiet=True)
    log = [json.loads(line) for line in (tmp_path / "race" / "candidates.jsonl").read_text().splitlines()]
    cands = {r["key"]: r for r in log if "recipe" in r}
    promos = [r for r in log if "promotion" in r]
    per_gen = {g: [r for r in promos if r["generation"] == g] for g in range(1, 6)}
    assert len(per_gen[1]) == 3  # no incumbent yet: the 3 best new ones
    for g in range(2, 6):
        assert len(per_gen[g]) <= 3
        incumbent = max(c["estimate"]["close"]["value"] for c in cands.values() if c["generation"] < g)
        for r in per_gen[g]:
            assert cands[r["key"]]["estimate"]["close"]["value"] >= incumbent
        # every new candidate that reached the incumbent and was not promoted ranked below 3 that were
        contenders = [c for c in cands.values() if c["generation"] == g
                      and c["estimate"]["close"]["value"] >= incumbent]
        assert len(per_gen[g]) == min(3, len(contenders))
    # without racing every generation promotes 3: racing saved some
    plain = config_from_dict(_cfg(tiny_models, fidelity={"promote_per_generation": 3}, budget={"generations": 5}))
    run_search(plain, tmp_path / "plain", quiet=True)
    plain_log = (tmp_path / "plain" / "candidates.jsonl").read_text().splitlines()
    assert sum("promotion" in line for line in plain_log) > len(promos)

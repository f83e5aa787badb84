"""Estimators: exact values on constructed cases, the default's behaviour, cards, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from frugalmerge.estimators import load_card, make_estimator, save_card
from frugalmerge.estimators.components import fit_hgb, predict_hgb
from frugalmerge.estimators.core import estimator_names
from frugalmerge.estimators.errors import EstimatorError, UnknownNameError
from frugalmerge.estimators.methods import merged_theta
from frugalmerge.estimators.responses import ResponseMatrix
from frugalmerge.estimators.responses import ResponseMatrix


def synthetic(n: int = 120, m: int = 30, seed: int = 0, target: bool = False) -> ResponseMatrix:
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n)
    a = np.exp(rng.normal(0, 0.3, m))
    b = rng.normal(size=m)
    p = 1 / (1 + np.exp(-a * (theta[:, None] - b)))
    y = (rng.random((n, m)) < p).astype(float)
    return ResponseMatrix(y, [f"m{i}" for i in range(n)], [f"q{j}" for j in range(m)],
                          target=p.mean(axis=1) if target else None)


@pytest.fixture(scope="module")
def data() -> ResponseMatrix:
    return synthetic()


def test_registry_has_contract_methods():
    names = estimator_names()
    for required in ("random_mean", "anchor", "irt", "pirt", "gpirt", "mpirt", "gmpirt", "default"):
        assert required in names
    with pytest.raises(UnknownNameError, match="unknown estimator 'nope'"):
        make_estimator("nope")
    with pytest.raises(EstimatorError, match="unknown parameter 'foo'"):
        make_estimator("pirt", foo=1)



@pytest.mark.parametrize("name, params, message", [
    # parameters a method never reads were accepted and ignored
    ("random_mean", {"irt_model": "2pl"}, "unknown parameter 'irt_model'"),
    ("default", {"calibration": "linear"}, "unknown parameter 'calibration'"),
    # values it would ignore or change
    ("pirt", {"calibration": "bogus"}, "calibration must be one of auto, isotonic, linear, none"),
    ("irt", {"irt_model": "3pl"}, "irt_model must be 1pl, 2pl or md2pl"),
    ("irt", {"irt_model": "1pl", "dims": 3}, "irt_model 1pl needs dims 1"),
    ("irt", {"irt_model": "md2pl", "dims": 1}, "irt_model md2pl needs dims >= 2"),
    ("default", {"folds": 1}, "folds must be an integer >= 2"),
    ("default", {"n_neighbors": 0}, "n_neighbors must be an integer >= 1"),
])
def test_parameters_an_estimator_would_ignore_or_change_are_refused(name, params, message):
    with pytest.raises(EstimatorError, match=message):
        make_estimator(name, **params)
    assert make_estimator("irt", irt_model="md2pl", dims=3).params == {"irt_model": "md2pl", "dims": 3}


def test_random_mean_is_the_plain_mean(data):
    est = make_estimator("random_mean", calibration="none").fit(data, k=7, seed=2)
    obs = data.reveal(est.selected_items_)
    np.testing.assert_allclose(est.predict(obs).score, obs.values.mean(axis=1))


def test_anchor_is_the_cluster_weighted_mean(data):
    est = make_estimator("anchor", calibration="none").fit(data, k=5, seed=0)
    obs = data.reveal(est.selected_items_)
    np.testing.assert_allclose(est.predict(obs).score, obs.values @ est.weights_)
    assert est.weights_.sum() == pytest.approx(1.0)


def test_calibration_maps_to_the_target():
    # Target = 0.5 * item mean + 0.2: a linear calibration (n < 50) recovers it exactly with all items.
    base = synthetic(n=40)
    r = ResponseMatrix(base.values, base.model_ids, base.item_ids, target=0.5 * base.values.mean(axis=1) + 0.2)
    est = make_estimator("random_mean").fit(r, k=30)
    assert est.cal_kind_ == "linear"
    np.testing.assert_allclose(est.predict(r.reveal(est.selected_items_)).score, r.target, atol=1e-9)


def test_irt_pirt_gpirt_definitions(data):
    irt = make_estimator("irt", calibration="none").fit(data, k=6)
    obs = data.reveal(irt.selected_items_)
    params = irt.irt_params()
    theta, _ = irt._theta(obs.values)
    np.testing.assert_allclose(irt.predict(obs).score, params.prob(theta).mean(axis=1))
    pirt = make_estimator("pirt", calibration="none").fit(data, k=6)
    p = params.prob(theta)
    cols = np.asarray(pirt.sel_cols_)
    unseen = np.setdiff1d(np.arange(30), cols)
    expected = (obs.values.sum(axis=1) + p[:, unseen].sum(axis=1)) / 30  # λ = k/N
    np.testing.assert_allclose(pirt.predict(obs).score, expected)
    # With every item revealed, p-IRT and gp-IRT are the exact mean.
    for name in ("pirt", "gpirt"):
        est = make_estimator(name, calibration="none").fit(data, k=30)
        np.testing.assert_allclose(est.predict(data).score, data.values.mean(axis=1), atol=1e-12)
    gp = make_estimator("gpirt", calibration="none").fit(data, k=6)
    assert 0.0 <= gp.gp_lambda_ <= 1.0
    obs = data.reveal(gp.selected_items_)
    anchor = obs.values @ gp.weights_
    base = make_estimator("pirt", calibration="none").fit(data, k=6).predict(obs).score
    np.testing.assert_allclose(gp.predict(obs).score, np.clip(gp.gp_lambda_ * anchor + (1 - gp.gp_lambda_) * base, 0, 1))


def test_merged_theta_is_a_convex_combination_of_endpoints(data):
    est = make_estimator("mpirt", calibration="none").fit(data, k=30, endpoints=["m0", "m1"])
    assert est.endpoint_ids_ == ["m0", "m1"]
    params = est.irt_params()
    ends = np.asarray(est.endpoint_theta_)
    # A model whose responses are the expected responses at the midpoint ability recovers w = (.5, .5).
    mid = ends.mean(axis=0, keepdims=True)
    y = params.prob(mid)
    theta, w = merged_theta(params, y, np.arange(30), ends, steps=3000)
    np.testing.assert_allclose(w, [[0.5, 0.5]], atol=2e-2)
    np.testing.assert_allclose(theta, mid, atol=2e-2 * np.ptp(ends))
    with pytest.raises(EstimatorError, match="endpoint 'zz' is not a training model"):
        make_estimator("gmpirt").fit(data, k=5, endpoints=["zz"])


def test_default_beats_subset_mean_and_reports_se():
    both = synthetic(n=400, seed=1, target=True)
    train, test = both.select_models(np.arange(300)), both.select_models(np.arange(300, 400))
    est = make_estimator("default").fit(train, k=10, seed=0)
    assert est.tier_ == "ridge" and len(est.selected_items_) == 10
    out = est.predict(test.reveal(est.selected_items_))
    mae_default = np.abs(out.score - test.target).mean()
    mean = make_estimator("random_mean", calibration="none").fit(train, k=10)
    mae_mean = np.abs(mean.predict(test.reveal(mean.selected_items_)).score - test.target).mean()
    print(f"synthetic k=10: default MAE {100 * mae_default:.2f} pts, raw subset mean {100 * mae_mean:.2f} pts")
    assert mae_default < mae_mean and (out.se > 0).all()
    small = make_estimator("default").fit(train.select_models(np.arange(20)), k=10)
    assert small.tier_ == "small" and np.isfinite(small.predict(test.reveal(small.selected_items_)).score).all()


def test_default_handles_missing_revealed_items(data):
    est = make_estimator("default").fit(data, k=8)
    y = data.take_items(est.selected_items_).copy()
    y[:, 0] = np.nan
    obs = ResponseMatrix(y, data.model_ids, est.selected_items_)
    assert np.isfinite(est.predict(obs).score).all()
    with pytest.raises(EstimatorError, match="lack selected item"):
        est.predict(data.reveal(est.selected_items_[1:]))
    # The search loop's convenience call agrees with predict on a one-row matrix.
    row = dict(zip(est.selected_items_, data.take_items(est.selected_items_)[3]))
    score, se = est.predict_one(row)
    assert score == pytest.approx(float(est.predict(data.select_models([3]).reveal(est.selected_items_)).score[0]))
    assert se > 0


def test_exported_trees_match_sklearn():
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = x[:, 0] ** 2 + x[:, 1]
    trees = fit_hgb(x, y, seed=0, max_iter=30, min_samples_leaf=10)
    ref = HistGradientBoostingRegressor(max_iter=30, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=10,
                                        early_stopping=False, random_state=0).fit(x, y)
    np.testing.assert_allclose(predict_hgb(trees, x), ref.predict(x), atol=1e-10)


@pytest.mark.parametrize("name", ["default", "gmpirt", "anchor"])
def test_card_round_trip(tmp_path, name):
    train = synthetic(n=600, m=25, seed=3, target=True)
    est = make_estimator(name).fit(train, k=8, seed=1)
    save_card(est, train, tmp_path / "card", validation={"mae": 0.01})
    back, card = load_card(tmp_path / "card")
    assert card["selected_item_ids"] == est.selected_items_ and card["training_data"]["sha256"] == train.sha256()
    assert not list((tmp_path / "card").glob("*.pkl"))
    assert (tmp_path / "card").stat().st_mode & 0o055 == 0o055  # shareable, not mkdtemp's private 0700
    obs = train.reveal(est.selected_items_)
    np.testing.assert_allclose(back.predict(obs).score, est.predict(obs).score)
    np.testing.assert_allclose(back.predict(obs).se, est.predict(obs).se)


def test_cli_bench_fit_predict(tmp_path):
    from frugalmerge.cli import app

    r = synthetic(n=60, m=20, seed=4, target=True)
    r.to_csv(tmp_path / "r.csv", target_col="full")
    runner = CliRunner()
    res = runner.invoke(app, ["estimators", "bench", str(tmp_path / "r.csv"), "--target", "full", "--k", "5,all",
                              "--methods", "random_mean,pirt,default", "--folds", "3", "--json", str(tmp_path / "b.json"),
                              "--plot", str(tmp_path / "b.png")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "b.json").read_text())
    assert len(doc["results"]) == 6
    for row in doc["results"]:
        assert set(row) == {"method", "k", "mae", "max_abs_error", "spearman", "n_test"}
        assert row["n_test"] == 60 and row["k"] in (5, 20) and 0 <= row["mae"] <= row["max_abs_error"] <= 1
    # Extras beyond the contract live apart; RMSE sits between MAE and the largest error.
    extra = {(e["method"], e["k"]): e for e in doc["extra"]}
    for row in doc["results"]:
        e = extra[(row["method"], row["k"])]
        assert set(e) == {"method", "k", "rmse", "mean_se", "within_2se", "seconds"}
        assert row["mae"] - 1e-12 <= e["rmse"] <= row["max_abs_error"] + 1e-12
        assert 0 <= e["within_2se"] <= 1 and e["mean_se"] > 0
    assert (tmp_path / "b.png").stat().st_size > 1000
    res = runner.invoke(app, ["estimators", "fit", str(tmp_path / "r.csv"), "--target", "full", "--k", "6",
                              "--folds", "3", "--out", str(tmp_path / "card")])
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "card" / "card.json").read_text())
    assert card["validation"]["mae"] > 0 and len(card["selected_item_ids"]) == 6
    res = runner.invoke(app, ["estimators", "predict", str(tmp_path / "card"), str(tmp_path / "r.csv"),
                              "--json", str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    preds = json.loads((tmp_path / "p.json").read_text())["predictions"]
    assert set(preds) == set(r.model_ids) and all(0 <= v <= 1 for v in preds.values())
    # --target: the column is not an item, and the MAE against it is printed (hand-computed here)
    res = runner.invoke(app, ["estimators", "predict", str(tmp_path / "card"), str(tmp_path / "r.csv"),
                              "--target", "full", "--json", str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "p.json").read_text())
    mae = np.mean([abs(doc["predictions"][m] - t) for m, t in zip(r.model_ids, r.target)])
    assert f"MAE against the target (column 'full'): {100 * mae:.2f} points over 60 models" in res.output
    assert doc["items_used"] == {m: 6 for m in r.model_ids} and "note:" not in res.output
    # a model that answered 2 of the card's 6 items: predicted (imputed), counted and said
    partial = r.values.copy()
    cols = [r.item_ids.index(i) for i in card["selected_item_ids"][:4]]
    partial[0, cols] = np.nan
    type(r)(partial, r.model_ids, r.item_ids, target=r.target).to_csv(tmp_path / "partial.csv", target_col="full")
    res = runner.invoke(app, ["estimators", "predict", str(tmp_path / "card"), str(tmp_path / "partial.csv"),
                              "--target", "full", "--json", str(tmp_path / "p2.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "p2.json").read_text())["items_used"][r.model_ids[0]] == 2
    assert f"note: 1 of 60 models answered fewer than the card's 6 items (e.g. '{r.model_ids[0]}': 2)" in res.output
    res = runner.invoke(app, ["estimators", "bench", str(tmp_path / "missing.csv"), "--k", "5", "--json",
                              str(tmp_path / "x.json")])
    assert res.exit_code == 1 and "no such file" in res.output
    # --methods naming one twice, or nothing, and a k beyond the items: said, not silently changed
    for methods, message in (("pirt,pirt", "--methods: 'pirt' is listed twice"), (",", "--methods: no method named")):
        res = runner.invoke(app, ["estimators", "bench", str(tmp_path / "r.csv"), "--target", "full", "--k", "5",
                                  "--methods", methods, "--json", str(tmp_path / "x.json")])
        assert res.exit_code == 1 and message in res.output, res.output
    res = runner.invoke(app, ["estimators", "bench", str(tmp_path / "r.csv"), "--target", "full", "--k", "50,all",
                              "--methods", "random_mean", "--folds", "3", "--json", str(tmp_path / "x.json")])
    assert res.exit_code == 0 and "note: --k 50 exceeds the 20 items: run as k = 20 (all items)" in res.output
    assert [row["k"] for row in json.loads((tmp_path / "x.json").read_text())["results"]] == [20]


def test_cli_outputs_never_destroy_what_is_not_theirs(tmp_path):
    """A mistyped --out/--json must not wipe user data; errors come before the work, as one line,
    leaving no temporary file; an earlier card is replaced; NaN is written as JSON null."""
    from frugalmerge.cli import app

    r = synthetic(n=40, m=12, seed=4, target=True)
    data = tmp_path / "data"
    data.mkdir()
    r.to_csv(data / "r.csv", target_col="full")
    (data / "notes.txt").write_text("keep me")
    runner = CliRunner()
    fit = ["estimators", "fit", str(data / "r.csv"), "--target", "full", "--k", "4", "--method", "random_mean",
           "--folds", "0", "--out"]
    for out, why in ((data, "non-empty directory without card.json"), (data / "r.csv", "existing file")):
        res = runner.invoke(app, [*fit, str(out)])
        assert res.exit_code == 1 and why in res.output, res.output
    assert sorted(p.name for p in data.iterdir()) == ["notes.txt", "r.csv"]
    assert (data / "notes.txt").read_text() == "keep me"
    card = tmp_path / "card"
    for _ in range(2):  # the second run replaces the first card
        res = runner.invoke(app, [*fit, str(card)])
        assert res.exit_code == 0, res.output
    assert (card / "card.json").stat().st_mode & 0o044 == 0o044 and (card / "params.safetensors").is_file()
    assert (card / "params.safetensors").stat().st_mode & 0o044 == 0o044  # shareable like card.json
    res = runner.invoke(app, ["estimators", "predict", str(card), str(data / "r.csv"), "--json", str(data)])
    assert res.exit_code == 1 and "is an existing directory" in res.output
    res = runner.invoke(app, ["estimators", "bench", str(data / "r.csv"), "--target", "full", "--k", "4",
                              "--methods", "random_mean", "--folds", "2", "--json", str(tmp_path / "b.json"),
                              "--plot", str(data / "r.csv" / "b.png")])
    assert res.exit_code == 1 and "is a file, not a directory" in res.output and not (tmp_path / "b.json").exists()
    assert not [p for p in tmp_path.rglob(".*tmp*")]
    # a constant target has no rank correlation: null in strict JSON, not NaN
    const = ResponseMatrix(values=r.values, model_ids=r.model_ids, item_ids=r.item_ids, target=np.full(40, 0.5))
    const.to_csv(tmp_path / "c.csv", target_col="full")
    res = runner.invoke(app, ["estimators", "bench", str(tmp_path / "c.csv"), "--target", "full", "--k", "4",
                              "--methods", "random_mean", "--folds", "2", "--json", str(tmp_path / "c.json")])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "c.json").read_text()
    assert "NaN" not in text and json.loads(text)["results"][0]["spearman"] is None


def test_bench_on_a_sparse_matrix_gives_every_model_an_estimate():
    """The contract allows empty cells: with 60% of them empty some test models answered none of a
    method's k items (they get the training mean and SD, by hand below) and some training models
    cannot inform a calibration; every method still scores every model."""
    from frugalmerge.estimators.bench import predict_revealed, run_bench

    full = synthetic(n=150, m=30, seed=8, target=True)
    rng = np.random.default_rng(0)
    values = np.where(rng.random(full.values.shape) < 0.6, np.nan, full.values)
    values[np.isnan(values).all(axis=1), 0] = 1.0  # every model answered something
    sparse = ResponseMatrix(values, full.model_ids, full.item_ids, target=full.target)
    rows = run_bench(sparse, [3], folds=3, seed=0, progress=False)
    assert {r["method"] for r in rows} == set(estimator_names())
    for r in rows:
        assert r["n_test"] == 150 and np.isfinite([r["mae"], r["rmse"], r["mean_se"]]).all(), r
    train, test = sparse.select_models(np.arange(100)), sparse.select_models(np.arange(100, 150))
    est = make_estimator("random_mean").fit(train, k=3, seed=0)
    blind = np.isnan(test.take_items(est.selected_items_)).all(axis=1)
    assert blind.any() and not blind.all()
    out = predict_revealed(est, test, 3, prior=(0.4, 0.1))
    np.testing.assert_array_equal(out.score[blind], 0.4)
    np.testing.assert_array_equal(out.se[blind], 0.1)
    seen = test.select_models(np.flatnonzero(~blind)).reveal(est.selected_items_)
    np.testing.assert_array_equal(out.score[~blind], est.predict(seen).score)


def test_fit_cli_endpoints_stay_in_training_during_validation(tmp_path):
    from frugalmerge.cli import app
    from frugalmerge.estimators.bench import cross_validate

    r = synthetic(n=60, m=20, seed=4, target=True)
    r.to_csv(tmp_path / "r.csv", target_col="full")
    ends = ["m0", "m1"]
    cv = cross_validate(r, "mpirt", 6, folds=3, seed=0, context={"endpoints": ends})
    assert cv["n_test"] == 58  # the endpoints are never test models, so every fold can use them
    runner = CliRunner()
    base = ["estimators", "fit", str(tmp_path / "r.csv"), "--target", "full", "--k", "6", "--folds", "3",
            "--endpoints", ",".join(ends), "--out", str(tmp_path / "card")]
    res = runner.invoke(app, [*base, "--method", "mpirt"])
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "card" / "card.json").read_text())
    assert card["validation"]["n_test"] == 58 and card["fitted"]["endpoint_ids_"] == ends
    res = runner.invoke(app, [*base, "--method", "random_mean"])
    assert res.exit_code == 1 and "--endpoints applies to the MERGE³ estimators (mpirt, gmpirt)" in res.output


def test_kernel_ridge_feature_exact_on_two_models():
    from frugalmerge.estimators.default import KRR_ALPHA, KRR_GAMMAS, crossfit_krr, fit_krr, predict_krr

    x = np.array([[0.0, 0.0], [1.0, 1.0]])
    dual, mu = fit_krr(x, np.array([0.0, 1.0]))
    assert dual.shape == (2, len(KRR_GAMMAS)) and mu == 0.5
    off = np.exp(-np.asarray(KRR_GAMMAS))  # the two rows disagree on every item: mean squared difference 1
    c = 0.5 / (1 + KRR_ALPHA - off)  # by symmetry dual = (-c, c) for each width
    np.testing.assert_allclose(dual, np.stack([-c, c]))
    np.testing.assert_allclose(predict_krr(x, x, dual, mu), np.stack([0.5 - c * (1 - off), 0.5 + c * (1 - off)]))
    # Out of fold, each of two models is predicted by the other's target alone.
    np.testing.assert_allclose(crossfit_krr(x, np.array([0.0, 1.0]), folds=2, seed=0), [[1.0] * 3, [0.0] * 3])


def test_default_full_tier_uses_the_kernel_ridge_features():
    train = synthetic(n=600, m=25, seed=5, target=True)
    est = make_estimator("default").fit(train, k=8, seed=0)
    names = est._summary_names()
    assert est.tier_ == "full" and names[-10:-6] == ("krr_1", "krr_3", "krr_10", "lridge")
    assert est.krr_dual_.shape == (600, 3) and est.lridge_ is True
    small = make_estimator("default").fit(train.select_models(np.arange(100)), k=8, seed=0)
    assert small.tier_ == "ridge" and not hasattr(small, "krr_dual_") and not hasattr(small, "lridge_")
    # A card saved before the local ridge existed (no ``lridge_``) keeps its old feature set.
    del est.lridge_
    assert est._summary_names()[-1] == "krr_10"


def test_nearest_features_hand_computed():
    from frugalmerge.estimators.components import crossfit_rows
    from frugalmerge.estimators.default import NN_GAMMAS, NN_SUMMARY, nearest_features

    x = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    t = np.array([0.2, 0.4, 0.7, 0.9])
    f = nearest_features(np.array([[0.0, 0.0, 0.0]]), x, t)
    assert tuple(f) == NN_SUMMARY
    # Two exact copies (distance 0): their mean target, distance 0, log(1 + 2) ties.
    np.testing.assert_allclose([f["nn_score"][0], f["nn_dist"][0], f["nn_ties"][0]], [0.3, 0.0, np.log(3)])
    for g in NN_GAMMAS:  # rows 2 and 3 disagree on 2 and 3 items
        w2, w3 = np.exp(-2 * g), np.exp(-3 * g)
        np.testing.assert_allclose(f[f"nn_w{g:g}"][0], (0.2 + 0.4 + 0.7 * w2 + 0.9 * w3) / (2 + w2 + w3))
    # Out of fold with one row per fold (leave-one-out): row 0's only copy is row 1; row 3's
    # nearest is row 2, one item away.
    loo = crossfit_rows(nearest_features, x, t, folds=4, seed=0)
    np.testing.assert_allclose(loo["nn_score"], [0.4, 0.2, 0.9, 0.7])
    np.testing.assert_allclose(loo["nn_dist"], [0.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(loo["nn_ties"], np.log(2) * np.ones(4))


def test_crossfit_rows_values_ignore_their_own_folds_targets():
    from frugalmerge.estimators.components import crossfit_rows
    from frugalmerge.estimators.default import knn_mean, local_ridge

    rng = np.random.default_rng(1)
    x = (rng.random((40, 4)) < 0.5).astype(float)  # 16 patterns for 40 rows: many exact copies
    t = rng.random(40)
    feature = lambda q, tx, ty: knn_mean(q, tx, ty, 5)  # noqa: E731
    base = crossfit_rows(feature, x, t, folds=5, seed=3)
    order = np.random.default_rng(3).permutation(40)
    fold = np.sort(np.array_split(order, 5)[2])
    t2 = t.copy()
    t2[fold] = rng.random(fold.size)  # new targets inside one fold ...
    moved = crossfit_rows(feature, x, t2, folds=5, seed=3)
    np.testing.assert_array_equal(moved[fold], base[fold])  # ... leave that fold's values as they were
    assert not np.allclose(np.delete(moved, fold), np.delete(base, fold))
    # and each fold's values are the feature computed from the other folds alone
    rest = np.setdiff1d(np.arange(40), fold)
    np.testing.assert_allclose(base[fold], feature(x[fold], x[rest], t[rest]))
    lr = crossfit_rows(local_ridge, x, t, folds=5, seed=3)
    np.testing.assert_allclose(lr[fold], local_ridge(x[fold], x[rest], t[rest]))


def test_default_full_tier_out_of_fold_error_is_honest():
    """With few items, many training models share their responses; the stacker's out-of-fold error
    (and the standard errors built on it) must match the error on new models."""
    both = synthetic(n=1100, m=20, seed=7, target=True)
    train, test = both.select_models(np.arange(800)), both.select_models(np.arange(800, 1100))
    est = make_estimator("default").fit(train, k=6, seed=0)
    assert est.tier_ == "full"
    out = est.predict(test.reveal(est.selected_items_))
    err = np.abs(out.score - test.target)
    assert 0.8 < est.cv_mae_ / err.mean() < 1.25
    assert np.mean(err <= 2 * out.se) > 0.85


def test_default_full_tier_adds_near_duplicate_features(tmp_path):
    from frugalmerge.estimators.default import NN_SUMMARY

    both = synthetic(n=700, m=100, seed=6, target=True)
    train, test = both.select_models(np.arange(600)), both.select_models(np.arange(600, 700))
    est = make_estimator("default").fit(train, k=100, seed=0)
    assert est.tier_ == "full" and est.nn_ is True and est._summary_names()[-len(NN_SUMMARY):] == NN_SUMMARY
    out = est.predict(test.reveal(est.selected_items_))
    assert np.isfinite(out.score).all() and np.mean(np.abs(out.score - test.target)) < 0.05
    loaded, _ = load_card(save_card(est, train, tmp_path / "card"))  # the features survive a card round trip
    assert loaded.nn_ is True
    np.testing.assert_allclose(loaded.predict(test.reveal(est.selected_items_)).score, out.score, rtol=0, atol=1e-12)
    fewer = make_estimator("default").fit(train, k=30, seed=0)  # at any k (cross-fitted, they do not leak)
    assert fewer.tier_ == "full" and fewer.nn_ is True
    small = make_estimator("default").fit(train.select_models(np.arange(200)), k=30, seed=0)
    assert small.tier_ == "ridge" and not hasattr(small, "nn_")
    del est.nn_  # a card saved before they existed keeps its old feature set
    assert est._summary_names()[-1] == "lridge"


def test_local_ridge_hand_computed():
    from frugalmerge.estimators.default import LR_ALPHA, local_ridge

    # One item; prototypes answer 0 (target 0) and 1 (target 1); the query answers 0.
    x, t = np.array([[0.0], [1.0]]), np.array([0.0, 1.0])
    w1 = np.exp(-1.0) / (1 + np.exp(-1.0))  # one disagreement costs log-weight 1
    w0 = 1 - w1
    beta = w0 * w1 / (w0 * w1 + LR_ALPHA)  # weighted covariance / (weighted variance + alpha)
    np.testing.assert_allclose(local_ridge(np.array([[0.0]]), x, t), [w1 - w1 * beta])


def test_column_means_skip_missing_without_warnings():
    import warnings

    from frugalmerge.estimators.components import column_means

    y = np.array([[1.0, np.nan, 0.0], [0.0, np.nan, np.nan], [1.0, np.nan, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an all-missing column must not warn
        got = column_means(y, empty=0.25)
    np.testing.assert_allclose(got, [2 / 3, 0.25, 0.5])


def test_lad_fit_ignores_an_outlier_and_robust_inliers_flag_it():
    from frugalmerge.estimators.components import fit_lad, fit_ridge, robust_inliers

    x = np.arange(7, dtype=float)[:, None]
    y = 2.0 * x[:, 0] + 1.0
    y[5] = 100.0  # one broken run
    coef, b = fit_lad(x, y)
    np.testing.assert_allclose([coef[0], b], [2.0, 1.0], atol=1e-3)  # the median line through the other six
    assert abs(fit_ridge(x, y)[0][0] - 2.0) > 1.0  # a squared-error fit is dragged by it
    # residuals 0, 1, -1, 2, -2, 0.5, 60: median 0.5, MAD 1.5, robust SD 2.22; 5 SDs keep all but 60
    mask = robust_inliers(np.array([0.0, 1.0, -1.0, 2.0, -2.0, 0.5, 60.0]), 5.0)
    assert mask.tolist() == [True] * 6 + [False]
    assert robust_inliers(np.zeros(4), 5.0).all()  # no spread: nothing is an outlier


def test_default_full_tier_trims_broken_training_models():
    both = synthetic(n=800, m=25, seed=5, target=True)  # same items for the training and test models
    train, test = both.select_models(np.arange(600)), both.select_models(np.arange(600, 800))
    target = train.target.copy()
    broken = np.argsort(target)[[0, 50, 100]]  # three weak models ...
    target[broken] = 1.0  # ... with perfect scores: runs whose scores contradict their responses
    bad = ResponseMatrix(train.values, train.model_ids, train.item_ids, target=target)
    est = make_estimator("default").fit(bad, k=8, seed=0)
    assert est.n_trimmed_ == len(broken)  # exactly these three (checked by hand: residuals 0.58-0.79, 5 robust SDs 0.47)
    clean = make_estimator("default").fit(train, k=8, seed=0)
    err = lambda e: np.mean(np.abs(e.predict(test.reveal(e.selected_items_)).score - test.target))  # noqa: E731
    assert err(est) < err(clean) * 1.05  # three wild scores barely move the trimmed fit


def test_bench_metrics_hand_computed(monkeypatch):
    """Every number of a bench row from a stand-in estimator whose predictions are known."""
    import frugalmerge.estimators.bench as bench
    from frugalmerge.estimators.core import Estimates

    target = np.array([0.1, 0.2, 0.4, 0.5, 0.65, 0.95])
    r = ResponseMatrix(np.zeros((6, 3)), [f"m{i}" for i in range(6)], ["a", "b", "c"], target=target)

    class Constant:  # predicts 0.5 with SE 0.1 for everyone, whatever it is shown
        sequential = False
        selected_items_ = ("a",)

        def fit(self, train, k, seed):
            return self

        def predict(self, obs):
            n = len(obs.model_ids)
            return Estimates(tuple(obs.model_ids), np.full(n, 0.5), np.full(n, 0.1))

    monkeypatch.setattr(bench, "make_estimator", lambda name, **kw: Constant())
    (row,) = bench.run_bench(r, [1], ["random_mean"], folds=3, seed=0, progress=False)
    err = np.array([0.4, 0.3, 0.1, 0.0, 0.15, 0.45])
    assert row["mae"] == pytest.approx(err.mean()) and row["max_abs_error"] == pytest.approx(0.45)
    assert row["rmse"] == pytest.approx(np.sqrt((err**2).mean()))
    assert row["mean_se"] == pytest.approx(0.1)
    assert row["within_2se"] == pytest.approx(3 / 6)  # |err| <= 2 SE = 0.2: 0.1, 0.0 and 0.15
    assert np.isnan(row["spearman"]) and row["n_test"] == 6

"""The ``adaptive`` estimator: per-model items, the oracle protocol, exact cases, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest

from frugalmerge.estimators import load_card, make_estimator, save_card
from frugalmerge.estimators.adaptive import AdaptiveBatch, ResponseOracle
from frugalmerge.estimators.bench import run_bench
from frugalmerge.estimators.errors import EstimatorError
from frugalmerge.estimators.responses import ResponseMatrix
from test_estimators import synthetic as synthetic_2pl


def synthetic(n: int = 150, m: int = 30, seed: int = 0) -> ResponseMatrix:
    """test_estimators' synthetic 2PL responses, with the true expected score as target."""
    return synthetic_2pl(n=n, m=m, seed=seed, target=True)


@pytest.fixture(scope="module")
def data() -> ResponseMatrix:
    return synthetic()


def test_exact_copies_get_their_copys_score(data):
    # Distinct training rows, every item asked and a very sharp kernel: the copy is the only
    # prototype left, so the local ridge returns its target exactly.
    rows = np.unique(data.values, axis=0, return_index=True)[1][:40]
    train = data.select_models(np.sort(rows))
    est = make_estimator("adaptive", gamma=50.0).fit(train, k=train.n_items, seed=0)
    out = est.predict(train.reveal(train.item_ids))
    np.testing.assert_allclose(out.score, train.target, atol=1e-12)


def test_two_prototypes_by_hand():
    # One item, model A answered 1 (score 0.8), B answered 0 (score 0.2); a test model answering 1
    # weighs A by 1 and B by exp(-gamma): posterior mean (0.8 + 0.2 e^-1) / (1 + e^-1); the local
    # ridge through the two points (tiny alpha) returns A's score.
    train = ResponseMatrix(np.array([[1.0], [0.0]]), ["A", "B"], ["q"], target=np.array([0.8, 0.2]))
    est = make_estimator("adaptive", gamma=1.0, alpha=1e-9).fit(train, k=1)
    batch = AdaptiveBatch(est, np.ones((1, 1), bool))
    batch.record(batch.next_items(), np.array([1.0]))
    score, sd, mean = batch.estimate()
    e = np.exp(-1.0)
    assert mean[0] == pytest.approx((0.8 + 0.2 * e) / (1 + e), abs=1e-12)
    w = np.array([1.0, e]) / (1 + e)
    assert sd[0] == pytest.approx(np.sqrt(w @ np.array([0.64, 0.04]) - mean[0] ** 2), abs=1e-12)
    assert score[0] == pytest.approx(0.8, abs=1e-6)


def test_next_item_minimises_expected_posterior_variance():
    # Item q0 splits the scores (0.9, 0.8 | 0.2, 0.1); item q1 does not (0.9, 0.2 | 0.8, 0.1):
    # the first question must be q0.
    x = np.array([[1, 1], [1, 0], [0, 1], [0, 0]], dtype=float)
    train = ResponseMatrix(x, list("abcd"), ["q0", "q1"], target=np.array([0.9, 0.8, 0.2, 0.1]))
    est = make_estimator("adaptive").fit(train, k=1)
    assert est.session().next_item() == "q0"


def test_k_responses_revealed_exactly_and_items_differ_per_model(data):
    train, test = data.select_models(np.arange(100)), data.select_models(np.arange(100, 150))
    est = make_estimator("adaptive").fit(train, k=6, seed=0)
    oracle = ResponseOracle(test.reveal(test.item_ids))
    out = est.predict_sequential(oracle)
    oracle.check(6)
    assert (oracle.counts == 6).all()
    patterns = {tuple(np.flatnonzero(r)) for r in oracle.revealed}
    assert len(patterns) > 1  # adaptive: not one fixed form
    assert np.all((out.score >= 0) & (out.score <= 1)) and np.all(out.se > 0)
    # A model missing some items is asked only what it has (and never more than k).
    vals = test.values.copy()
    vals[0, :27] = np.nan
    holey = ResponseMatrix(vals, test.model_ids, test.item_ids)
    oracle = ResponseOracle(holey)
    est.predict_sequential(oracle)
    oracle.check(6)
    assert oracle.counts[0] == 3 and not oracle.revealed[0, :27].any()


def test_deterministic_and_session_matches_batch(data):
    train, test = data.select_models(np.arange(100)), data.select_models(np.arange(100, 110))
    a = make_estimator("adaptive").fit(train, k=8, seed=3)
    b = make_estimator("adaptive").fit(train, k=8, seed=3)
    pa, pb = a.predict(test.reveal(test.item_ids)), b.predict(test.reveal(test.item_ids))
    np.testing.assert_array_equal(pa.score, pb.score)
    np.testing.assert_array_equal(pa.se, pb.se)
    for i in range(3):
        session = a.session()
        while not session.done:
            item = session.next_item()
            session.record(item, float(test.values[i, test._col[item]]))
        score, se = session.estimate()
        assert score == pytest.approx(pa.score[i], abs=1e-12) and se == pytest.approx(pa.se[i], abs=1e-12)
        assert len(session.asked) == 8


def test_bench_and_card_round_trip(data, tmp_path):
    rows = run_bench(data, [5, 10], ["adaptive", "random_mean"], folds=3, seed=0, progress=False)
    by = {(r["method"], r["k"]): r for r in rows}
    assert by[("adaptive", 10)]["n_test"] == data.n_models
    assert by[("adaptive", 10)]["mae"] < by[("random_mean", 10)]["mae"]
    est = make_estimator("adaptive").fit(data, k=7, seed=0)
    save_card(est, data, tmp_path / "card")
    back, card = load_card(tmp_path / "card")
    assert card["k"] == 7
    obs = data.select_models(np.arange(10)).reveal(data.item_ids)
    np.testing.assert_allclose(back.predict(obs).score, est.predict(obs).score)


def test_kernel_weight_per_item_shrinks_beyond_k30():
    wide = synthetic(n=40, m=60, seed=2)
    assert make_estimator("adaptive").fit(wide, k=30).gamma_ == 1.0
    assert make_estimator("adaptive").fit(wide, k=60).gamma_ == pytest.approx(0.5)
    assert make_estimator("adaptive", gamma=2.0).fit(wide, k=10).gamma_ == 2.0


def test_bad_inputs(data):
    with pytest.raises(EstimatorError, match="gamma and alpha must be > 0"):
        make_estimator("adaptive", gamma=0.0).fit(data, k=5)
    with pytest.raises(EstimatorError, match="not fitted"):
        make_estimator("adaptive").session()
    est = make_estimator("adaptive").fit(data, k=2)
    other = ResponseMatrix(np.ones((2, 1)), ["x", "y"], ["unknown"])
    with pytest.raises(EstimatorError, match="share no item"):
        est.predict(other)
    oracle = ResponseOracle(data.reveal(data.item_ids))
    oracle.ask(np.zeros(data.n_models, np.int64))
    with pytest.raises(EstimatorError, match="item 'q0' of model 'm0' was already revealed"):
        oracle.ask(np.zeros(data.n_models, np.int64))
    with pytest.raises(EstimatorError, match="model 'm0' revealed 1 responses, expected 2"):
        oracle.check(2)
    session = est.session()
    with pytest.raises(EstimatorError, match="unknown item 'zz'"):
        session.record("zz", 1.0)
    with pytest.raises(EstimatorError, match="outside"):
        session.record("q1", 2.0)
    session.record("q1", 1.0)
    with pytest.raises(EstimatorError, match="already recorded"):
        session.record("q1", 1.0)
    session.record("q2", 0.0)
    with pytest.raises(EstimatorError, match="all 2 items have been asked"):
        session.next_item()
    with pytest.raises(EstimatorError, match="already 2 items recorded"):
        session.record("q3", 0.0)

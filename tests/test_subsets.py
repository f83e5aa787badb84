"""Subset strategies: determinism, hashes, invariants; the adaptive session."""

from __future__ import annotations

import numpy as np
import pytest

from frugalmerge.estimators.errors import EstimatorError, UnknownNameError
from frugalmerge.estimators.irt import fit_irt
from frugalmerge.estimators.responses import ResponseMatrix
from frugalmerge.subsets import SUBSETS, AdaptiveSession, Subset, select_subset
from frugalmerge.subsets.core import subset_hash


@pytest.fixture(scope="module")
def responses() -> ResponseMatrix:
    rng = np.random.default_rng(0)
    n, m = 150, 40
    theta = rng.normal(size=n)
    b = rng.normal(size=m)
    y = (rng.random((n, m)) < 1 / (1 + np.exp(-(theta[:, None] - b)))).astype(float)
    groups = [f"g{j % 4}" for j in range(m)]
    return ResponseMatrix(y, [f"m{i}" for i in range(n)], [f"q{j}" for j in range(m)], item_groups=groups)


@pytest.mark.parametrize("name", sorted(["random", "stratified", "anchor_points", "irt_clustering", "fisher",
                                         "predictive", "adaptive"]))
def test_every_strategy_is_seeded_and_valid(responses, name):
    assert name in SUBSETS or select_subset(name, responses, 3, 0)
    a = select_subset(name, responses, 8, seed=3)
    b = select_subset(name, responses, 8, seed=3)
    assert a == b and a.hash == b.hash == subset_hash(a.item_ids)
    assert len(a.item_ids) == 8 == len(set(a.item_ids)) and set(a.item_ids) <= set(responses.item_ids)
    if a.weights is not None:
        assert sum(a.weights) == pytest.approx(1.0) and min(a.weights) > 0
    assert a.data_sha256 == responses.sha256()


def test_random_depends_on_seed_and_k_all(responses):
    assert select_subset("random", responses, 8, 0).item_ids != select_subset("random", responses, 8, 1).item_ids
    full = select_subset("fisher", responses, 1000, 0)
    assert full.item_ids == responses.item_ids and full.k == 40


def test_stratified_is_proportional_to_groups(responses):
    s = select_subset("stratified", responses, 8, 0)
    groups = [responses.item_groups[responses.item_ids.index(i)] for i in s.item_ids]
    assert sorted(groups) == ["g0", "g0", "g1", "g1", "g2", "g2", "g3", "g3"]
    assert s.weights == pytest.approx((1 / 8,) * 8)
    for bins in (0, 1):  # one stratum is plain random sampling, silently
        with pytest.raises(EstimatorError, match="bins must be an integer >= 2"):
            select_subset("stratified", responses, 8, 0, bins=bins)


def test_subset_save_load_and_tamper(tmp_path, responses):
    s = select_subset("anchor_points", responses, 5, 1)
    s.save(tmp_path / "s.json")
    assert Subset.load(tmp_path / "s.json") == s
    text = (tmp_path / "s.json").read_text().replace(s.item_ids[0], "q999")
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(EstimatorError, match="hash"):
        Subset.load(tmp_path / "bad.json")


def test_unknown_strategy_and_bad_k(responses):
    with pytest.raises(UnknownNameError, match="unknown subset strategy 'nope'"):
        select_subset("nope", responses, 3)
    with pytest.raises(EstimatorError, match="k must be >= 1"):
        select_subset("random", responses, 0)


def test_adaptive_session_picks_most_informative_item(responses):
    params = fit_irt(responses.values, responses.item_ids)
    session = AdaptiveSession(params)
    first = session.next_item()
    info0 = params.a[:, 0] ** 2 * params.prob(np.zeros((1, 1)))[0] * (1 - params.prob(np.zeros((1, 1)))[0])
    assert first == params.item_ids[int(np.argmax(info0))]
    session.record(first, 1.0)
    assert session.theta[0, 0] > 0  # a correct answer raises the ability
    assert session.next_item() != first
    with pytest.raises(EstimatorError, match="already recorded"):
        session.record(first, 0.0)


def test_predictive_exchange_undoes_a_greedy_trap():
    # y = x1 + x2; x3 = (x1 + x2) / 2 + noise correlates best with y, so greedy takes x3 first and
    # then one of x1/x2 (an inexact fit); swapping x3 for the other one fits y exactly.
    rng = np.random.default_rng(0)
    n = 300
    x1, x2 = rng.random(n), rng.random(n)
    x3 = np.clip((x1 + x2) / 2 + rng.normal(0, 0.05, n), 0, 1)
    noise = rng.random((n, 5))
    values = np.column_stack([x1, x2, x3, noise])
    r = ResponseMatrix(values, [f"m{i}" for i in range(n)], ["x1", "x2", "x3"] + [f"z{j}" for j in range(5)],
                       target=(x1 + x2) / 2)
    greedy = select_subset("predictive", r, 2, seed=0)
    swapped = select_subset("predictive", r, 2, seed=0, exchange=True)
    assert greedy.item_ids[0] == "x3"
    assert sorted(swapped.item_ids) == ["x1", "x2"]
    assert select_subset("predictive", r, 2, seed=0, exchange=True).hash == swapped.hash  # deterministic

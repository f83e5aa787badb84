"""Fused numba kernels: same results as the torch reference path, exact magnitude thresholds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frugalmerge.merging import kernels
from frugalmerge.merging import methods as M
from frugalmerge.merging.methods import Operand, TensorArgs, get_method

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba not installed")


def _run(method: str, base: torch.Tensor, inputs: list[torch.Tensor], per, shared, fused: bool, monkeypatch,
         stacked: bool):
    """One method call through the fused kernels or (``fused=False``) the torch reference path."""
    m = get_method(method)
    shared = {p.name: p.default for p in m.shared_params} | shared
    out = torch.empty(base.numel())
    stack = torch.stack([x - base for x in inputs])
    if stacked:  # the engine's / CLI's layout: rows of one cache
        ops = [Operand(base, stack[i], stack=stack, row=i) for i in range(len(inputs))]
    else:
        ops = [Operand(base, x - base) for x in inputs]
    with monkeypatch.context() as mp:
        if not fused:
            mp.setattr(M, "_fusable", lambda *t: False)
        m.fn(TensorArgs("t", out, Operand(base) if m.base == "required" else None,
                        ops if m.base == "required" else [Operand(base)] + ops, shared, per, 5, {}))
    return out


def _data(k: int, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, generator=g)
    inputs = []
    for i in range(k):
        d = torch.randn(n, generator=g) * 0.1
        d[: n // 4] = torch.round(d[: n // 4] * 20) / 20  # many repeated magnitudes (ties at thresholds)
        d[n // 4: n // 4 + 50] = 0.0
        inputs.append(base + d)
    return base, inputs


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "breadcrumbs_ties", "breadcrumbs", "dare_ties",
                                    "dare_linear"])
def test_fused_equals_torch_reference(monkeypatch, k, method):
    n = 3 * kernels.BLOCK + 77 if k % 2 else kernels.SMALL + 1000  # both threshold paths (small / histogram)
    base, inputs = _data(k, n, seed=k)
    rng = np.random.default_rng(k)
    for density in (0.0, 0.35, 1.0):
        for normalize in (True, False):
            per = [{"weight": float(rng.uniform(-0.5, 1.0)), "density": density, "gamma": 0.05} for _ in range(k)]
            shared = {"normalize": normalize, "lambda": 1.3}
            ref = _run(method, base, inputs, per, shared, False, monkeypatch, True)
            for stacked in (True, False):
                got = _run(method, base, inputs, per, shared, True, monkeypatch, stacked)
                # float32 rounding only: a different kept element would differ by ~0.1
                assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6), (method, k, density, normalize)


def test_linear_fused_equals_torch(monkeypatch):
    base, inputs = _data(3, 5000, seed=9)
    per = [{"weight": 0.7}, {"weight": -0.2}, {"weight": 0.4}]
    for normalize in (True, False):
        ref = _run("linear", base, inputs, [{"weight": 0.1}] + per, {"normalize": normalize}, False, monkeypatch, True)
        got = _run("linear", base, inputs, [{"weight": 0.1}] + per, {"normalize": normalize}, True, monkeypatch, True)
        assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [1000, kernels.SMALL + 3])
def test_rank_value_is_exact_order_statistic(n):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=g)
    x[: n // 3] = torch.round(x[: n // 3] * 4) / 4  # repeated magnitudes, zeros, +-0
    x[5] = -0.0
    ab = np.sort(np.abs(x.numpy()))
    hist = kernels.abs_histogram(x.numpy())
    assert (hist is None) == (n < kernels.SMALL)
    if hist is not None:  # cumulative counts per bin, the lumped smallest ~1% below the first bin
        assert int(hist.cum[-1]) == n and bool(np.all(np.diff(hist.cum) >= 0)) and hist.below <= n // 100
        assert hist.cum.shape[0] <= kernels.HIST_BINS and 12 <= hist.shift <= 16
    for r in (0, 1, n // 200, n // 3, n // 2, n - 2, n - 1):  # n // 200: in the lumped range
        assert kernels.rank_value(x.numpy(), r, hist) == ab[r]
    with pytest.raises(IndexError):
        kernels.rank_value(x.numpy(), n)


def test_ties_threshold_keeps_ties_together():
    # |delta| = 1,1,2,2,2,3 with density 0.5 -> k = 3 largest; threshold 2 keeps all three 2's
    base = torch.zeros(6)
    d = torch.tensor([1.0, -1.0, 2.0, -2.0, 2.0, 3.0])
    op = Operand(base, d)
    assert M.magnitude_bounds(op, 0.5, 0.0, False) == (2.0, float("inf"))


def _ties_inputs(k: int, n: int, seed: int):
    g = np.random.default_rng(seed)
    ref = g.standard_normal(n).astype(np.float32)
    deltas = []
    for i in range(k):
        d = (g.standard_normal(n) * 0.01).astype(np.float32)
        if i % 2 == 0:  # heavily repeated magnitudes: boundary bins with many equal values
            d = (np.round(d * 400) / 400).astype(np.float32)
        d[:50] = 0.0
        deltas.append(d)
    return ref, deltas


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_threshold_selected_in_pass_is_bit_identical(k):
    """Thresholds selected inside the merging pass == exact thresholds given up front, bit for bit."""
    n = kernels.SMALL + 2 * kernels.SELECT_CHUNK + 5  # a partial last chunk
    ref, deltas = _ties_inputs(k, n, seed=10 + k)
    rng = np.random.default_rng(k)
    hists = [kernels.abs_histogram(d) for d in deltas]
    for dens in ([0.35] * k, [0.0, 1.0, 0.7, 0.01][:k], [0.999999] * k, [1 / n] * k):
        ranks = [M._magnitude_rank(n, x) for x in dens]
        exact = [0.0 if r is None else (np.inf if r < 0 else kernels.rank_value(d, r, h))
                 for d, r, h in zip(deltas, ranks, hists)]
        select = [(h, r) if r is not None and r >= 0 else None for h, r in zip(hists, ranks)]
        for consensus in (True, False):
            for normalize in (True, False):
                coefs = list(rng.uniform(-0.5, 1.0, k))
                weights = list(rng.uniform(-0.5, 1.0, k))
                args = ([float(c) for c in coefs], [float(w) for w in weights])
                want = np.empty(n, np.float32)
                kernels.gta(want, ref, deltas, *args, exact, [np.inf] * k, consensus, normalize, 0.7, 1.3)
                got = np.full(n, np.nan, np.float32)
                lo = [0.0 if sel is not None else e for sel, e in zip(select, exact)]
                used = kernels.gta(got, ref, deltas, *args, lo, [np.inf] * k, consensus, normalize, 0.7, 1.3,
                                   select=select)
                assert [np.float32(u) for u in used] == [np.float32(e) for e in exact]
                assert np.array_equal(got, want), (dens, consensus, normalize)


def test_boundary_elements_at_chunk_edges():
    """Elements in the boundary bin at the first/last position of a chunk and of the tensor."""
    n = kernels.SMALL + 3
    ref, deltas = _ties_inputs(3, n, seed=3)
    rank = M._magnitude_rank(n, 0.5)
    v = kernels.rank_value(deltas[0], rank, kernels.abs_histogram(deltas[0]))
    edges = [0, kernels.SELECT_CHUNK - 1, kernels.SELECT_CHUNK, 2 * kernels.SELECT_CHUNK - 1, n - 1]
    for j in edges:
        deltas[0][j] = -v if j % 2 else v
    hists = [kernels.abs_histogram(d) for d in deltas]
    exact = [kernels.rank_value(d, rank, h) for d, h in zip(deltas, hists)]
    key = np.float32(exact[0]).view(np.uint32) >> hists[0].shift
    assert all((np.abs(deltas[0][j]).view(np.uint32) >> hists[0].shift) == key for j in edges)
    want, got = np.empty(n, np.float32), np.empty(n, np.float32)
    args = ([0.5, -0.3, 0.9], [0.5, 0.3, 0.9])
    kernels.gta(want, ref, deltas, *args, exact, [np.inf] * 3, True, True, 1.0, 1.0)
    kernels.gta(got, ref, deltas, *args, [0.0] * 3, [np.inf] * 3, True, True, 1.0, 1.0,
                select=[(h, rank) for h in hists])
    assert np.array_equal(got, want)
    # and the kept/dropped decision at the edges follows the exact threshold
    assert np.array_equal(got[edges] != ref[edges], np.ones(len(edges), bool))


def test_ties_through_method_uses_cached_histogram(monkeypatch):
    """The ties method with the engine's cached histograms == the torch reference path."""
    k, n = 3, kernels.SMALL + 1234
    base = torch.randn(n, generator=torch.Generator().manual_seed(0))
    stack = torch.stack([torch.randn(n, generator=torch.Generator().manual_seed(i + 1)) * 0.01 for i in range(k)])
    m = get_method("ties")
    shared = {p.name: p.default for p in m.shared_params}
    per = [{"weight": w, "density": d} for w, d in zip((0.6, -0.2, 0.4), (0.3, 0.5, 0.9))]
    outs = []
    for fused in (True, False):
        ops = [Operand(base, stack[i], stack=stack, row=i) for i in range(k)]
        if fused:
            for i, op in enumerate(ops):
                op.abs_hist = kernels.abs_histogram(stack[i].numpy())
        out = torch.empty(n)
        with monkeypatch.context() as mp:
            if not fused:
                mp.setattr(M, "_fusable", lambda *t: False)
            m.fn(TensorArgs("t", out, Operand(base), ops, shared, per, 0, {}))
        outs.append(out)
    assert torch.allclose(outs[0], outs[1], rtol=1e-6, atol=1e-7)


def test_dare_draws_same_in_torch_and_fused_kernel():
    """The counter-based DARE draw: torch (any chunk) == the fused kernel, bit for bit; seeded."""
    n = 50_000
    key, density = M.dare_key(7, "model.layers.0.mlp.up_proj.weight", 1), 0.3
    thr = kernels.dare_threshold(density)
    draws = M.dare_draws(0, n, key, torch.device("cpu"))
    assert draws.min() >= 0 and draws.max() < (1 << 24)
    assert torch.equal(M.dare_draws(1234, 4321, key, torch.device("cpu")), draws[1234:4321])  # chunk-free
    want = (draws < thr).numpy()
    got = np.empty(n, np.float32)  # ref 0, delta 1, weight 1: the output is the keep mask
    kernels.gta(got, np.zeros(n, np.float32), [np.ones(n, np.float32)], [1.0], [1.0], [0.0], [np.inf], False,
                False, 1.0, 1.0, dare=([key], [thr]))
    assert np.array_equal(got == 1.0, want)
    assert abs(want.mean() - density) < 0.01
    assert kernels.dare_abs_sum(np.full(n, -2.0, np.float32), key, density) == 2.0 * want.sum()
    other = (M.dare_draws(0, n, M.dare_key(8, "model.layers.0.mlp.up_proj.weight", 1), torch.device("cpu")) < thr)
    assert 0.05 < float((other.numpy() != want).mean()) < 0.6  # another seed, another mask
    # the torch path's masking (CUDA / other dtypes) keeps exactly these elements
    delta = torch.randn(n)
    out = M._bernoulli_masked(delta, density, 7, "model.layers.0.mlp.up_proj.weight", 1, torch.empty(n))
    assert torch.equal(out != 0, torch.from_numpy(want) & (delta != 0))

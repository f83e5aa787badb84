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
@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "breadcrumbs_ties", "breadcrumbs", "dare_ties"])
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
    if hist is not None:
        assert int(hist.sum()) == n
    for r in (0, 1, n // 3, n // 2, n - 2, n - 1):
        assert kernels.rank_value(x.numpy(), r, hist) == ab[r]
    with pytest.raises(IndexError):
        kernels.rank_value(x.numpy(), n)


def test_ties_threshold_keeps_ties_together():
    # |delta| = 1,1,2,2,2,3 with density 0.5 -> k = 3 largest; threshold 2 keeps all three 2's
    base = torch.zeros(6)
    d = torch.tensor([1.0, -1.0, 2.0, -2.0, 2.0, 3.0])
    op = Operand(base, d)
    assert M.magnitude_bounds(op, 0.5, 0.0, False) == (2.0, float("inf"))

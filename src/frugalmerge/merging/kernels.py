"""Fused single-pass CPU kernels (numba) for the merge methods' hot loops.

The torch implementation in :mod:`frugalmerge.merging.methods` evaluates a method as a chain of
elementwise ops over chunks: every op is one more pass over the chunk plus dispatch overhead (TIES
is ~15 ops per input). These kernels read each input element once and write each output element
once, with per-block accumulators that stay in L1. They are used by the method functions for
float32, contiguous CPU tensors; CUDA tensors, other dtypes and machines without numba keep the
torch path (see :func:`available`).

Magnitude thresholds (TIES, breadcrumbs) are exact order statistics of ``|delta|`` found by a
radix select on the float bit pattern: a histogram of the high 16 bits (cacheable per tensor, since
it does not depend on the density), then only the elements of the one bin that holds the wanted
rank are gathered and partially sorted. No full sort, no copy of the tensor.

Kernels are compiled on first use with ``cache=True`` (reused by later processes) and run on one
thread (``nogil``): the callers' torch thread count is 1 on the machines this targets.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import numpy as np

HIST_BINS = 1 << 16  # high 16 bits of a non-negative float32: sign (0), exponent, 7 mantissa bits
BLOCK = 1024  # elements per accumulator block (4 KiB per float32 accumulator: stays in L1)
# Tensors smaller than this select thresholds with np.partition on a copy (a histogram would be
# larger than the tensor).
SMALL = 1 << 18


@lru_cache(maxsize=1)
def available() -> bool:
    """True when numba imports and ``FRUGALMERGE_FUSED`` is not ``0`` (then the kernels are used)."""
    if os.environ.get("FRUGALMERGE_FUSED", "1") == "0":
        return False
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


@lru_cache(maxsize=1)
def _compiled() -> dict[str, Any]:
    """Define (and lazily compile) the numba kernels; no work at import time."""
    from numba import njit

    jit = njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
    f32 = np.float32
    zero = f32(0.0)
    one = f32(1.0)

    @jit
    def combine(out, ref, ref_coef, stack, rows, coefs):
        """``out = ref_coef * ref + sum_i coefs[i] * stack[rows[i]]`` (float32, one pass).

        Inputs are added in order, per block, into the output block (in L1): every loop is a plain
        vectorizable elementwise loop.
        """
        n = out.shape[0]
        k = rows.shape[0]
        for j0 in range(0, n, BLOCK):
            m = min(n, j0 + BLOCK) - j0
            o = out[j0:j0 + m]
            r = ref[j0:j0 + m]
            if k == 0:
                for t in range(m):
                    o[t] = r[t] * ref_coef
                continue
            d = stack[rows[0]][j0:j0 + m]
            c = coefs[0]
            for t in range(m):
                o[t] = r[t] * ref_coef + d[t] * c
            for i in range(1, k):
                d = stack[rows[i]][j0:j0 + m]
                c = coefs[i]
                for t in range(m):
                    o[t] = o[t] + d[t] * c

    @jit
    def gta(out, ref, stack, rows, coefs, weights, lo, hi, consensus, normalize, static_div, lam):
        """Generalized task arithmetic in one pass (see ``methods._gta``).

        ``s_i = coefs[i] * d_i`` where ``lo[i] <= |d_i| <= hi[i]`` (else 0); without consensus the
        mixed delta is ``sum s_i`` (divided by ``static_div`` when normalizing); with consensus the
        majority sign is that of ``S = sum s_i`` summed in input order (``S >= 0``: positive, as
        mergekit), the mixed delta is the sum, in input order, of the ``s_i`` with that sign,
        divided by the summed weights of those inputs (1 when that is zero).
        ``out = ref + lam * mixed``. Per block, each input is one branch-free elementwise loop
        over L1-resident accumulators (the branches on flags are hoisted out of the loops).
        """
        n = out.shape[0]
        k = rows.shape[0]
        # one 2-D accumulator (rows S, P, N, WP, WN): same base pointer, so the compiler can prove
        # the rows disjoint and vectorize without a runtime alias check per pair of arrays
        acc = np.zeros((5, BLOCK), np.float32)
        for j0 in range(0, n, BLOCK):
            m = min(n, j0 + BLOCK) - j0
            r = ref[j0:j0 + m]
            o = out[j0:j0 + m]
            if k == 0:
                for t in range(m):
                    o[t] = r[t]
                continue
            for i in range(k):
                d = stack[rows[i]][j0:j0 + m]
                c = coefs[i]
                w = weights[i]
                lo_i = lo[i]
                hi_i = hi[i]
                # Selects are written as products with 0/1 floats (exact: x*1 == x, x*0 == +-0),
                # which the compiler vectorizes; a data-dependent branch per element does not.
                if i == 0 and consensus:
                    for t in range(m):
                        x = d[t]
                        a = abs(x)
                        s = x * (c * f32((a >= lo_i) & (a <= hi_i)))
                        p = f32(s > zero)
                        q = f32(s < zero)
                        acc[0, t] = s
                        acc[1, t] = s * p
                        acc[2, t] = s * q
                        acc[3, t] = w * p
                        acc[4, t] = w * q
                elif consensus:
                    for t in range(m):
                        x = d[t]
                        a = abs(x)
                        s = x * (c * f32((a >= lo_i) & (a <= hi_i)))
                        p = f32(s > zero)
                        q = f32(s < zero)
                        acc[0, t] = acc[0, t] + s
                        acc[1, t] = acc[1, t] + s * p
                        acc[2, t] = acc[2, t] + s * q
                        acc[3, t] = acc[3, t] + w * p
                        acc[4, t] = acc[4, t] + w * q
                elif i == 0:
                    for t in range(m):
                        x = d[t]
                        a = abs(x)
                        acc[0, t] = x * (c * f32((a >= lo_i) & (a <= hi_i)))
                else:
                    for t in range(m):
                        x = d[t]
                        a = abs(x)
                        acc[0, t] = acc[0, t] + x * (c * f32((a >= lo_i) & (a <= hi_i)))
            if consensus:
                for t in range(m):
                    u = f32(acc[0, t] >= zero)  # majority sign positive (S == 0 counts as +, as mergekit)
                    v = one - u
                    mixed = acc[1, t] * u + acc[2, t] * v
                    if normalize:
                        div = acc[3, t] * u + acc[4, t] * v
                        mixed = mixed / (div + f32(div == zero))  # no agreeing weight: divide by 1
                    o[t] = r[t] + mixed * lam
            elif normalize:
                for t in range(m):
                    o[t] = r[t] + (acc[0, t] / static_div) * lam
            else:
                for t in range(m):
                    o[t] = r[t] + acc[0, t] * lam

    @jit
    def abs_histogram(x):
        """Counts of ``|x|`` per high-16-bit bin of its float32 bit pattern (monotone in value)."""
        bits = x.view(np.uint32)
        h = np.zeros(HIST_BINS, np.int64)
        for j in range(bits.shape[0]):
            h[(bits[j] & np.uint32(0x7FFFFFFF)) >> np.uint32(16)] += 1
        return h

    @jit
    def rank_value(x, hist, rank):
        """The ``rank``-th smallest ``|x|`` (0-based), exactly, from the high-bit histogram.

        Finds the bin that holds the rank from the counts, gathers that bin's elements (bit
        patterns of non-negative floats sort like the values) and partially sorts only them.
        """
        b = 0
        below = 0
        while below + hist[b] <= rank:
            below += hist[b]
            b += 1
        buf = np.empty(hist[b], np.uint32)
        bits = x.view(np.uint32)
        key = np.uint32(b)
        cnt = 0
        for j in range(bits.shape[0]):
            a = bits[j] & np.uint32(0x7FFFFFFF)
            if (a >> np.uint32(16)) == key:
                buf[cnt] = a
                cnt += 1
        sel = np.partition(buf, rank - below)
        return sel[rank - below : rank - below + 1].view(np.float32)[0]

    @jit
    def window_abs_sum(x, lo, hi):
        """``sum |x|`` over the elements with ``lo <= |x| <= hi`` (float64 accumulator)."""
        acc = 0.0
        for j in range(x.shape[0]):
            a = abs(x[j])
            if (a >= lo) & (a <= hi):
                acc += a
        return acc

    return {"combine": combine, "gta": gta, "abs_histogram": abs_histogram, "rank_value": rank_value,
            "window_abs_sum": window_abs_sum}


def kernel(name: str):
    """The compiled kernel ``name`` (compiles, or loads from numba's cache, on first call)."""
    return _compiled()[name]


def abs_histogram(x: np.ndarray) -> np.ndarray:
    """High-16-bit histogram of ``|x|`` (int64, 65536 bins) for :func:`rank_value`; None if small."""
    if x.shape[0] < SMALL:
        return None
    return kernel("abs_histogram")(x)


def rank_value(x: np.ndarray, rank: int, hist: np.ndarray | None = None) -> float:
    """The ``rank``-th smallest ``|x|`` (0-based) of a float32 vector, exactly (no full sort)."""
    if not 0 <= rank < x.shape[0]:
        raise IndexError(f"rank {rank} out of range for {x.shape[0]} elements")
    if x.shape[0] < SMALL:
        return float(np.partition(np.abs(x), rank)[rank])
    if hist is None:
        hist = kernel("abs_histogram")(x)
    return float(kernel("rank_value")(x, hist, rank))


def warm_up() -> float:
    """Compile (or load from cache) every kernel on tiny inputs; returns the seconds it took."""
    import time

    t = time.perf_counter()
    x = np.linspace(-1, 1, SMALL, dtype=np.float32)
    stack = np.stack([x, x[::-1].copy()])
    rows = np.arange(2, dtype=np.int64)
    c = np.ones(2, np.float32)
    out = np.empty_like(x)
    kernel("combine")(out, x, np.float32(1), stack, rows, c)
    kernel("gta")(out, x, stack, rows, c, c, np.zeros(2, np.float32), np.full(2, np.inf, np.float32),
                  True, True, np.float32(1), np.float32(1))
    rank_value(x, 7)
    kernel("window_abs_sum")(x, np.float32(0), np.float32(np.inf))
    return time.perf_counter() - t

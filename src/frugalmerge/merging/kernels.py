"""Fused single-pass CPU kernels (numba) for the merge methods' hot loops.

The torch implementation in :mod:`frugalmerge.merging.methods` evaluates a method as a chain of
elementwise ops over chunks: every op is one more pass over the chunk plus dispatch overhead (TIES
is ~15 ops per input). These kernels read each input element once and write each output element
once, with per-block accumulators that stay in L1. They are used by the method functions for
float32, contiguous CPU tensors; CUDA tensors, other dtypes and machines without numba keep the
torch path (see :func:`available`).

Magnitude thresholds (TIES, breadcrumbs) are exact order statistics of ``|delta|`` found by a
radix select on the float bit pattern: a cumulative histogram of the high bits (up to 20, cached per
task vector by the engine since it does not depend on the density) gives the bin that holds the
wanted rank, then only that bin's elements are gathered and partially sorted. No full sort, no copy
of the tensor. For TIES the gathering happens inside the merging pass itself (``gta_select``): one
read of memory per candidate.

Kernels are compiled on first use with ``cache=True`` (reused by later processes) and run on one
thread (``nogil``): the callers' torch thread count is 1 on the machines this targets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

# Coarse bins: the high 16 bits of a non-negative float32 (sign 0, exponent, 7 mantissa bits); a
# cached histogram has at most this many entries (finer bins over a narrower range).
HIST_BINS = 1 << 16
BLOCK = 1024  # elements per block of the combine kernel (the output block stays in L1)
# Elements per chunk of the threshold-selecting TIES pass (its flags and inputs stay in L2).
SELECT_CHUNK = 8192
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
    from numba.cpython.unsafe.tuple import tuple_setitem

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
    def gta(out, ref, ds, cs, ws, los, his, nexts, fl, consensus, normalize, static_div, lam, start, stop):
        """Generalized task arithmetic on ``[start, stop)`` in one pass (see ``methods._gta``).

        ``ds`` is a tuple of the k task vectors (``cs``, ``ws``, ``los``: tuples of k float32), so
        numba compiles one version per k with the loop over inputs unrolled and every accumulator
        in a register. ``s_i = cs[i] * d_i`` where ``|d_i| >= los[i]`` (and ``<= his[i]``; ``his``
        None: no upper bound, compiled out); without consensus the mixed delta is ``sum s_i``
        (divided by ``static_div`` when normalizing); with consensus the majority sign is that of
        ``S = sum s_i`` summed in input order (``S >= 0``: positive, as mergekit), the mixed delta
        is the sum, in input order, of the ``s_i`` with that sign, divided by the summed weights
        of those inputs (1 when that is zero). ``out = ref + lam * mixed``.
        With ``nexts`` (a tuple), ``fl[t - start]`` is set to 1 where some input has
        ``los[i] <= |d_i| < nexts[i]`` (an element in the boundary bin of a deferred threshold).
        Selects are products with 0/1 floats (exact: x*1 == x, x*0 == +-0), which vectorize; the
        loop index is unsigned so numba emits no negative-index wraparound (which blocks SIMD).
        """
        k = len(ds)
        for tt in range(start, stop):
            t = np.uintp(tt)
            S = zero
            P = zero
            N = zero
            WP = zero
            WN = zero
            und = np.uint8(0)
            for i in range(k):
                x = ds[i][t]
                a = abs(x)
                keep = a >= los[i]
                if nexts is not None:
                    und |= np.uint8(keep) & np.uint8(a < nexts[i])
                if his is not None:
                    keep = keep & (a <= his[i])
                s = x * (cs[i] * f32(keep))
                S = S + s
                if consensus:
                    # P, N: the positive / negative s_i summed in input order (adding +0 for the
                    # others leaves a sum unchanged); max/min are single instructions
                    P = P + max(s, zero)
                    N = N + min(s, zero)
                    if normalize:
                        WP = WP + ws[i] * f32(s > zero)
                        WN = WN + ws[i] * f32(s < zero)
            if consensus:
                pos = S >= zero  # majority sign positive (S == 0 counts as +, as mergekit)
                mixed = P if pos else N
                if normalize:
                    div = WP if pos else WN
                    mixed = mixed / (div + f32(div == zero))  # no agreeing weight: divide by 1
            elif normalize:
                mixed = S / static_div
            else:
                mixed = S
            out[t] = ref[t] + mixed * lam
            if nexts is not None:
                fl[np.uintp(tt - start)] = und

    @jit
    def gta_select(out, ref, ds, cs, ws, los, nexts, shifts, keys, inranks, consensus, normalize, static_div,
                   lam, pos, vs, refv):
        """``gta`` with exact magnitude thresholds found in the same pass over memory.

        Input i with ``keys[i] >= 0`` has its threshold in the bin ``keys[i]`` of ``|d_i|`` bits
        ``>> shifts[i]`` (known from the cached histogram), at rank ``inranks[i]`` within that bin;
        ``los[i]`` and ``nexts[i]`` are the bin's edges. The pass keeps that whole bin
        provisionally and copies every element where some input falls in its boundary bin
        (position into ``pos``, all deltas into the rows ``vs``, the reference into ``refv``) while
        the chunk is in cache. Then each threshold is selected from the buffer (which holds the
        whole bin), and only the buffered positions are recomputed with the exact thresholds by
        the same ``gta`` code: the result is bit for bit that of ``gta`` with the exact
        thresholds, and memory is read once. Returns the exact thresholds.
        """
        n = out.shape[0]
        k = len(ds)
        fl = np.zeros(SELECT_CHUNK, np.uint8)
        fw = fl.view(np.uint64)
        cnt = 0
        for j0 in range(0, n, SELECT_CHUNK):
            j1 = min(n, j0 + SELECT_CHUNK)
            gta(out, ref, ds, cs, ws, los, None, nexts, fl, consensus, normalize, static_div, lam, j0, j1)
            if j1 - j0 < SELECT_CHUNK:
                fl[j1 - j0:] = 0
            for w in range(SELECT_CHUNK // 8):  # 8 flags per word: most words are 0
                if fw[w] != 0:
                    for t in range(w * 8, w * 8 + 8):
                        if fl[t]:
                            j = j0 + t
                            pos[cnt] = j
                            refv[cnt] = ref[j]
                            for i in range(k):
                                vs[i][cnt] = ds[i][j]
                            cnt += 1
        exact = los
        for i in range(k):
            if keys[i] >= 0:
                exact = tuple_setitem(exact, i, bin_select(vs[i][:cnt], shifts[i], keys[i], inranks[i]))
        fixed = np.empty(cnt, np.float32)
        gta(fixed, refv, vs, cs, ws, exact, None, None, fl, consensus, normalize, static_div, lam, 0, cnt)
        for p in range(cnt):
            out[pos[p]] = fixed[p]
        return exact

    @jit
    def bin_select(v, shift, key, rank):
        """The ``rank``-th smallest ``|v|`` among the elements of ``v`` whose bin
        ``(|v| bits) >> shift`` is ``key``."""
        bits = v.view(np.uint32)
        buf = np.empty(bits.shape[0], np.uint32)
        c = 0
        sh = np.uint32(shift)
        kk = np.uint32(key)
        for p in range(bits.shape[0]):
            a = bits[p] & np.uint32(0x7FFFFFFF)
            if (a >> sh) == kk:
                buf[c] = a
                c += 1
        sel = np.partition(buf[:c], rank)
        return sel[rank:rank + 1].view(np.float32)[0]

    @jit
    def coarse_histogram(x):
        """Cumulative counts of ``|x|`` per high-16-bit bin of its float32 bit pattern.

        ``h[b]`` = number of elements whose ``|x|`` bits are ``< (b + 1) << 16`` (bit patterns of
        non-negative floats are monotone in the value).
        """
        bits = x.view(np.uint32)
        h = np.zeros(HIST_BINS, np.int64)
        for j in range(bits.shape[0]):
            h[(bits[j] & np.uint32(0x7FFFFFFF)) >> np.uint32(16)] += 1
        for b in range(1, HIST_BINS):
            h[b] += h[b - 1]
        return h

    @jit
    def fine_histogram(x, shift, base, m):
        """Cumulative counts per bin ``key = (|x| bits) >> shift`` for keys ``base .. base + m - 1``
        (elements below ``base`` are counted in every entry; none may be above)."""
        bits = x.view(np.uint32)
        h = np.zeros(m, np.int64)
        sh = np.uint32(shift)
        for j in range(bits.shape[0]):
            key = np.int64((bits[j] & np.uint32(0x7FFFFFFF)) >> sh) - base
            h[max(key, 0)] += 1
        for b in range(1, m):
            h[b] += h[b - 1]
        return h

    @jit
    def rank_value(x, shift, key, inrank, count):
        """The ``inrank``-th smallest ``|x|`` among the ``count`` elements in bin ``key``.

        Gathers that bin's elements (bit patterns of non-negative floats sort like the values)
        and partially sorts only them. The scan tests 64 elements at a time with a vectorized
        count and visits only blocks that hold an element of the bin (a small fraction).
        """
        buf = np.empty(count, np.uint32)
        bits = x.view(np.uint32)
        kk = np.uint32(key)
        sh = np.uint32(shift)
        cnt = 0
        n = bits.shape[0]
        m = n - n % 64
        for j0 in range(0, m, 64):
            hit = 0
            for j in range(j0, j0 + 64):
                hit += ((bits[j] & np.uint32(0x7FFFFFFF)) >> sh) == kk
            if hit:
                for j in range(j0, j0 + 64):
                    a = bits[j] & np.uint32(0x7FFFFFFF)
                    if (a >> sh) == kk:
                        buf[cnt] = a
                        cnt += 1
        for j in range(m, n):
            a = bits[j] & np.uint32(0x7FFFFFFF)
            if (a >> sh) == kk:
                buf[cnt] = a
                cnt += 1
        sel = np.partition(buf, inrank)
        return sel[inrank : inrank + 1].view(np.float32)[0]

    @jit
    def window_abs_sum(x, lo, hi):
        """``sum |x|`` over the elements with ``lo <= |x| <= hi`` (float64 accumulator)."""
        acc = 0.0
        for j in range(x.shape[0]):
            a = abs(x[j])
            if (a >= lo) & (a <= hi):
                acc += a
        return acc

    return {"combine": combine, "gta": gta, "gta_select": gta_select, "coarse_histogram": coarse_histogram,
            "fine_histogram": fine_histogram, "rank_value": rank_value, "window_abs_sum": window_abs_sum}


def kernel(name: str):
    """The compiled kernel ``name`` (compiles, or loads from numba's cache, on first call)."""
    return _compiled()[name]


@dataclass(frozen=True)
class AbsHistogram:
    """Cumulative counts of ``|x|`` per bin ``key = (float32 bits of |x|) >> shift``.

    ``cum[j]`` counts the elements with ``key <= base + j``; ``below`` those with ``key < base``
    (lumped together: the smallest ~1% of magnitudes). Independent of any density, so the engine
    builds it once per task vector; a magnitude threshold then lies in one known bin.
    """

    shift: int
    base: int
    below: int
    cum: np.ndarray

    def locate(self, rank: int) -> tuple[int, int, int] | None:
        """``(key, rank within the bin, elements in the bin)`` of the ``rank``-th smallest ``|x|``;
        None when it lies in the lumped range below ``base``."""
        if rank < self.below:
            return None
        j = int(np.searchsorted(self.cum, rank, side="right"))
        before = int(self.cum[j - 1]) if j > 0 else self.below
        return self.base + j, rank - before, int(self.cum[j]) - before


def abs_histogram(x: np.ndarray) -> AbsHistogram | None:
    """The :class:`AbsHistogram` of a float32 vector (None for vectors shorter than ``SMALL``).

    Bins are as fine as ``HIST_BINS`` entries allow over the range from the ~1% quantile of
    ``|x|`` to its maximum (down to 1/2048 of a binade: 11 mantissa bits), so the boundary bin of
    a threshold holds few elements. Two passes over ``x``: a coarse (high-16-bit) histogram
    to find the range, then the fine one.
    """
    n = x.shape[0]
    if n < SMALL:
        return None
    coarse = kernel("coarse_histogram")(x)
    lo16 = int(np.searchsorted(coarse, n // 100, side="right"))
    hi16 = int(np.searchsorted(coarse, n - 1, side="right"))
    extra = 0  # mantissa bits beyond the coarse 7, while the range still fits in HIST_BINS entries
    while extra < 4 and (hi16 - lo16 + 1) << (extra + 1) <= HIST_BINS:
        extra += 1
    below = int(coarse[lo16 - 1]) if lo16 > 0 else 0
    if extra == 0:
        return AbsHistogram(16, lo16, below, coarse[lo16: hi16 + 1].copy())
    shift, base = 16 - extra, lo16 << extra
    m = ((hi16 + 1) << extra) - base
    return AbsHistogram(shift, base, below, kernel("fine_histogram")(x, shift, base, m))


def _bits_to_f32(bits: int) -> np.float32:
    return np.array([bits], dtype=np.uint32).view(np.float32)[0]


def rank_value(x: np.ndarray, rank: int, hist: AbsHistogram | None = None) -> float:
    """The ``rank``-th smallest ``|x|`` (0-based) of a float32 vector, exactly (no full sort).

    ``hist``: the vector's :func:`abs_histogram` (computed when not given).
    """
    n = x.shape[0]
    if not 0 <= rank < n:
        raise IndexError(f"rank {rank} out of range for {n} elements")
    if n < SMALL:
        return float(np.partition(np.abs(x), rank)[rank])
    loc = hist.locate(rank) if hist is not None else None
    if loc is None:  # no histogram, or the rank is among the lumped smallest values: coarse bins
        coarse = kernel("coarse_histogram")(x)
        b = int(np.searchsorted(coarse, rank, side="right"))
        before = int(coarse[b - 1]) if b > 0 else 0
        return float(kernel("rank_value")(x, 16, b, rank - before, int(coarse[b]) - before))
    key, inrank, count = loc
    return float(kernel("rank_value")(x, hist.shift, key, inrank, count))


def _same_type(arrays: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """The arrays as one homogeneous tuple (numba compiles one kernel per input count): C-contiguous,
    writeable (a read-only view would be another array type)."""
    return tuple(a if a.flags.c_contiguous and a.flags.writeable else np.array(a, order="C") for a in arrays)


def _f32s(values) -> tuple:
    return tuple(np.float32(v) for v in values)


def gta(out: np.ndarray, ref: np.ndarray, deltas: list[np.ndarray], coefs: list[float], weights: list[float],
        lo: list[float], hi: list[float], consensus: bool, normalize: bool, static_div: float, lam: float,
        select: list[tuple[AbsHistogram, int] | None] | None = None) -> list[float]:
    """Fused generalized task arithmetic over float32 vectors (see ``methods._gta``).

    ``out = ref + lam * mix(s_i)`` with ``s_i = coefs[i] * d_i`` where ``lo[i] <= |d_i| <= hi[i]``.
    ``select[i] = (abs_histogram(d_i), rank)`` instead defers input i's lower bound to
    the exact ``rank``-th smallest ``|d_i|``, found in the same pass over memory (``hi[i]`` must be
    inf). Returns the lower bounds used (the selected thresholds for deferred inputs).
    """
    k = len(deltas)
    if k == 0:
        np.add(ref, np.float32(0), out=out)
        return []
    ds = _same_type(deltas)
    cs, ws = _f32s(coefs), _f32s(weights)
    los = list(lo)
    plain = np.float32(static_div), np.float32(lam)
    keys, inranks, shifts, nexts = [-1] * k, [0] * k, [16] * k, [np.float32(0)] * k  # 0: never in a boundary bin
    cap = 0
    for i, sel in enumerate(select or [None] * k):
        if sel is None:
            continue
        hist, rank = sel
        loc = hist.locate(rank)
        if loc is None or (loc[0] + 1) << hist.shift > 0x7F800000:  # lumped range, or inf/nan bits
            los[i] = rank_value(deltas[i], rank, hist)
            continue
        keys[i], inranks[i], shifts[i] = loc[0], loc[1], hist.shift
        los[i], nexts[i] = _bits_to_f32(loc[0] << hist.shift), _bits_to_f32((loc[0] + 1) << hist.shift)
        cap += loc[2]
    los_t = _f32s(los)
    if cap == 0:
        his = None if all(h == np.inf for h in hi) else _f32s(hi)
        kernel("gta")(out, ref, ds, cs, ws, los_t, his, None, np.empty(0, np.uint8), bool(consensus),
                      bool(normalize), *plain, 0, out.shape[0])
        return [float(x) for x in los_t]
    if any(h != np.inf for h in hi):
        raise ValueError("threshold selection in the pass supports lower bounds only")
    vals = np.empty((k, cap), np.float32)
    exact = kernel("gta_select")(out, ref, ds, cs, ws, los_t, tuple(nexts), tuple(shifts), tuple(keys),
                                 tuple(inranks), bool(consensus), bool(normalize), *plain, np.empty(cap, np.int64),
                                 tuple(vals[i] for i in range(k)), np.empty(cap, np.float32))
    return [float(x) for x in exact]


def warm_up() -> float:
    """Compile (or load from cache) the kernels on tiny inputs (2 task vectors); returns seconds."""
    import time

    t = time.perf_counter()
    x = np.linspace(-1, 1, SMALL, dtype=np.float32)
    stack = np.stack([x, x[::-1].copy()])
    rows = np.arange(2, dtype=np.int64)
    c = np.ones(2, np.float32)
    out = np.empty_like(x)
    kernel("combine")(out, x, np.float32(1), stack, rows, c)
    deltas = [stack[0], stack[1]]
    cum = abs_histogram(x)
    for consensus in (True, False):
        gta(out, x, deltas, [1, 1], [1, 1], [0, 0], [np.inf, 0.5], consensus, True, 1.0, 1.0)
        gta(out, x, deltas, [1, 1], [1, 1], [0, 0], [np.inf, np.inf], consensus, True, 1.0, 1.0,
            select=[(cum, 7), None])
    rank_value(x, 7)
    kernel("window_abs_sum")(x, np.float32(0), np.float32(np.inf))
    return time.perf_counter() - t

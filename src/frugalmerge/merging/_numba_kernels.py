"""The numba kernels behind :mod:`frugalmerge.merging.kernels` (imported lazily: needs numba).

Module-level functions (not closures) so that numba's on-disk cache (``cache=True``) finds them in
later processes: a cached kernel that calls another one through a closure cell is recompiled in
every process.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.tuple import tuple_setitem

from frugalmerge.merging.kernels import BLOCK, HIST_BINS, SELECT_CHUNK

jit = njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
f32 = np.float32
zero = f32(0.0)
one = f32(1.0)
u32 = np.uint32


@njit(inline="always", nogil=True, error_model="numpy")
def dare_hash(j, key):
    """A uniform 24-bit draw for element ``j`` under ``key``: a 32-bit integer hash (golden-ratio
    counter step, then the "lowbias32" finalizer) of ``j * 0x9E3779B9 + key`` mod 2**32, top 24
    bits. Counter-based: any element's draw is computed alone, in any order, on any device (the
    torch path in ``methods.dare_draws`` computes the same bits). uint32 arithmetic throughout
    (wrapping multiplies vectorize as 32-bit lanes)."""
    x = u32(u32(j) * u32(0x9E3779B9))
    x = u32(x + key)
    x = u32(x ^ (x >> u32(16)))
    x = u32(x * u32(0x7FEB352D))
    x = u32(x ^ (x >> u32(15)))
    x = u32(x * u32(0x846CA68B))
    x = u32(x ^ (x >> u32(16)))
    return x >> u32(8)


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, fastmath={"reassoc"})
def dare_abs_sum(x, key, thr):
    """``sum |x_j|`` over the elements DARE keeps (``dare_hash(j, key) < thr``), float64.

    Reassociation is allowed here only (a float64 sum of float32 values: the order changes the
    result by ~1e-16 relative, far below float32's resolution of the rescale factor), so the sum
    vectorizes.
    """
    acc = 0.0
    for j in range(x.shape[0]):
        keep = dare_hash(np.uint64(j), key) < thr
        acc += np.float64(abs(x[j])) * np.float64(keep)
    return acc


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
def gta(out, ref, ds, cs, ws, los, his, nexts, fl, dkeys, dthrs, consensus, normalize, static_div, lam, start,
        stop):
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
    With ``dkeys`` (DARE), element t of input i is also kept only where
    ``dare_hash(t, dkeys[i]) < dthrs[i]`` (a counter-based random draw, see :func:`dare_hash`).
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
            if dkeys is not None:
                keep = keep & (dare_hash(np.uint64(tt), dkeys[i]) < dthrs[i])
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
        gta(out, ref, ds, cs, ws, los, None, nexts, fl, None, None, consensus, normalize, static_div, lam, j0, j1)
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
    gta(fixed, refv, vs, cs, ws, exact, None, None, fl, None, None, consensus, normalize, static_div, lam, 0,
        cnt)
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

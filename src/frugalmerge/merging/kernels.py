"""Fused single-pass CPU kernels (numba) for the merge methods' hot loops.

The torch implementation in :mod:`frugalmerge.merging.methods` evaluates a method as a chain of
elementwise ops over chunks: every op is one more pass over the chunk plus dispatch overhead (TIES
is ~15 ops per input). These kernels read each input element once and write each output element
once, with the accumulators in registers (one compiled version per input count). They are used by
the method functions for float32, contiguous CPU tensors; CUDA tensors, other dtypes and machines
without numba keep the torch path (see :func:`available`). DARE's random drop is a counter-based
hash drawn inside the pass (the torch path computes the same draws).

Magnitude thresholds (TIES, breadcrumbs) are exact order statistics of ``|delta|`` found by a
radix select on the float bit pattern: a cumulative histogram of the high bits (up to 20, cached per
task vector by the engine since it does not depend on the density) gives the bin that holds the
wanted rank, then only that bin's elements are gathered and partially sorted. No full sort, no copy
of the tensor. For TIES the gathering happens inside the merging pass itself (``gta_select``): one
read of memory per candidate.

The numba code lives in :mod:`frugalmerge.merging._numba_kernels` (imported on first use). Kernels
are compiled on first use with ``cache=True`` (reused by later processes) and run on one thread
(``nogil``): the callers' torch thread count is 1 on the machines this targets.
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
    """The numba kernels (module :mod:`frugalmerge.merging._numba_kernels`, imported on first use:
    no work at import time)."""
    from frugalmerge.merging import _numba_kernels as nk

    return {name: getattr(nk, name) for name in (
        "combine", "gta", "gta_select", "coarse_histogram", "fine_histogram", "rank_value", "window_abs_sum",
        "dare_abs_sum")}


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
    # Values beyond float32 become Inf as in torch; a non-finite output is rejected by the writers
    # with one clear error, so numpy's overflow warning would only add noise.
    with np.errstate(over="ignore"):
        return tuple(np.float32(v) for v in values)


def gta(out: np.ndarray, ref: np.ndarray, deltas: list[np.ndarray], coefs: list[float], weights: list[float],
        lo: list[float], hi: list[float], consensus: bool, normalize: bool, static_div: float, lam: float,
        select: list[tuple[AbsHistogram, int] | None] | None = None,
        dare: tuple[list[int], list[int]] | None = None) -> list[float]:
    """Fused generalized task arithmetic over float32 vectors (see ``methods._gta``).

    ``out = ref + lam * mix(s_i)`` with ``s_i = coefs[i] * d_i`` where ``lo[i] <= |d_i| <= hi[i]``.
    ``select[i] = (abs_histogram(d_i), rank)`` instead defers input i's lower bound to
    the exact ``rank``-th smallest ``|d_i|``, found in the same pass over memory (``hi[i]`` must be
    inf). ``dare = (keys, thresholds)``: input i also keeps only the elements whose
    ``dare_hash(j, keys[i]) < thresholds[i]`` (DARE's random drop, drawn inside the pass).
    Returns the lower bounds used (the selected thresholds for deferred inputs).
    """
    k = len(deltas)
    if k == 0:
        np.add(ref, np.float32(0), out=out)
        return []
    ds = _same_type(deltas)
    cs, ws = _f32s(coefs), _f32s(weights)
    los = list(lo)
    plain = _f32s((static_div, lam))
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
        dk = None if dare is None else tuple(np.uint32(x) for x in dare[0])
        dt = None if dare is None else tuple(np.uint32(x) for x in dare[1])
        kernel("gta")(out, ref, ds, cs, ws, los_t, his, None, np.empty(0, np.uint8), dk, dt, bool(consensus),
                      bool(normalize), *plain, 0, out.shape[0])
        return [float(x) for x in los_t]
    if any(h != np.inf for h in hi) or dare is not None:
        raise ValueError("threshold selection in the pass supports lower bounds only, without DARE")
    vals = np.empty((k, cap), np.float32)
    exact = kernel("gta_select")(out, ref, ds, cs, ws, los_t, tuple(nexts), tuple(shifts), tuple(keys),
                                 tuple(inranks), bool(consensus), bool(normalize), *plain, np.empty(cap, np.int64),
                                 tuple(vals[i] for i in range(k)), np.empty(cap, np.float32))
    return [float(x) for x in exact]


DARE_BITS = 24  # resolution of DARE's keep probability: draws are 24-bit integers


def dare_threshold(density: float) -> int:
    """Draws below this keep an element: probability ``density`` (to 2**-24)."""
    return int(min(max(density, 0.0), 1.0) * (1 << DARE_BITS))


def dare_abs_sum(x: np.ndarray, key: int, density: float) -> float:
    """``sum |x|`` (float64) over the elements DARE keeps at ``density`` under ``key``."""
    return float(kernel("dare_abs_sum")(x, np.uint32(key), np.uint32(dare_threshold(density))))


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
    gta(out, x, deltas, [1, 1], [1, 1], [0, 0], [np.inf, np.inf], True, False, 1.0, 1.0,
        dare=([1, 2], [1 << 23, 1 << 24]))
    dare_abs_sum(x, 1, 0.5)
    rank_value(x, 7)
    kernel("window_abs_sum")(x, np.float32(0), np.float32(np.inf))
    return time.perf_counter() - t

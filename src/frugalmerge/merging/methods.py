"""The merge-method registry and one small function per method, operating on flat tensors.

Every method receives a :class:`TensorArgs`: the output buffer (flat, written in place), the
method's base operand and its other inputs, each expressed as ``reference + delta`` so that the
in-memory engine (which caches task vectors) and the streaming CLI merge (which reads checkpoints
tensor by tensor) run exactly the same arithmetic. Work is done in cache-sized chunks with
preallocated buffers: the tensors of a ~100M-parameter model are read once per candidate.

Semantics are mergekit 0.1.5's (see docs/merging.md): parameter names, defaults, TIES sign
consensus on weighted deltas with a weight divisor over agreeing inputs, L1 rescaling for DARE,
magnitude-outlier pruning for breadcrumbs, whole-tensor SLERP with a lerp fallback.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from frugalmerge.merging import kernels
from frugalmerge.merging.errors import RecipeError

# Elements per chunk: 128K float32 = 512 KiB per row (measured fastest of 2^15..2^19 on this CPU).
CHUNK = 1 << 17
_F32 = torch.float32
# Parameters become float32 coefficients in the kernels: larger magnitudes turn into Inf.
F32_MAX = float(torch.finfo(_F32).max)
# Weight sums below this are treated as zero (the normalizing divisor of every method).
ZERO_SUM = 1e-8


# ------------------------------------------------------------------------- parameter specs
@dataclass(frozen=True)
class ParamSpec:
    """A method parameter: type, scope ('shared', 'input', 'non_base'), default (``...``: required)."""

    name: str
    kind: type
    scope: str
    default: Any = ...
    lo: Optional[float] = None
    hi: Optional[float] = None

    @property
    def required(self) -> bool:
        return self.default is ...

    def validate(self, value: Any) -> Any:
        """Coerce a raw YAML scalar to this parameter's type (as pydantic does in mergekit)."""
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            raise RecipeError(f"parameter {self.name}: expected a boolean, got {value!r}")
        try:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
        except (TypeError, ValueError):
            raise RecipeError(f"parameter {self.name}: expected a number, got {value!r}") from None
        if not math.isfinite(out):
            raise RecipeError(f"parameter {self.name}: expected a finite number, got {value!r}")
        if abs(out) > F32_MAX:
            raise RecipeError(
                f"parameter {self.name}: {value!r} is outside the float32 range (|value| <= {F32_MAX:.4g})"
            )
        return out

    def check(self, value: Any, *, where: str) -> None:
        """Validate a raw value from a recipe, naming its location on failure."""
        try:
            v = self.validate(value)
        except RecipeError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if self.lo is not None and not (self.lo <= v <= self.hi):
            raise ValueError(f"{where}: {self.name} must be in [{self.lo}, {self.hi}], got {value!r}")


def _gta_params(normalize: bool, rescale: bool, gamma: bool = False) -> dict[str, ParamSpec]:
    specs = [
        ParamSpec("int8_mask", bool, "shared", False),
        ParamSpec("normalize", bool, "shared", normalize),
        ParamSpec("rescale", bool, "shared", rescale),
        ParamSpec("lambda", float, "shared", 1.0),
        ParamSpec("weight", float, "non_base"),
        ParamSpec("density", float, "non_base", 1.0, 0.0, 1.0),
    ]
    if gamma:
        specs.append(ParamSpec("gamma", float, "non_base", 0.01, 0.0, 1.0))
    return {s.name: s for s in specs}


@dataclass(frozen=True)
class MergeMethod:
    """A registered method: its function, parameter specs and input contract."""

    name: str
    fn: Callable[["TensorArgs"], None]
    params: dict[str, ParamSpec]
    base: str = "ignored"  # 'ignored' | 'required'
    min_inputs: int = 1
    max_inputs: Optional[int] = None
    deterministic: bool = True
    sparsifier: Optional[str] = None

    @property
    def shared_params(self) -> list[ParamSpec]:
        return [p for p in self.params.values() if p.scope == "shared"]

    @property
    def input_params(self) -> list[ParamSpec]:
        return [p for p in self.params.values() if p.scope != "shared"]


MERGE_METHODS: dict[str, MergeMethod] = {}


def merge_method(name: str, *, params: dict[str, ParamSpec], **contract: Any):
    """Register a method function under ``name`` (decorator)."""

    def register(fn: Callable[["TensorArgs"], None]) -> Callable[["TensorArgs"], None]:
        if name in MERGE_METHODS:
            raise RuntimeError(f"merge method {name!r} registered twice")
        MERGE_METHODS[name] = MergeMethod(name=name, fn=fn, params=params, **contract)
        return fn

    return register


def get_method(name: str) -> MergeMethod:
    """The registered method called ``name``; a clear error lists the known ones."""
    try:
        return MERGE_METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown merge_method {name!r} (known: {', '.join(sorted(MERGE_METHODS))})"
        ) from None


# ------------------------------------------------------------------------------ operands
@dataclass
class Operand:
    """One input tensor as ``ref + delta`` (flat, same length); ``delta`` None means exactly ``ref``.

    ``abs_hist`` is an optional cache of the cumulative high-16-bit histogram of ``|delta|``
    (:func:`kernels.abs_histogram`; with it TIES selects its exact thresholds inside the merging
    pass, and other magnitude thresholds cost one scan of a single bin);
    ``abs_sum`` caches ``sum(|delta|)``.
    """

    ref: torch.Tensor
    delta: Optional[torch.Tensor] = None
    abs_hist: Optional[kernels.AbsHistogram] = None
    abs_sum: Optional[float] = None
    stack: Optional[torch.Tensor] = None  # the engine's [models, numel] cache this delta is a row of
    row: int = -1


@dataclass
class TensorArgs:
    """Everything a method function needs for one output tensor."""

    name: str
    out: torch.Tensor  # flat output, written in place
    base: Optional[Operand]
    inputs: list[Operand]  # non-base inputs (base-aware methods) or all inputs
    shared: dict[str, Any]
    per_input: list[dict[str, Any]]  # aligned with ``inputs``
    seed: int = 0
    scratch: dict[str, torch.Tensor] = field(default_factory=dict)


def _buffer(args: TensorArgs, key: str, shape: tuple[int, ...], dtype=_F32) -> torch.Tensor:
    """A reusable scratch buffer (kept across tensors and candidates by the caller's dict)."""
    buf = args.scratch.get(key)
    if buf is None or buf.numel() < math.prod(shape) or buf.dtype != dtype or buf.device != args.out.device:
        buf = torch.empty(max(math.prod(shape), CHUNK), dtype=dtype, device=args.out.device)
        args.scratch[key] = buf
    return buf[: math.prod(shape)].view(shape)


def _chunks(n: int):
    for start in range(0, n, CHUNK):
        yield start, min(n, start + CHUNK)


def _dense(op: Operand, a: int, b: int, into: torch.Tensor) -> torch.Tensor:
    """``ref + delta`` on [a, b) in float32, written into ``into``."""
    if op.delta is None:
        into.copy_(op.ref[a:b])
    else:
        torch.add(op.ref[a:b], op.delta[a:b], out=into)
    return into


def _fusable(*tensors: Optional[torch.Tensor]) -> bool:
    """True when the fused CPU kernels can take these tensors (float32, contiguous, on the CPU)."""
    if not kernels.available():
        return False
    return all(
        t is None or (t.device.type == "cpu" and t.dtype == _F32 and t.is_contiguous()) for t in tensors
    )


def _rows(deltas: list[torch.Tensor], stacks: list[Optional[torch.Tensor]], rows: list[int], n: int):
    """The deltas as ``(2-D float32 array, row indices)`` for the fused kernels, zero-copy when they
    are rows of one stacked cache (the engine's and the CLI's layout), else stacked into a copy."""
    if deltas and stacks[0] is not None and all(st is stacks[0] for st in stacks) and _fusable(stacks[0]):
        st = stacks[0]
        if all(d.data_ptr() == st[r].data_ptr() for d, r in zip(deltas, rows)):
            return st.numpy(), np.asarray(rows, dtype=np.int64)
    if not deltas:
        return np.empty((0, n), dtype=np.float32), np.empty(0, dtype=np.int64)
    return np.stack([d.numpy() for d in deltas]), np.arange(len(deltas), dtype=np.int64)


def task_vectors(args: TensorArgs) -> list[Operand]:
    """Each input relative to the method's base, as an operand whose ``delta`` is the task vector.

    When the base is the cached reference of the same tensor, the cached deltas are used as they
    are (no copy); otherwise the difference is computed once for this tensor.
    """
    base = args.base
    assert base is not None
    out = []
    for op in args.inputs:
        if op.ref is base.ref and base.delta is None:
            out.append(op if op.delta is not None else Operand(op.ref, torch.zeros_like(op.ref)))
            continue
        dense = (op.ref.to(_F32) if op.delta is None else op.ref.to(_F32) + op.delta)
        base_dense = base.ref.to(_F32) if base.delta is None else base.ref.to(_F32) + base.delta
        out.append(Operand(base.ref, dense - base_dense))
    return out


# ----------------------------------------------------------------------------- linear
@merge_method(
    "linear",
    params={
        "weight": ParamSpec("weight", float, "input"),
        "normalize": ParamSpec("normalize", bool, "shared", True),
    },
)
def linear(args: TensorArgs) -> None:
    """``sum_i w_i x_i / sum_i w_i`` (no division when ``normalize`` is false)."""
    weights = [p["weight"] for p in args.per_input]
    total = sum(weights) if args.shared["normalize"] else 1.0
    if abs(total) < ZERO_SUM:
        # Dividing by ~0 gives Inf/NaN weights (mergekit writes them); name the tensor instead.
        raise RecipeError(
            f"linear: the weights {weights} of tensor {args.name} sum to {total:g} and normalize is true; "
            f"use weights with a non-zero sum or set normalize: false"
        )
    coefs = [w / total for w in weights]
    _combine(args, [(op, c) for op, c in zip(args.inputs, coefs)])


def _combine(
    args: TensorArgs,
    terms: list[tuple[Operand, float]],
    base: Optional[Operand] = None,
    delta_only: bool = False,
) -> None:
    """``out = [base] + sum_i c_i (ref_i + delta_i)`` (``delta_only``: ``sum_i c_i delta_i``), one pass.

    Terms sharing a reference tensor fold their reference coefficients together, so in the
    engine (one reference per tensor) each element of the reference is read once. When the deltas
    are exactly the rows of one stacked cache tensor, each chunk is a single ``addmv``.
    """
    ref_coef: dict[int, list] = {}
    deltas: list[tuple[Operand, float]] = []
    if base is not None:
        ref_coef[id(base.ref)] = [base.ref, 1.0]
        if base.delta is not None:
            deltas.append((base, 1.0))
    for op, c in terms:
        if not delta_only:
            ref_coef.setdefault(id(op.ref), [op.ref, 0.0])[1] += c
        if op.delta is not None and c != 0.0:
            deltas.append((op, c))
    refs = list(ref_coef.values())
    out = args.out
    n = out.numel()
    if len(refs) == 1 and _fusable(out, refs[0][0], *(op.delta for op, _ in deltas)):
        stack, rows = _rows([op.delta for op, _ in deltas], [op.stack for op, _ in deltas],
                            [op.row for op, _ in deltas], n)
        # A coefficient beyond float32 becomes Inf, as on the torch path; the writers reject the
        # non-finite output with a clear error, so numpy's overflow warning would only add noise.
        with np.errstate(over="ignore"):
            coefs = np.asarray([c for _, c in deltas], dtype=np.float32)
            ref_coef32 = np.float32(refs[0][1])
        kernels.kernel("combine")(out.numpy(), refs[0][0].numpy(), ref_coef32, stack, rows, coefs)
        return
    direct = out.dtype == _F32
    tmp = _buffer(args, "combine", (CHUNK,))
    stack, cvec = _stacked(deltas, out.device)
    for a, b in _chunks(n):
        o = out[a:b] if direct else tmp[: b - a]
        if stack is not None and len(refs) == 1:
            torch.addmv(refs[0][0][a:b], stack[:, a:b].t(), cvec, beta=refs[0][1], out=o)
        else:
            if refs:
                torch.mul(refs[0][0][a:b], refs[0][1], out=o)
            else:
                o.zero_()
            for r, c in refs[1:]:
                o.add_(r[a:b], alpha=c)
            for op, c in deltas:
                o.add_(op.delta[a:b], alpha=c)
        if not direct:
            out[a:b].copy_(o)


def _stacked(deltas: list[tuple[Operand, float]], device) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """The engine's stacked task-vector tensor and per-row coefficients, when the deltas are
    exactly its rows (each once); else ``(None, None)``."""
    if not deltas or any(op.stack is None for op, _ in deltas):
        return None, None
    stack = deltas[0][0].stack
    rows = [op.row for op, _ in deltas]
    if any(op.stack is not stack for op, _ in deltas) or sorted(rows) != list(range(stack.shape[0])):
        return None, None
    if stack.dtype != _F32:
        return None, None
    cvec = torch.zeros(stack.shape[0], dtype=_F32, device=device)
    for op, c in deltas:
        cvec[op.row] = c
    return stack, cvec


# ------------------------------------------------------------------- generalized task arithmetic
def _threshold_ranks(op: Operand, ranks: list[int]) -> list[float]:
    """The ``rank``-th smallest |delta| (0-based) for each rank, exactly, without a full sort.

    Fused CPU path: a radix select on the float bits (the cached or a fresh high-16-bit histogram,
    then one bin); elsewhere ``torch.kthvalue`` (a selection, average O(n)).
    """
    if _fusable(op.delta):
        x = op.delta.numpy()
        hist = _abs_hist(op)
        return [kernels.rank_value(x, r, hist) for r in ranks]
    ab = op.delta.abs().to(_F32)
    return [float(torch.kthvalue(ab, r + 1).values) for r in ranks]


def _abs_hist(op: Operand) -> Optional[kernels.AbsHistogram]:
    """The |delta| histogram of a fusable operand: the engine's cached one, else built now."""
    return op.abs_hist if op.abs_hist is not None else kernels.abs_histogram(op.delta.numpy())


def _magnitude_rank(n: int, density: float) -> Optional[int]:
    """Rank (0-based, ascending |delta|) of magnitude pruning's threshold: the ``k = max(1,
    int(density * n))`` largest values are kept. None keeps everything, -1 keeps nothing."""
    if density >= 1:
        return None
    if density <= 0 or n == 0:
        return -1
    return n - max(1, int(density * n))


def magnitude_bounds(op: Operand, density: float, gamma: float, outliers: bool) -> tuple[float, float] | None:
    """Magnitude window ``[lo, hi]`` of |delta| kept by magnitude / magnitude-outlier pruning.

    ``None`` keeps everything; an empty window (``lo > hi``) keeps nothing. Matches mergekit's
    selection of the ``k = max(1, int(density * n))`` largest values (ties at the threshold are
    kept together, which only matters for exactly equal magnitudes).
    """
    n = op.delta.numel()
    if density >= 1:
        return None
    if not outliers:
        rank = _magnitude_rank(n, density)
        if rank < 0:
            return (math.inf, -math.inf)
        return (_threshold_ranks(op, [rank])[0], math.inf)
    target = int(density * n)
    if target <= 0:
        return (math.inf, -math.inf)
    n_top = int(gamma * n)
    n_bot = max(0, n - target - n_top)
    lo, hi = _threshold_ranks(op, [n_bot, n_bot + target - 1])
    return (lo, hi)


def dare_key(seed: int, name: str, index: int) -> int:
    """The 32-bit key of DARE's draws for one (tensor, input): from the seed and the names, not
    from the order in which tensors are merged."""
    digest = hashlib.blake2b(f"{seed}|{name}|{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


_M32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for int64 ``x`` in [0, 2**32) without int64 overflow (16-bit halves)."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def dare_draws(a: int, b: int, key: int, device) -> torch.Tensor:
    """The 24-bit draws of elements ``a .. b-1`` under ``key`` (int64), bit for bit those of the
    fused kernel's ``dare_hash``: a counter-based hash, so any range is computed on its own."""
    x = torch.arange(a, b, dtype=torch.int64, device=device) & _M32
    x = (_mul32(x, 0x9E3779B9) + key) & _M32
    x ^= x >> 16
    x = _mul32(x, 0x7FEB352D)
    x ^= x >> 15
    x = _mul32(x, 0x846CA68B)
    x ^= x >> 16
    return x >> 8


def _gta(args: TensorArgs, *, sparsifier: Optional[str], consensus: bool) -> None:
    """Generalized task arithmetic: sparsify each task vector, weight, (sign consensus), combine.

    ``out = base + lambda * sum_i m_i w_i s_i d_i / divisor`` where ``m_i`` is the consensus mask
    (inputs whose weighted, sparsified delta has the majority sign of their sum), ``s_i`` the
    sparsification mask times the optional L1 rescale, and the divisor (``normalize``) the sum of
    weights (of agreeing inputs under consensus; zero replaced by one).
    """
    tvs = task_vectors(args)
    k = len(tvs)
    sh = args.shared
    weights = [p["weight"] for p in args.per_input]
    if k == 0:
        _combine(args, [], base=args.base)
        return
    n = args.out.numel()
    windows: list[Optional[tuple[float, float]]] = [None] * k
    scales = [1.0] * k
    base = args.base
    fused = base.delta is None and _fusable(args.out, base.ref, *(op.delta for op in tvs))
    # Fused TIES: thresholds are selected inside the merging pass (one read of memory) from the
    # |delta| histogram; L1 rescaling needs them before the pass, so it keeps the separate search.
    select: list[Optional[tuple[kernels.AbsHistogram, int]]] = [None] * k
    defer = fused and sparsifier == "magnitude" and not sh["rescale"] and n >= kernels.SMALL
    # Fused DARE: the random drop is drawn inside the merging pass (counter-based hash), no mask
    # buffers; only the L1 rescale needs a first pass (over the kept |delta|).
    dare = None
    if fused and sparsifier == "random" and any(p.get("density", 1.0) < 1 for p in args.per_input):
        dare = ([0] * k, [kernels.dare_threshold(1.0)] * k)
    for i, (op, p) in enumerate(zip(tvs, args.per_input)):
        density = p.get("density", 1.0)
        if dare is not None:
            if density < 1:
                dare[0][i], dare[1][i] = dare_key(args.seed, args.name, i), kernels.dare_threshold(density)
                if sh["rescale"]:
                    scales[i] = _l1_rescale(op, None, None, dare=(dare[0][i], density))
            continue
        if defer and density < 1:
            rank = _magnitude_rank(n, density)
            if rank >= 0:
                select[i] = (_abs_hist(op), rank)
                continue
        if sparsifier in ("magnitude", "magnitude_outliers"):
            windows[i] = magnitude_bounds(op, density, p.get("gamma", 0.0), sparsifier == "magnitude_outliers")
        elif sparsifier == "random" and density < 1:
            # torch path (CUDA, other dtypes): masked deltas are rows of one reusable buffer
            buf = _buffer(args, "dare", (k, n))
            masked = _bernoulli_masked(op.delta, density, args.seed, args.name, i, buf[i])
            tvs[i] = Operand(op.ref, masked, stack=buf, row=i)
            if sh["rescale"]:
                scales[i] = _l1_rescale(op, None, tvs[i].delta)
            continue
        if sh["rescale"] and windows[i] is not None:
            scales[i] = _l1_rescale(op, windows[i], None)
    coefs = [w * s for w, s in zip(weights, scales)]
    plain = all(win is None for win in windows) and all(sel is None for sel in select) and dare is None
    if not consensus and plain:
        # Plain task arithmetic: a linear combination, one fused pass.
        scale = (1.0 / _weight_sum(weights) if sh["normalize"] else 1.0) * sh["lambda"]
        _combine(args, [(op, c * scale) for op, c in zip(tvs, coefs)], base=args.base, delta_only=True)
        return
    if fused:
        _gta_fused(args, tvs, windows, coefs, weights, consensus, select, dare)
        return
    _gta_chunked(args, tvs, windows, coefs, weights, consensus)


def _weight_sum(weights: list[float]) -> float:
    """The normalizing divisor without consensus: the summed weights, 1 when they sum to ~0."""
    total = sum(weights)
    return 1.0 if abs(total) < ZERO_SUM else total


def _gta_fused(args, tvs, windows, coefs, weights, consensus, select, dare=None) -> None:
    """The masked / consensus path as one fused pass (:func:`kernels.gta`); ``select[i]``
    (histogram, rank) defers input i's threshold to that pass; ``dare`` (keys, thresholds) draws
    DARE's random drop in it."""
    sh = args.shared
    kernels.gta(
        args.out.numpy(), args.base.ref.numpy(), [op.delta.numpy() for op in tvs], coefs, weights,
        [0.0 if w is None else w[0] for w in windows], [math.inf if w is None else w[1] for w in windows],
        bool(consensus), bool(sh["normalize"]), _weight_sum(weights), sh["lambda"], select=select, dare=dare,
    )


def _gta_chunked(args, tvs, windows, coefs, weights, consensus) -> None:
    """The masked / consensus path, chunk by chunk with preallocated buffers.

    With ``s_i`` the weighted, sparsified deltas, ``S = sum s_i`` and ``A = sum |s_i|``:
    the sum of the inputs agreeing with the majority sign is ``(S + copysign(A, S)) / 2`` and the
    weight of agreeing inputs is ``(U + sign(S) V) / 2`` with ``U = sum w_i |sign s_i|`` and
    ``V = sum w_i sign s_i`` (two matrix-vector products). The halves cancel in the ratio, so
    TIES needs no per-input boolean masks. ``S`` is summed in input order, as mergekit does, so the
    majority sign is decided on exactly the same value.
    """
    k = len(tvs)
    sh = args.shared
    out = args.out
    n = out.numel()
    sc = _buffer(args, "gta_s", (k, CHUNK))
    ab = _buffer(args, "gta_abs", (k, CHUNK))
    s_sum = _buffer(args, "gta_S", (CHUNK,))
    a_sum = _buffer(args, "gta_A", (CHUNK,))
    dv = _buffer(args, "gta_div", (CHUNK,))
    tp = _buffer(args, "gta_tmp", (CHUNK,))
    eqb = _buffer(args, "gta_eq", (CHUNK,), torch.bool)
    ones = _buffer(args, "gta_ones", (CHUNK,))
    ones.fill_(1.0)
    ones_k = torch.ones(k, dtype=_F32, device=out.device)
    dev = out.device
    coef_col = torch.tensor(coefs, dtype=_F32, device=dev).view(k, 1)
    wvec = torch.tensor(weights, dtype=_F32, device=dev)
    static_div = _weight_sum(weights)
    lam = sh["lambda"]
    normalize = sh["normalize"]
    # hardshrink keeps |x| > lambd: the float32 just below the threshold keeps |x| >= threshold
    shrink = [None if w is None else _below(w[0]) for w in windows]
    base = args.base
    hardshrink_out = torch.ops.aten.hardshrink.out
    for a, b in _chunks(n):
        m = b - a
        s_c, ab_c = sc[:, :m], ab[:, :m]
        S, A, D, T = s_sum[:m], a_sum[:m], dv[:m], tp[:m]
        for i, op in enumerate(tvs):
            d = op.delta[a:b]
            if shrink[i] is not None:
                if shrink[i] == math.inf:
                    s_c[i].zero_()
                else:
                    hardshrink_out(d, shrink[i], out=s_c[i])
                    if windows[i][1] != math.inf:  # magnitude outliers: drop the largest too
                        torch.abs(d, out=ab_c[i])
                        torch.le(ab_c[i], windows[i][1], out=eqb[:m])
                        s_c[i].mul_(eqb[:m])
            else:
                s_c[i].copy_(d)
        s_c.mul_(coef_col)
        # S summed left to right, as mergekit's sum over the stacked deltas
        torch.add(s_c[0], s_c[1], out=S) if k > 1 else S.copy_(s_c[0])
        for i in range(2, k):
            S.add_(s_c[i])
        if consensus:
            torch.abs(s_c, out=ab_c)
            torch.mv(ab_c.t(), ones_k, out=A)
            torch.copysign(A, S, out=A)
            A.add_(S)  # twice the agreeing sum
            if normalize:
                torch.sign(s_c, out=ab_c)
                torch.mv(ab_c.t(), wvec, out=T)  # V
                ab_c.abs_()
                torch.mv(ab_c.t(), wvec, out=D)  # U
                torch.copysign(ones[:m], S, out=S)
                D.addcmul_(S, T)  # twice the agreeing weight
                torch.eq(D, 0, out=T)  # no agreeing weight: divide by 1 (here 2, as D is doubled)
                D.add_(T, alpha=2.0)
                A.div_(D)
            else:
                A.mul_(0.5)
            mixed = A
        else:
            mixed = S
            if normalize:
                mixed.div_(static_div)
        if lam != 1:
            mixed.mul_(lam)
        if base.delta is not None:
            mixed.add_(base.delta[a:b])
        if out.dtype == _F32:
            torch.add(base.ref[a:b], mixed, out=out[a:b])
        else:
            out[a:b].copy_(mixed.add_(base.ref[a:b]))


def _below(x: float) -> float:
    """The largest float32 strictly below ``x`` (``inf`` stays ``inf``: keep nothing)."""
    if x == math.inf:
        return math.inf
    t = torch.tensor(x, dtype=_F32)
    return float(torch.nextafter(t, torch.tensor(-math.inf, dtype=_F32)))


def _bernoulli_masked(
    delta: torch.Tensor, density: float, seed: int, name: str, index: int, out: torch.Tensor
) -> torch.Tensor:
    """``delta`` with each element kept with probability ``density`` (seeded per tensor and input).

    Element j is kept where its counter-based draw (:func:`dare_draws`) is below
    ``density * 2**24``: the same elements as the fused kernels keep, on any device and in any
    chunking. Written into the reusable buffer ``out``.
    """
    key = dare_key(seed, name, index)
    thr = kernels.dare_threshold(density)
    for a, b in _chunks(delta.numel()):
        keep = dare_draws(a, b, key, delta.device) < thr
        torch.mul(delta[a:b], keep, out=out[a:b])
    return out


def _l1_rescale(op: Operand, window, masked, eps: float = 1e-7, dare: Optional[tuple[int, float]] = None) -> float:
    """mergekit's L1 rescale: ``|d|_1 / |masked d|_1`` (1 when either is below ``eps``).

    The kept part is a magnitude ``window``, an explicit ``masked`` tensor, or ``dare = (key,
    density)``: the elements the fused DARE draw keeps.
    """
    before = op.abs_sum if op.abs_sum is not None else float(op.delta.abs().sum(dtype=torch.float64))
    if dare is not None:
        after = kernels.dare_abs_sum(op.delta.numpy(), dare[0], dare[1])
    elif window is not None:
        if _fusable(op.delta):
            after = float(kernels.kernel("window_abs_sum")(op.delta.numpy(), np.float32(window[0]),
                                                            np.float32(window[1])))
        else:
            ab = op.delta.abs()
            after = float(ab[(ab >= window[0]) & (ab <= window[1])].sum(dtype=torch.float64))
    else:
        after = float(masked.abs().sum(dtype=torch.float64))
    if before < eps or after < eps:
        return 1.0
    return before / after


def _register_gta(name: str, *, sparsifier, consensus, normalize, rescale, gamma=False):
    @merge_method(
        name,
        params=_gta_params(normalize, rescale, gamma),
        base="required",
        deterministic=sparsifier != "random",
        sparsifier=sparsifier,
    )
    def method(args: TensorArgs) -> None:
        _gta(args, sparsifier=sparsifier, consensus=consensus)

    method.__name__ = name
    method.__doc__ = f"mergekit's {name}: sparsifier={sparsifier}, sign consensus={consensus}."
    return method


task_arithmetic = _register_gta("task_arithmetic", sparsifier=None, consensus=False, normalize=False, rescale=False)
ties = _register_gta("ties", sparsifier="magnitude", consensus=True, normalize=True, rescale=False)
dare_ties = _register_gta("dare_ties", sparsifier="random", consensus=True, normalize=False, rescale=True)
dare_linear = _register_gta("dare_linear", sparsifier="random", consensus=False, normalize=False, rescale=True)
breadcrumbs = _register_gta(
    "breadcrumbs", sparsifier="magnitude_outliers", consensus=False, normalize=False, rescale=False, gamma=True
)
breadcrumbs_ties = _register_gta(
    "breadcrumbs_ties", sparsifier="magnitude_outliers", consensus=True, normalize=False, rescale=False, gamma=True
)


# ------------------------------------------------------------------------------- slerp
@merge_method(
    "slerp",
    params={"t": ParamSpec("t", float, "shared")},
    base="required",
    min_inputs=2,
    max_inputs=2,
)
def slerp(args: TensorArgs, dot_threshold: float = 0.9995, eps: float = 1e-8) -> None:
    """Spherical interpolation of the whole tensor from the base (t=0) to the other input (t=1).

    Nearly collinear pairs (|cos| > 0.9995) fall back to linear interpolation, as in mergekit.
    """
    t = args.shared["t"]
    v0, v1 = args.base, args.inputs[0]
    n = args.out.numel()
    x = _buffer(args, "slerp_x", (CHUNK,))
    y = _buffer(args, "slerp_y", (CHUNK,))
    na = nb = dot = 0.0
    for a, b in _chunks(n):
        xa = _dense(v0, a, b, x[: b - a])
        yb = _dense(v1, a, b, y[: b - a])
        na += float(torch.dot(xa, xa))
        nb += float(torch.dot(yb, yb))
        dot += float(torch.dot(xa, yb))
    norm_a = math.sqrt(na) if math.sqrt(na) > eps else 1.0
    norm_b = math.sqrt(nb) if math.sqrt(nb) > eps else 1.0
    cos = max(-1.0, min(1.0, dot / (norm_a * norm_b)))
    if abs(cos) > dot_threshold:
        ca, cb = 1 - t, t
    else:
        theta = math.acos(cos)
        st = math.sin(theta)
        ca, cb = math.sin((1 - t) * theta) / st, math.sin(t * theta) / st
    _combine(args, [(v0, ca), (v1, cb)])


# --------------------------------------------------------------------------- passthrough
@merge_method(
    "passthrough",
    params={"scale": ParamSpec("scale", float, "input", None)},
    max_inputs=1,
)
def passthrough(args: TensorArgs) -> None:
    """Copy the single input (optionally multiplied by ``scale``)."""
    scale = args.per_input[0].get("scale")
    _combine(args, [(args.inputs[0], 1.0 if scale is None else scale)])

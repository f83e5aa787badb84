"""Process-wide runtime settings shared by the CLI, tests and benchmarks."""

from __future__ import annotations

import os

# Tiny models on small CPUs are dominated by thread synchronisation: with 2 threads they run
# 8-40x slower than with 1 on the 2-core machines this project is developed on.
SMALL_MACHINE_CORES = 4


def default_num_threads() -> int:
    """Threads torch should use: ``FRUGALMERGE_THREADS`` if set, 1 on small machines, else up to 8."""
    env = os.environ.get("FRUGALMERGE_THREADS")
    if env:
        value = int(env)
        if value < 1:
            raise ValueError(f"FRUGALMERGE_THREADS must be >= 1, got {env!r}")
        return value
    cores = os.cpu_count() or 1
    return 1 if cores <= SMALL_MACHINE_CORES else min(cores, 8)


def configure_torch_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op thread count (and inter-op to 1) and return the value used.

    The OpenMP/BLAS pools of the other native libraries (scikit-learn's gradient boosting,
    numpy's BLAS) get the same cap: on the 2-core machines their default of one thread per core
    made the estimator fits 2-3x slower. ``OMP_NUM_THREADS`` is set (unless the user set it) for
    runtimes loaded later, and threadpoolctl caps the ones already loaded.
    """
    import torch

    n = num_threads or default_num_threads()
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        # Inter-op threads can only be set once, before any parallel work; later calls are no-ops.
        pass
    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # a scikit-learn dependency; without it there is no pool to cap
        return n
    threadpool_limits(limits=n)
    return n

"""Package-level behaviour: import is cheap, the CLI assembles, thread policy."""

from __future__ import annotations

import subprocess
import sys


def test_import_does_no_heavy_work():
    code = "import sys, frugalmerge, frugalmerge.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_thread_policy(monkeypatch):
    from frugalmerge import runtime

    monkeypatch.setenv("FRUGALMERGE_THREADS", "3")
    assert runtime.default_num_threads() == 3
    monkeypatch.delenv("FRUGALMERGE_THREADS")
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 2)
    assert runtime.default_num_threads() == 1
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 32)
    assert runtime.default_num_threads() == 8


def test_thread_cap_reaches_openmp_and_blas_pools():
    """conftest configured 1 thread: scikit-learn's OpenMP and numpy's BLAS pools follow torch."""
    import sklearn.ensemble  # noqa: F401  (loads scikit-learn's OpenMP runtime)
    from threadpoolctl import threadpool_info

    from frugalmerge.runtime import configure_torch_threads

    configure_torch_threads(1)
    pools = threadpool_info()
    assert pools and all(p["num_threads"] == 1 for p in pools)

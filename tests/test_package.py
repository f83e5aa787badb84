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

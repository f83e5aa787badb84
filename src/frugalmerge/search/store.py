"""Run-directory files: atomic writes, the append-only candidate log and the checkpoint.

Checkpoint (``checkpoint.pkl``, dill) = optimiser state, every random state (numpy global, python,
torch), the evaluation cache, the fitted estimators, the generation, items evaluated, the history
and how many log lines belong to it. It is replaced atomically after every generation; ``--resume``
truncates the log back to that many lines (a run killed mid-generation appended a few more) and
continues from there.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

from frugalmerge._atomic import atomic_write_bytes, atomic_write_text
from frugalmerge.search.errors import ResumeError

CHECKPOINT = "checkpoint.pkl"
LOG = "candidates.jsonl"
CONFIG = "config.yaml"
CHECKPOINT_VERSION = 1
#: What a resumed run reads from a checkpoint (besides the version).
CHECKPOINT_KEYS = ("optimizer", "cache", "generation", "items", "calibration_items", "history", "log_lines",
                   "fitness", "rng")


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def capture_rng() -> dict[str, Any]:
    """Every process-wide random state the search touches (numpy global, python, torch if loaded)."""
    state: dict[str, Any] = {"numpy": np.random.get_state(), "python": random.getstate()}
    if "torch" in sys.modules:
        import torch

        state["torch"] = torch.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "torch" in state:
        import torch

        torch.set_rng_state(state["torch"])


class CandidateLog:
    """Append-only jsonl, one line per evaluated candidate, flushed (and fsynced) per line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        if path.exists():
            self.lines = sum(1 for _ in path.open("rb"))

    def truncate(self, n_lines: int) -> None:
        """Keep the first ``n_lines`` lines (atomically): drop what a killed generation appended."""
        if not self.path.exists():
            if n_lines:
                raise ResumeError(f"{self.path} is missing but the checkpoint expects {n_lines} lines")
            return
        kept = self.path.read_bytes().splitlines(keepends=True)
        if len(kept) < n_lines:
            raise ResumeError(f"{self.path} has {len(kept)} lines, the checkpoint expects {n_lines}")
        atomic_write_bytes(self.path, b"".join(kept[:n_lines]))
        self.lines = n_lines

    def append(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.lines += 1


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every record of a candidate log."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Replace the checkpoint atomically (dill: pymoo algorithms hold lambdas)."""
    import dill

    atomic_write_bytes(run_dir / CHECKPOINT, dill.dumps({"version": CHECKPOINT_VERSION, **state}))


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The checkpoint of ``run_dir``; :class:`ResumeError` when absent or unreadable."""
    import dill

    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise ResumeError(f"cannot resume: no checkpoint at {path}")
    try:
        state = dill.loads(path.read_bytes())
    except Exception as exc:  # unpickling can fail in many ways; one line names the file
        raise ResumeError(f"cannot resume: checkpoint {path} is unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise ResumeError(f"cannot resume: checkpoint {path} holds a {type(state).__name__}, not a search state")
    if state.get("version") != CHECKPOINT_VERSION:
        raise ResumeError(f"cannot resume: checkpoint {path} has version {state.get('version')}, "
                          f"expected {CHECKPOINT_VERSION}")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise ResumeError(f"cannot resume: checkpoint {path} lacks {missing[0]!r}")
    return state

"""Helpers shared by the merging tests (importable: pytest puts ``tests/`` on the path)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from frugalmerge.zoo.tiny import extend_word_vocab

EMB, HEAD = "model.embed_tokens.weight", "lm_head.weight"


def tensors(d: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a model directory's safetensors files (shards included)."""
    out = {}
    for f in sorted(Path(d).glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def with_extra_words(src: Path, dst: Path, words: dict[str, float]) -> Path:
    """A copy of ``src`` whose word-level vocabulary gains ``words`` (regular tokens) with constant rows."""
    return extend_word_vocab(src, dst, words)

"""Helpers shared by the merging tests (importable: pytest puts ``tests/`` on the path)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

EMB, HEAD = "model.embed_tokens.weight", "lm_head.weight"


def tensors(d: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a model directory's safetensors files (shards included)."""
    out = {}
    for f in sorted(Path(d).glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def with_extra_words(src: Path, dst: Path, words: dict[str, float]) -> Path:
    """A copy of ``src`` whose word-level vocabulary gains ``words`` (regular tokens) with constant rows."""
    shutil.copytree(src, dst)
    tj = json.loads((dst / "tokenizer.json").read_text())
    vocab = tj["model"]["vocab"]
    sd = tensors(dst)
    for word, value in words.items():
        vocab[word] = len(vocab)
        for name in (EMB, HEAD):
            sd[name] = torch.cat([sd[name], torch.full((1, sd[name].shape[1]), value)])
    (dst / "tokenizer.json").write_text(json.dumps(tj))
    save_file(sd, str(dst / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((dst / "config.json").read_text())
    cfg["vocab_size"] = len(vocab)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst

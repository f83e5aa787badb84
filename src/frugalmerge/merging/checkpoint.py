"""Lazy reading of Hugging Face checkpoints (single / sharded safetensors, ``.bin``).

Safetensors files are memory-mapped and read tensor by tensor; ``.bin`` files are opened with
``torch.load(weights_only=True, mmap=True)``. Nothing is read until a tensor is asked for, so a
model larger than RAM can be merged tensor by tensor.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

from frugalmerge.merging.errors import CheckpointError, IncompatibleModelsError

LAYER_RE = re.compile(r"^(.*?\.(?:layers|h|blocks)\.)(\d+)(\..+)$")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
)


class Checkpoint:
    """A Hugging Face model directory, read lazily."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise CheckpointError(f"model path not found: {path}")
        config_file = self.path / "config.json"
        if not config_file.is_file():
            raise CheckpointError(f"{path}: no config.json (not a Hugging Face model directory)")
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{config_file}: invalid JSON ({exc.msg})") from None
        except UnicodeDecodeError:
            raise CheckpointError(f"{config_file}: not UTF-8 text") from None
        # Every metadata property calls config.get: anything but an object would fail there.
        if not isinstance(config, dict):
            raise CheckpointError(f"{config_file}: expected a JSON object, got {type(config).__name__}")
        self.config: dict[str, Any] = config
        self._handles: dict[str, Any] = {}
        self.index: dict[str, str] = self._build_index()

    # ------------------------------------------------------------------ index
    def _build_index(self) -> dict[str, str]:
        p = self.path
        for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
            index_file = p / index_name
            if index_file.is_file():
                try:
                    weight_map = json.loads(index_file.read_text(encoding="utf-8"))["weight_map"]
                except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
                    raise CheckpointError(f"{index_file}: invalid index ({type(exc).__name__}: {exc})") from None
                # Names and shard files are used as dict keys and path parts: anything else is corrupt.
                if not isinstance(weight_map, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
                ):
                    raise CheckpointError(
                        f"{index_file}: invalid index (weight_map must map tensor names to shard file names)"
                    )
                for shard in set(weight_map.values()):
                    if not (p / shard).is_file():
                        raise CheckpointError(f"{index_file}: shard {shard} is missing")
                return dict(weight_map)
        files = sorted(p.glob("*.safetensors")) or sorted(p.glob("*.bin"))
        files = [f for f in files if f.name != "training_args.bin"]
        if not files:
            raise CheckpointError(f"{p}: no *.safetensors or *.bin weight files")
        index: dict[str, str] = {}
        for f in files:
            for name in self._keys_of(f.name):
                index[name] = f.name
        return index

    def _open(self, filename: str):
        handle = self._handles.get(filename)
        if handle is not None:
            return handle
        path = self.path / filename
        if filename.endswith(".safetensors"):
            from safetensors import safe_open

            try:
                handle = safe_open(str(path), framework="pt", device="cpu")
            except Exception as exc:  # safetensors raises its own error types for corrupt headers
                raise CheckpointError(f"{path}: corrupt safetensors file ({exc})") from None
        else:
            import torch

            try:
                handle = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            except Exception as exc:
                raise CheckpointError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
            if not isinstance(handle, dict):
                raise CheckpointError(f"{path}: expected a state dict, got {type(handle).__name__}")
        self._handles[filename] = handle
        return handle

    def _keys_of(self, filename: str) -> list[str]:
        handle = self._open(filename)
        return list(handle.keys())

    # ---------------------------------------------------------------- access
    @property
    def names(self) -> list[str]:
        return list(self.index)

    def has(self, name: str) -> bool:
        return name in self.index

    def shape(self, name: str) -> tuple[int, ...]:
        handle = self._open(self.index[name])
        if hasattr(handle, "get_slice"):
            return tuple(handle.get_slice(name).get_shape())
        return tuple(handle[name].shape)

    @cached_property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: self.shape(n) for n in self.index}

    def is_float(self, name: str) -> bool:
        """Whether tensor ``name`` is stored as floating point, read from the header when possible."""
        handle = self._open(self.index[name])
        if hasattr(handle, "get_slice"):
            # safetensors dtype codes: F8_E4M3, F16, BF16, F32, F64 ... vs I*, U*, BOOL
            return handle.get_slice(name).get_dtype().startswith(("F", "BF"))
        return bool(handle[name].is_floating_point())

    def stored_float_dtype(self) -> Optional[str]:
        """The dtype name (float32, bfloat16, float16, float64) of the first floating tensor as
        stored, None if it is none of these (e.g. float8) or there is no floating tensor."""
        # safetensors header codes and torch dtype names, to one name
        names = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64",
                 "torch.float32": "float32", "torch.bfloat16": "bfloat16", "torch.float16": "float16",
                 "torch.float64": "float64"}
        for name in self.index:
            if self.is_float(name):
                handle = self._open(self.index[name])
                code = handle.get_slice(name).get_dtype() if hasattr(handle, "get_slice") else str(handle[name].dtype)
                return names.get(code)
        return None

    def get(self, name: str, *, check_finite: bool = True):
        """One tensor (memory-mapped for safetensors); non-finite values raise ``CheckpointError``."""
        if name not in self.index:
            raise CheckpointError(f"{self.path}: tensor {name} is missing")
        filename = self.index[name]
        handle = self._open(filename)
        try:
            tensor = handle.get_tensor(name) if hasattr(handle, "get_tensor") else handle[name]
        except Exception as exc:
            raise CheckpointError(f"{self.path / filename}: cannot read tensor {name} ({exc})") from None
        if check_finite and tensor.is_floating_point() and not _all_finite(tensor):
            raise CheckpointError(f"{self.path}: tensor {name} contains NaN or Inf values")
        return tensor

    # ------------------------------------------------------------- metadata
    @property
    def architecture(self) -> str:
        archs = self.config.get("architectures") or [self.config.get("model_type", "?")]
        return str(archs[0])

    @property
    def tied_embeddings(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", False)) or (
            not self.has("lm_head.weight") and self.has(EMBED)
        )

    @property
    def num_layers(self) -> int:
        value = self.config.get("num_hidden_layers") or self.config.get("n_layer")
        if value is None:
            idx = [int(m.group(2)) for n in self.index if (m := LAYER_RE.match(n))]
            value = max(idx) + 1 if idx else 0
        try:
            if isinstance(value, bool):  # int(True) would pass as one layer
                raise TypeError
            layers = int(value)
        except (TypeError, ValueError):
            raise CheckpointError(
                f"{self.path / 'config.json'}: num_hidden_layers must be an integer, got {value!r}"
            ) from None
        if layers < 0:
            raise CheckpointError(f"{self.path / 'config.json'}: num_hidden_layers must be >= 0, got {value!r}")
        return layers

    def vocab(self) -> Optional[dict[str, int]]:
        """The tokenizer's vocabulary (token -> id), or None without tokenizer files."""
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(self.path))
        except (OSError, ValueError):
            return None
        return tok.get_vocab()


def _all_finite(tensor) -> bool:
    """No NaN or Inf in a floating-point tensor.

    float8 tensors have no ``isfinite`` kernel: they are checked on a float32 copy (one tensor at
    a time) and then merged like any other float input, as mergekit upcasts them to its ``dtype``.
    """
    import torch

    try:
        return bool(torch.isfinite(tensor).all())
    except NotImplementedError:
        return bool(torch.isfinite(tensor.to(torch.float32)).all())


EMBED = "model.embed_tokens.weight"
LM_HEAD = "lm_head.weight"
# Tensors indexed by token along axis 0 (mergekit's vocabulary_axis for Llama-style models).
VOCAB_TENSORS = (EMBED, LM_HEAD)


def resolve_name(ckpt: Checkpoint, name: str) -> Optional[str]:
    """The tensor actually stored for ``name``: itself, or the tied embedding for ``lm_head``."""
    if ckpt.has(name):
        return name
    if name == LM_HEAD and ckpt.has(EMBED):
        return EMBED
    return None


def check_compatible(ckpts: dict[str, Checkpoint], *, allow_vocab_mismatch: bool = False) -> None:
    """Same architecture, layer count, tensor names and shapes; the first mismatch is named.

    ``lm_head.weight`` may be absent from models with tied embeddings. With
    ``allow_vocab_mismatch`` (a ``tokenizer_source`` is set), vocabulary-sized tensors may differ
    along the token axis only.
    """
    items = list(ckpts.items())
    ref_key, ref = items[0]
    for key, ck in items[1:]:
        if ck.architecture != ref.architecture:
            raise IncompatibleModelsError(
                f"architecture mismatch: {ref_key} is {ref.architecture}, {key} is {ck.architecture}"
            )
        if ck.num_layers != ref.num_layers:
            raise IncompatibleModelsError(
                f"layer count mismatch: {ref_key} has {ref.num_layers}, {key} has {ck.num_layers}"
            )
        names = set(ref.names) - {LM_HEAD}
        other = set(ck.names) - {LM_HEAD}
        if names != other:
            missing = sorted(names - other)
            if missing:
                raise IncompatibleModelsError(f"tensor {missing[0]} is missing from {key}")
            raise IncompatibleModelsError(f"tensor {sorted(other - names)[0]} is missing from {ref_key}")
        for name in ref.names:
            stored = resolve_name(ck, name)
            if stored is None:
                continue
            a, b = ref.shapes[name], ck.shapes[stored]
            if a != b and not (allow_vocab_mismatch and name in VOCAB_TENSORS and a[1:] == b[1:]):
                # only the token axis differs: a vocabulary mismatch, which tokenizer_source resolves
                vocab = name in VOCAB_TENSORS and a[1:] == b[1:]
                hint = " (vocabularies differ: set tokenizer_source: base)" if vocab else ""
                raise IncompatibleModelsError(
                    f"shape mismatch for {name}: {list(a)} in {ref_key} vs {list(b)} in {key}{hint}"
                )
            # A float tensor would be copied from the reference or cast from integers: never a merge.
            fa, fb = ref.is_float(name), ck.is_float(stored)
            if fa != fb:
                kind = {True: "floating-point", False: "integer/bool"}
                raise IncompatibleModelsError(
                    f"dtype mismatch for {name}: {kind[fa]} in {ref_key} vs {kind[fb]} in {key}"
                )

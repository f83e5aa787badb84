"""The one code path for merge arithmetic, and the streaming (tensor-by-tensor, to disk) merge.

Both :func:`run_merge` (CLI) and :class:`~frugalmerge.merging.engine.MergeEngine` express every
input tensor as ``reference + delta`` (reference: the recipe's base model, else the first model)
and call :func:`merge_job`, which dispatches to the registered method function.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from frugalmerge._atomic import OutputInUseError, atomic_dir
from frugalmerge.merging.checkpoint import (
    LM_HEAD,
    TOKENIZER_FILES,
    VOCAB_TENSORS,
    Checkpoint,
    check_compatible,
    resolve_name,
)
from frugalmerge.merging.errors import CheckpointError, DeviceMemoryError, MergeError, RecipeError
from frugalmerge.merging.methods import Operand, TensorArgs, get_method
from frugalmerge.merging.plan import MergePlan, TensorJob, build_plan
from frugalmerge.merging.recipe import MergeRecipe

DEFAULT_SHARD_BYTES = 2 * 1024**3


def torch_dtype(name: Optional[str]):
    """``"bfloat16"`` -> ``torch.bfloat16`` (None stays None)."""
    import torch

    if name is None:
        return None
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}
    if name not in table:
        raise RecipeError(f"unknown dtype {name!r} (use one of {', '.join(table)})")
    return table[name]


def merge_job(plan: MergePlan, job: TensorJob, operands: list[Operand], out, *, seed: int, scratch: dict) -> None:
    """Merge one output tensor from its operands (aligned with ``job.sources``) into flat ``out``."""
    method = plan.method
    if job.base_index is None:
        base, inputs, per_input = None, operands, list(job.per_input)
    else:
        bi = job.base_index
        base = operands[bi]
        inputs = [op for i, op in enumerate(operands) if i != bi]
        per_input = [p for i, p in enumerate(job.per_input) if i != bi]
    method.fn(TensorArgs(job.out_name, out, base, inputs, job.shared, per_input, seed, scratch))


def open_checkpoints(recipe: MergeRecipe, extra: tuple[str, ...] = ()) -> dict[str, Checkpoint]:
    """Open (lazily) every model the recipe refers to and check they can be merged."""
    ckpts: dict[str, Checkpoint] = {}
    for key in (*recipe.referenced_models(), *extra):
        if key not in ckpts:
            ckpts[key] = Checkpoint(key)
    check_compatible(ckpts, allow_vocab_mismatch=recipe.tokenizer_source is not None)
    return ckpts


def reference_model(recipe: MergeRecipe) -> str:
    """The model every delta is taken against: the base model, else the first model."""
    return recipe.base_model or recipe.referenced_models()[0]


# ---------------------------------------------------------------------------- vocabulary
class VocabAligner:
    """Permutes vocabulary-axis tensors of models with other tokenizers onto one target vocabulary.

    mergekit's rule for a token missing from some inputs: the embedding of the only model that has
    it, else the base model's, else the mean over the models that have it (zeros if none).
    """

    def __init__(
        self, ckpts: dict[str, Checkpoint], target: str, base: Optional[str],
        target_vocab: Optional[dict[str, int]] = None, tokenizer: Any = None,
    ):
        #: The output tokenizer when it is not a copy of one model's (``tokenizer_source: union``).
        self.tokenizer = tokenizer
        self.vocabs = {}
        for key, ck in ckpts.items():
            vocab = ck.vocab()
            if vocab is None:
                raise CheckpointError(f"{key}: tokenizer_source needs tokenizer files in every model")
            self.vocabs[key] = vocab
        self.target = target_vocab if target_vocab is not None else self.vocabs[target]
        self.base = base
        self.identity = {k: v == self.target for k, v in self.vocabs.items()}

    def align(self, tensors: dict[str, Any]) -> dict[str, Any]:
        """Each model's vocabulary-axis tensor on the target vocabulary, missing rows filled."""
        if all(self.identity[k] and t.shape[0] == len(self.target) for k, t in tensors.items()):
            return tensors
        gathered, present = {}, {}
        for k, t in tensors.items():
            gathered[k], present[k] = self.gather(k, t)
        return self.fill(gathered, present, base=self.base)

    def gather(self, key: str, tensor: Any) -> tuple[Any, Any]:
        """``tensor``'s rows moved to their target ids (zeros where ``key`` lacks the token), and
        the boolean mask of the target ids it has."""
        import torch

        n = len(self.target)
        idx = torch.full((n,), -1, dtype=torch.long)
        vocab = self.vocabs[key]
        rows = tensor.shape[0]
        for tok, tid in self.target.items():
            src = vocab.get(tok, -1)
            if 0 <= src < rows:
                idx[tid] = src
        ok = idx >= 0
        out = torch.zeros((n, *tensor.shape[1:]), dtype=tensor.dtype)
        out[ok] = tensor[idx[ok]]
        return out, ok

    def fill(self, gathered: dict[str, Any], present: dict[str, Any], base: Optional[str]) -> dict[str, Any]:
        """Fill each model's missing rows by mergekit's rule over the models given here, ``base``
        being the recipe's base model (None without one)."""
        import torch

        keys = list(gathered)
        has = torch.stack([present[k] for k in keys])  # models x tokens
        missing = torch.nonzero(~has.all(0)).flatten().tolist()
        if not missing:
            return gathered
        out = {k: gathered[k].clone() for k in keys}
        for tid in missing:
            holders = [k for j, k in enumerate(keys) if has[j, tid]]
            if len(holders) == 1:
                row = gathered[holders[0]][tid].float()
            elif base in holders:
                row = gathered[base][tid].float()
            elif holders:
                row = sum(gathered[k][tid].float() for k in holders) / len(holders)
            else:
                row = torch.zeros_like(gathered[keys[0]][tid], dtype=torch.float32)
            for j, k in enumerate(keys):
                if not has[j, tid]:
                    out[k][tid] = row.to(out[k].dtype)
        return out


# ----------------------------------------------------------------------------- streaming
class ShardWriter:
    """Collects tensors and writes safetensors shards of at most ``max_bytes`` (plus index)."""

    def __init__(self, directory: Path, max_bytes: int = DEFAULT_SHARD_BYTES):
        self.dir = directory
        self.max_bytes = max_bytes
        self.pending: dict[str, Any] = {}
        self.pending_bytes = 0
        self.shards: list[tuple[str, list[str]]] = []
        self.total = 0

    def add(self, name: str, tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.max_bytes:
            self.flush()
        self.pending[name] = tensor.contiguous()
        self.pending_bytes += size
        self.total += size

    def flush(self) -> None:
        from safetensors.torch import save_file

        if not self.pending:
            return
        fname = f"shard-{len(self.shards):05d}.safetensors"
        save_file(self.pending, str(self.dir / fname), metadata={"format": "pt"})
        self.shards.append((fname, list(self.pending)))
        self.pending, self.pending_bytes = {}, 0

    def close(self) -> None:
        self.flush()
        n = len(self.shards)
        if n == 1:
            os.replace(self.dir / self.shards[0][0], self.dir / "model.safetensors")
            return
        weight_map = {}
        for i, (fname, names) in enumerate(self.shards, start=1):
            final = f"model-{i:05d}-of-{n:05d}.safetensors"
            os.replace(self.dir / fname, self.dir / final)
            weight_map.update({name: final for name in names})
        index = {"metadata": {"total_size": self.total}, "weight_map": weight_map}
        (self.dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def unmatched_filters(recipe: MergeRecipe, ref: Checkpoint) -> list[str]:
    """The recipe's filters that are a substring of no tensor name of ``ref``: they apply nowhere
    (mergekit skips them without a word, so a typo such as ``self_atn`` merges with the fallback
    value). Reported, not refused: a recipe for several architectures names others' tensors."""
    names = ref.names
    return [f for f in recipe.filters() if not any(f in name for name in names)]


def output_dtype_name(recipe: MergeRecipe, override: Optional[str], ref: Checkpoint) -> str:
    """CLI ``--dtype`` > recipe ``out_dtype`` > recipe ``dtype`` > the reference model's dtype
    (its config.json's, else the dtype its weights are stored in, else float32). A config that
    says nothing, or ``auto``, no longer turns a bfloat16 model into a float32 merge twice its size."""
    name = override or recipe.out_dtype or recipe.dtype
    if name is None:
        name = str(ref.config.get("dtype") or ref.config.get("torch_dtype") or "")
    if name not in ("float32", "bfloat16", "float16", "float64"):
        name = ref.stored_float_dtype() or "float32"
    return name


def recorded_recipe(recipe: MergeRecipe, override: Optional[str], seed: Optional[int] = None) -> MergeRecipe:
    """The recipe as it was run: a ``--dtype`` override (inputs and output in that dtype) becomes
    its ``dtype``, and an ``out_dtype`` it overrode is dropped, so re-running the written YAML
    (frugalmerge or mergekit) gives the same output dtype. A random method (DARE) records the
    seed it used as ``random_seed`` (a ``--seed`` overrides the recipe's; without either it is 0),
    so re-running the YAML with frugalmerge gives the same weights."""
    as_given = recipe.to_dict()
    data = dict(as_given)
    if override is not None and not (recipe.dtype == override and recipe.out_dtype in (None, override)):
        data.update(dtype=override, out_dtype=None)
    if seed is not None and not get_method(recipe.merge_method).deterministic:
        data["random_seed"] = seed
    return recipe if data == as_given else MergeRecipe.parse({k: v for k, v in data.items() if v is not None})


def check_output_path(out_dir: str | Path, recipe: MergeRecipe, extra: tuple[str, ...] = ()) -> None:
    """Refuse an output directory that is, is inside or contains an input model (the recipe's, and
    ``extra`` ones): replacing it would destroy the inputs, and the output check of
    :func:`atomic_dir` accepts any folder holding a config.json."""
    out = Path(out_dir).resolve()
    refs = [*recipe.referenced_models(), *extra]
    if recipe.tokenizer_source not in (None, "base", "union"):
        refs.append(recipe.tokenizer_source)
    for ref in refs:
        model = Path(ref).resolve()
        if out == model or model in out.parents:
            where = "is" if out == model else "is inside"
            raise MergeError(f"output directory {out_dir} {where} the input model {ref}; choose another --out")
        if out in model.parents:
            raise MergeError(f"output directory {out_dir} contains the input model {ref}; choose another --out")


def checked_output(name: str, tensor):
    """``tensor`` (a merged output, in the output dtype) after one finiteness check: Inf/NaN come
    from huge parameters or from values beyond the output dtype's range (float16: 65504)."""
    import torch

    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise MergeError(
            f"merged tensor {name} has NaN or Inf values in {str(tensor.dtype).removeprefix('torch.')} "
            f"(parameters too large, or values beyond the output dtype's range); nothing was written"
        )
    return tensor


def write_metadata(
    tmp: Path, recipe: MergeRecipe, ckpts: dict[str, Checkpoint], plan: MergePlan, dtype_name: str,
    vocab_size: Optional[int] = None, tokenizer: Any = None, dtype_override: Optional[str] = None,
    seed: Optional[int] = None,
) -> None:
    """config.json, tokenizer files, the mergekit YAML and a model card into ``tmp``.

    ``dtype_override`` (``--dtype``) and the ``seed`` used are recorded in the YAML
    (:func:`recorded_recipe`).
    """
    ref = ckpts[reference_model(recipe)]
    config = dict(ref.config)
    config["num_hidden_layers"] = plan.num_layers
    config["dtype"] = dtype_name
    config.pop("torch_dtype", None)
    if vocab_size is not None:
        config["vocab_size"] = vocab_size
    if not any(j.out_name == LM_HEAD for j in plan.jobs):
        config["tie_word_embeddings"] = True
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    tok_src = recipe.tokenizer_source
    tok_model = recipe.base_model if tok_src in (None, "base", "union") else tok_src
    tok_model = tok_model or reference_model(recipe)
    src_dir = ckpts[tok_model].path if tok_model in ckpts else Path(tok_model)
    for fname in (*TOKENIZER_FILES, "generation_config.json"):
        if tokenizer is not None and fname != "generation_config.json":
            continue
        if (src_dir / fname).is_file():
            shutil.copy2(src_dir / fname, tmp / fname)
    if tokenizer is not None:  # built for this merge (union): written, not copied
        tokenizer.save_pretrained(str(tmp))
    recorded = recorded_recipe(recipe, dtype_override, seed)
    yaml_text = recorded.to_yaml()
    (tmp / "mergekit_config.yml").write_text(yaml_text, encoding="utf-8")
    (tmp / "README.md").write_text(model_card(recorded, yaml_text), encoding="utf-8")


def model_card(recipe: MergeRecipe, yaml_text: str) -> str:
    """A short Hugging Face model card describing the merge."""
    models = "\n".join(f"- `{m}`" for m in recipe.referenced_models())
    base = f"`{recipe.base_model}`" if recipe.base_model else "none"
    return (
        "---\ntags:\n- merge\n- frugalmerge\n- mergekit\n---\n"
        f"# Merged model\n\nMerged with [frugalmerge](https://github.com/) using the "
        f"**{recipe.merge_method}** method (mergekit 0.1.5 semantics).\n\n"
        f"Base model: {base}\n\nModels merged:\n{models}\n\n"
        f"## Configuration\n\nThe recipe (mergekit YAML):\n\n```yaml\n{yaml_text}```\n"
    )


def read_tensor(ck: Checkpoint, name: str):
    """``name`` from a checkpoint; a missing ``lm_head.weight`` is the tied embedding."""
    stored = resolve_name(ck, name)
    if stored is None:
        raise CheckpointError(f"{ck.path}: tensor {name} is missing")
    return ck.get(stored)


def _load_operands(
    job: TensorJob, ckpts: dict[str, Checkpoint], ref_key: str, in_dtype, aligner: Optional[VocabAligner]
) -> tuple[list[Operand], bool]:
    """Inputs of one job as ``reference + delta`` (float32), read from disk."""
    import torch

    raw = {}
    keys = [m for m, _ in job.sources]
    for model, name in job.sources:
        raw[model] = read_tensor(ckpts[model], name)
    ref_name = job.sources[0][1] if ref_key not in keys else dict(job.sources)[ref_key]
    ref_raw = raw[ref_key] if ref_key in raw else read_tensor(ckpts[ref_key], ref_name)
    if not ref_raw.is_floating_point():
        return [Operand(raw[keys[0]].reshape(-1))], False
    if aligner is not None and job.out_name in VOCAB_TENSORS:
        aligned = aligner.align({**raw, **({ref_key: ref_raw} if ref_key not in raw else {})})
        raw = {k: aligned[k] for k in raw}
        ref_raw = aligned[ref_key]

    def prep(t):
        if in_dtype is not None:
            t = t.to(in_dtype)
        return t.to(torch.float32).reshape(-1)

    ref = prep(ref_raw)
    others = [model for model, _ in job.sources if model != ref_key]
    # Deltas stacked as the engine caches them, so both run the same kernels (bit-identical).
    stack = torch.empty((len(others), ref.numel()), dtype=torch.float32)
    for row, model in enumerate(others):
        torch.sub(prep(raw[model]), ref, out=stack[row])
    ops = []
    for model, _ in job.sources:
        if model == ref_key:
            ops.append(Operand(ref))
        else:
            row = others.index(model)
            ops.append(Operand(ref, stack[row], stack=stack, row=row))
    return ops, True


@dataclass
class DeviceUsage:
    """What the streaming merge kept resident on the device: its plan and the peak it reached.

    A *batch* is a run of consecutive tensors whose operands (reference, stacked deltas) and
    outputs fit together within the budget; they are moved to the device, merged, written and
    freed before the next batch is loaded. Without a budget every tensor is its own batch.
    """

    budget: Optional[int]
    batches: list[list[str]] = field(default_factory=list)
    batch_bytes: list[int] = field(default_factory=list)

    @property
    def peak_bytes(self) -> int:
        """Largest number of operand + output bytes resident on the device at once."""
        return max(self.batch_bytes, default=0)

    def describe(self) -> str:
        """One line for the CLI: tensors, batches, peak and budget."""
        tensors = sum(len(b) for b in self.batches)
        budget = "none" if self.budget is None else _fmt_bytes(self.budget)
        return (f"device plan: {tensors} tensors in {len(self.batches)} batches, "
                f"peak {_fmt_bytes(self.peak_bytes)} of budget {budget}")


def _fmt_bytes(n: int) -> str:
    for unit, mult in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= mult:
            return f"{n / mult:.2f} {unit}"
    return f"{n} B"


def job_device_bytes(operands: list[Operand]) -> int:
    """Bytes one job keeps on the device: its distinct operand tensors plus the float32 output."""
    seen: dict[int, int] = {}
    for op in operands:
        for t in (op.ref, op.stack if op.stack is not None else op.delta):
            if t is not None:
                seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values()) + operands[0].ref.numel() * 4


def run_merge(
    recipe: MergeRecipe,
    out_dir: str | Path,
    *,
    device: str = "cpu",
    dtype: Optional[str] = None,
    seed: Optional[int] = None,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    max_device_memory: Optional[int] = None,
    progress: bool = True,
    usage: Optional[DeviceUsage] = None,
    warn: Optional[Callable[[str], None]] = None,
) -> Path:
    """Merge ``recipe`` tensor by tensor from disk into a Hugging Face directory at ``out_dir``.

    Peak memory is one output shard plus the inputs of one batch of tensors, so models larger
    than RAM can be merged. ``max_device_memory`` (bytes) caps the operands and outputs resident
    on ``device`` at a time: consecutive tensors are grouped into batches that fit (load, merge,
    write, free); a single tensor that cannot fit raises :class:`DeviceMemoryError`. Results do
    not depend on the budget (each tensor is merged by the same kernels in the same order).
    Pass a :class:`DeviceUsage` as ``usage`` to get the plan that was used, and ``warn`` to hear
    about recipe filters that match no tensor of the reference model. The directory is
    written under a temporary name and renamed into place.
    """
    import torch

    if max_device_memory is not None and max_device_memory <= 0:
        raise DeviceMemoryError(f"--max-device-memory must be positive, got {max_device_memory} bytes")
    from frugalmerge.merging.engine import checked_device

    dev = checked_device(device)
    check_output_path(out_dir, recipe)
    ckpts = open_checkpoints(recipe)
    plan = build_plan(recipe, ckpts)
    ref_key = reference_model(recipe)
    if warn is not None:
        for f in unmatched_filters(recipe, ckpts[ref_key]):
            warn(f"filter {f!r} matches no tensor of {ref_key}: its values apply to no tensor")
    dtype_name = output_dtype_name(recipe, dtype, ckpts[ref_key])
    out_dtype = torch_dtype(dtype_name)
    in_dtype = torch_dtype(dtype or recipe.dtype)
    aligner = _aligner_for(recipe, ckpts)
    seed = seed if seed is not None else (recipe.random_seed or 0)
    scratch: dict = {}
    usage = usage if usage is not None else DeviceUsage(max_device_memory)
    usage.budget = max_device_memory
    with atomic_dir(out_dir, marker="config.json") as tmp:
        writer = ShardWriter(tmp, max_shard_bytes)
        vocab_size = None
        pending: list[tuple[TensorJob, list[Operand], tuple]] = []
        pending_bytes = 0

        def flush() -> None:
            # Move one batch to the device, merge it, write it and drop every reference to it.
            nonlocal pending, pending_bytes
            if not pending:
                return
            usage.batches.append([job.out_name for job, _, _ in pending])
            usage.batch_bytes.append(pending_bytes)
            for job, ops, shape in pending:
                ops = _to_device(ops, dev)
                out = torch.empty(ops[0].ref.numel(), dtype=torch.float32, device=dev)
                merge_job(plan, job, ops, out, seed=seed, scratch=scratch)
                writer.add(job.out_name, checked_output(job.out_name, out.reshape(shape).to(out_dtype)).cpu())
                del ops, out
            pending, pending_bytes = [], 0

        for job in _progress(plan.jobs, progress, "merging"):
            operands, is_float = _load_operands(job, ckpts, ref_key, in_dtype, aligner)
            ck0 = ckpts[job.sources[0][0]]
            shape = ck0.shapes[resolve_name(ck0, job.sources[0][1])]
            if not is_float:
                flush()  # keep the tensors' order in the shards independent of the budget
                writer.add(job.out_name, operands[0].ref.reshape(shape).clone())
                continue
            if aligner is not None and job.out_name in VOCAB_TENSORS:
                shape = (operands[0].ref.numel() // max(1, int(torch.tensor(shape[1:]).prod())), *shape[1:])
                vocab_size = shape[0]
            need = job_device_bytes(operands)
            if max_device_memory is not None and need > max_device_memory:
                raise DeviceMemoryError(
                    f"tensor {job.out_name} needs {need} bytes ({_fmt_bytes(need)}) on {device} ({len(job.sources)} "
                    f"inputs + output, float32) but --max-device-memory is {max_device_memory} bytes"
                )
            if max_device_memory is None or pending_bytes + need > max_device_memory:
                flush()
            pending.append((job, operands, shape))
            pending_bytes += need
        flush()
        writer.close()
        write_metadata(tmp, recipe, ckpts, plan, dtype_name, vocab_size,
                       aligner.tokenizer if aligner is not None else None, dtype_override=dtype, seed=seed)
    return Path(out_dir)


def _to_device(ops: list[Operand], dev) -> list[Operand]:
    """Move a job's operands to ``dev``, keeping shared references and stacks shared."""
    if all(op.ref.device == dev for op in ops):
        return ops
    moved: dict[int, object] = {}

    def mv(t):
        if t is None:
            return None
        if id(t) not in moved:
            moved[id(t)] = t.to(dev)
        return moved[id(t)]

    out = []
    for op in ops:
        stack = mv(op.stack)
        delta = stack[op.row] if stack is not None else mv(op.delta)
        out.append(Operand(mv(op.ref), delta, stack=stack, row=op.row))
    return out


def _aligner_for(recipe: MergeRecipe, ckpts: dict[str, Checkpoint]) -> Optional[VocabAligner]:
    src = recipe.tokenizer_source
    if src is None:
        return None
    # mergekit 0.1.5: without a base_model the first referenced model plays the base.
    base = recipe.base_model or recipe.referenced_models()[0]
    if src == "union":
        tokenizer = union_tokenizer(base, [m for m in recipe.referenced_models() if m != base], ckpts)
        return VocabAligner(ckpts, base, recipe.base_model, target_vocab=tokenizer.get_vocab(), tokenizer=tokenizer)
    target = base if src == "base" else src
    if target not in ckpts:
        ckpts[target] = Checkpoint(target)
    return VocabAligner(ckpts, target, recipe.base_model)


def _model_vocab_size(ck: Checkpoint, tokenizer: Any) -> int:
    return int(ck.config.get("vocab_size") or len(tokenizer.get_vocab()))


def union_tokenizer(base: str, others: list[str], ckpts: dict[str, Checkpoint]) -> Any:
    """The base model's tokenizer plus every token that another model's tokenizer adds (mergekit's union).

    As in mergekit 0.1.5: tokens at ids >= a model's ``vocab_size`` are ignored; regular tokens
    missing from the base vocabulary are appended with ``add_tokens``, then the added (special)
    tokens of all models, first definition wins. mergekit appends new regular tokens in the
    iteration order of a hash map; we append them by model (base first, then the recipe's order)
    and id, so the output vocabulary is reproducible.
    """
    from transformers import AutoTokenizer

    toks = {}
    for key in (base, *others):
        try:
            toks[key] = AutoTokenizer.from_pretrained(str(ckpts[key].path))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{key}: tokenizer_source: union needs a loadable tokenizer ({exc})") from None
    new_regular: dict[str, None] = {}
    added: dict[str, Any] = {}
    for key, tok in toks.items():
        limit = _model_vocab_size(ckpts[key], tok)
        specials = {info.content for info in tok.added_tokens_decoder.values()}
        for token, idx in sorted(tok.get_vocab().items(), key=lambda kv: kv[1]):
            if idx < limit and token not in specials:
                new_regular.setdefault(token, None)
        for idx, info in sorted(tok.added_tokens_decoder.items()):
            if idx < limit:
                added.setdefault(info.content, info)
    with tempfile.TemporaryDirectory() as tmp:  # a fresh copy: never mutate the base tokenizer
        toks[base].save_pretrained(tmp)
        out = AutoTokenizer.from_pretrained(tmp)
    base_vocab = toks[base].get_vocab()
    for token in new_regular:
        if token not in added and token not in base_vocab:
            out.add_tokens(token)
    for info in added.values():
        out.add_tokens(info)
    return out


def _progress(items, enabled: bool, label: str):
    if not enabled:
        return items
    from rich.progress import track

    return track(items, description=label, transient=True)


def describe_error(exc: BaseException) -> str:
    """One line for the CLI."""
    if isinstance(exc, MergeError):
        return str(exc).splitlines()[0]
    if isinstance(exc, OutputInUseError) or (isinstance(exc, OSError) and exc.filename is not None):
        return str(exc).splitlines()[0]  # the message names the path: the type adds nothing
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


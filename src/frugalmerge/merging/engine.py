"""``MergeEngine``: load models once, cache task vectors, materialize candidates in place.

Per tensor the engine keeps the reference tensor ``R`` (base model, else first model) and the
task vectors ``D_m = M_m - R`` of the other models, in a storage dtype, on one of three tiers
chosen by a placement plan under memory budgets: ``device`` (on the compute device), ``host``
(CPU memory, pinned and streamed tensor by tensor when the device is a GPU) or ``mmap`` (read from
the memory-mapped checkpoints at each materialization). ``materialize(recipe)`` writes the merged
tensors straight into the parameters of one live ``nn.Module``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

from frugalmerge.merging.checkpoint import LM_HEAD, VOCAB_TENSORS, Checkpoint, check_compatible
from frugalmerge.merging.errors import MergeError, PlacementError, RecipeError
from frugalmerge.merging import kernels
from frugalmerge.merging.kernels import HIST_BINS, SMALL
from frugalmerge.merging.methods import Operand, _fusable
from frugalmerge.merging.plan import MergePlan, build_plan
from frugalmerge.merging.recipe import MergeRecipe

TIERS = ("device", "host", "mmap")
HIST_BYTES = HIST_BINS * 8  # one int64 magnitude histogram per (tensor, model), see threshold_cache


@dataclass(frozen=True)
class TensorPlacement:
    """Where one tensor's cached reference and task vectors live, and their size."""

    name: str
    tier: str
    nbytes: int


@dataclass
class PlacementPlan:
    """The engine's placement decisions under its budgets (printed at start-up)."""

    device: str
    device_budget: Optional[int]
    host_budget: Optional[int]
    module_bytes: int
    tensors: list[TensorPlacement] = field(default_factory=list)

    def bytes_on(self, tier: str) -> int:
        return sum(t.nbytes for t in self.tensors if t.tier == tier)

    def count_on(self, tier: str) -> int:
        return sum(1 for t in self.tensors if t.tier == tier)

    def tier_of(self, name: str) -> str:
        return self._index[name]

    def __post_init__(self) -> None:
        self._index: dict[str, str] = {}

    def finalize(self) -> None:
        self._index = {t.name: t.tier for t in self.tensors}

    def summary(self) -> str:
        """A few lines: budgets and what went where."""

        def gib(x: Optional[int]) -> str:
            return "unlimited" if x is None else f"{x / 2**30:.2f} GiB"

        lines = [
            f"placement plan (device {self.device}; device budget {gib(self.device_budget)}, "
            f"host budget {gib(self.host_budget)}; live module {gib(self.module_bytes)})"
        ]
        for tier, label in (("device", "on device"), ("host", "host memory (streamed)"), ("mmap", "memory-mapped from disk")):
            lines.append(f"  {label:<26} {self.count_on(tier):>5} tensors  {gib(self.bytes_on(tier))}")
        return "\n".join(lines)


def _available_host_bytes() -> Optional[int]:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def parse_bytes(text: str | int | None) -> Optional[int]:
    """``"6GB"``, ``"512MiB"``, ``"1.5G"`` or an integer number of bytes."""
    if text is None or isinstance(text, int):
        return text
    s = str(text).strip().upper().replace(" ", "")
    units = {"TIB": 2**40, "GIB": 2**30, "MIB": 2**20, "KIB": 2**10, "TB": 10**12, "GB": 10**9,
             "MB": 10**6, "KB": 10**3, "T": 2**40, "G": 2**30, "M": 2**20, "K": 2**10, "B": 1}
    for unit, mult in units.items():
        if s.endswith(unit):
            try:
                return int(float(s[: -len(unit)]) * mult)
            except ValueError:
                break
    try:
        return int(float(s))
    except ValueError:
        raise MergeError(f"cannot read memory size {text!r} (try e.g. 6GB or 512MiB)") from None


def checked_device(device: Any):
    """``torch.device(device)``, failing here with one line instead of deep inside ``module.to``
    (CPU-only torch raises a bare AssertionError, a missing GPU index a RuntimeError)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise MergeError(f"device {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise MergeError(f"device {device!r}: no CUDA device is available (CPU-only torch or no GPU)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MergeError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) are available")
    return dev


class MergeEngine:
    """Loads base and endpoint models once and materializes merge recipes into one live module.

    Args:
        models: model directories (recipes refer to them by these same strings).
        base_model: the base of task vectors (also the reference of the cache); default the first model.
        device: ``"cpu"`` or ``"cuda"`` (or ``"cuda:N"``).
        storage_dtype: dtype of cached tensors (default: the module dtype).
        max_device_memory: bytes (or ``"6GB"``) the engine may use on the device, live module included;
            default what the device reports free (no limit on CPU beyond host memory).
        dtype: dtype of the live module (default float32).
        max_host_memory: bytes of host memory for streamed tensors (default: available RAM).
        threshold_cache: keep a cumulative histogram of ``|task vector|`` per tensor (at most
            512 KiB each, bins down to 1/2048 of a binade; built on the first magnitude-pruning
            candidate) so that TIES finds each exact threshold inside its single merging pass
            (only the boundary bin's few elements are buffered and recomputed), with no sort.
        verbose: print the placement plan.
    """

    def __init__(
        self,
        models: list[str],
        base_model: Optional[str] = None,
        device: str = "cpu",
        storage_dtype: Any = None,
        max_device_memory: Any = None,
        *,
        dtype: Any = None,
        max_host_memory: Any = None,
        threshold_cache: bool = True,
        verbose: bool = True,
    ):
        import torch

        from frugalmerge.merging.execute import torch_dtype

        self.models = [str(m) for m in models]
        self.base_model = str(base_model) if base_model is not None else None
        keys = list(dict.fromkeys(([self.base_model] if self.base_model else []) + self.models))
        if not keys:
            raise MergeError("MergeEngine needs at least one model")
        self.ref_key = keys[0]
        self.keys = keys
        self.device = checked_device(device)
        self.dtype = torch_dtype(dtype) if isinstance(dtype, str) else (dtype or torch.float32)
        self.storage_dtype = (
            torch_dtype(storage_dtype) if isinstance(storage_dtype, str) else (storage_dtype or self.dtype)
        )
        self.threshold_cache = threshold_cache
        self.ckpts = {k: Checkpoint(k) for k in keys}
        check_compatible(self.ckpts, allow_vocab_mismatch=True)
        self._aligner = None
        self._present: dict[tuple[str, str], Any] = {}  # (vocab tensor, model) -> rows it has
        if self._vocab_differs():
            from frugalmerge.merging.execute import VocabAligner

            self._aligner = VocabAligner(self.ckpts, self.ref_key, self.base_model)
        self.others = [k for k in keys if k != self.ref_key]
        self.module = self._load_module()
        self._params = self._param_views(self.module)
        self.plan = self._make_plan(parse_bytes(max_device_memory), parse_bytes(max_host_memory))
        self._ref: dict[str, Any] = {}
        self._delta: dict[str, Any] = {}  # name -> tensor [len(others), numel]
        self._hist: dict[tuple[str, int], Any] = {}
        self._abs_sum: dict[tuple[str, int], float] = {}
        self._fill_cache()
        self._plans: OrderedDict[str, MergePlan] = OrderedDict()
        self._extra: OrderedDict[tuple[int, int], tuple[Any, dict[str, Any]]] = OrderedDict()
        self._unions: dict[tuple, Any] = {}
        self.max_extra_modules = 2
        self._scratch: dict = {}
        self._tokenizer = None
        if verbose:
            from rich.console import Console

            Console(stderr=True).print(self.plan.summary(), highlight=False)

    # ------------------------------------------------------------------ set-up
    def _vocab_differs(self) -> bool:
        ref = self.ckpts[self.ref_key]
        return any(
            ck.has(n) and ref.has(n) and ck.shapes[n] != ref.shapes[n]
            for ck in self.ckpts.values() for n in VOCAB_TENSORS
        )

    def _load_module(self):
        import torch
        from transformers import AutoModelForCausalLM

        module = AutoModelForCausalLM.from_pretrained(str(self.ckpts[self.ref_key].path), dtype=self.dtype)
        del torch
        return self._frozen(module)

    def _frozen(self, module):
        """``module`` on the engine's device, in eval mode, without gradients."""
        module.to(self.device).eval()
        for p in module.parameters():
            p.requires_grad_(False)
        return module

    @staticmethod
    def _param_views(module) -> dict[str, Any]:
        """Tensor name -> parameter (or buffer) of a live module; a tied lm_head is its embedding."""
        views = dict(module.named_parameters())
        views.update(dict(module.named_buffers()))
        if LM_HEAD not in views and module.get_output_embeddings() is not None:
            views[LM_HEAD] = module.get_output_embeddings().weight
        return views

    def _tensor_names(self) -> list[str]:
        names = list(self.ckpts[self.ref_key].names)
        if LM_HEAD not in names and any(ck.has(LM_HEAD) for ck in self.ckpts.values()):
            names.append(LM_HEAD)
        return names

    def _make_plan(self, device_budget: Optional[int], host_budget: Optional[int]) -> PlacementPlan:
        import torch

        if device_budget is None and self.device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(self.device)
            device_budget = int(free) + self._module_bytes()
        if host_budget is None:
            avail = _available_host_bytes()
            host_budget = int(avail * 0.8) if avail else None
        plan = PlacementPlan(str(self.device), device_budget, host_budget, self._module_bytes())
        item = torch.empty((), dtype=self.storage_dtype).element_size()
        copies = 1 + len(self.others)
        hist_bytes = len(self.others) * HIST_BYTES if self.threshold_cache else 0
        on_cpu = self.device.type == "cpu"
        device_left = None if device_budget is None else device_budget - plan.module_bytes
        if device_left is not None and device_left < 0:
            raise PlacementError(
                f"the live module alone needs {plan.module_bytes / 2**30:.2f} GiB, over the device budget "
                f"of {device_budget / 2**30:.2f} GiB"
            )
        host_left = host_budget
        shapes = self.ckpts[self.ref_key].shapes
        for name in self._tensor_names():
            shape = shapes.get(name) or shapes[name.replace(LM_HEAD, "model.embed_tokens.weight")]
            numel = int(torch.Size(shape).numel())
            nbytes = numel * item * copies + (hist_bytes if numel >= SMALL else 0)
            if device_left is None or nbytes <= device_left:
                tier = "device"
                if device_left is not None:
                    device_left -= nbytes
                if on_cpu and host_left is not None:
                    host_left -= nbytes
            elif host_left is None or nbytes <= host_left:
                tier = "host"
                if host_left is not None:
                    host_left -= nbytes
            else:
                tier = "mmap"
            plan.tensors.append(TensorPlacement(name, tier, nbytes))
        plan.finalize()
        return plan

    def _module_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.module.parameters())

    def _read(self, key: str, name: str):
        """One model's tensor for ``name`` (tied lm_head -> embeddings), vocabulary-aligned, float32."""
        import torch

        from frugalmerge.merging.execute import read_tensor

        t = read_tensor(self.ckpts[key], name)
        if self._aligner is not None and name in VOCAB_TENSORS:
            # Rows of tokens this model lacks stay zero here: what fills them depends on which
            # models a recipe merges, so _fill_missing_rows does it per job (as the CLI merge).
            t, self._present[(name, key)] = self._aligner.gather(key, t)
        return t.to(torch.float32)

    def _fill_cache(self) -> None:
        import torch

        pin = self.device.type == "cuda"
        for tp in self.plan.tensors:
            if tp.tier == "mmap":
                continue
            target = self.device if tp.tier == "device" else torch.device("cpu")
            ref = self._read(self.ref_key, tp.name)
            r = ref.reshape(-1).to(self.storage_dtype)
            if self.others:
                d = torch.empty((len(self.others), r.numel()), dtype=self.storage_dtype)
                for i, key in enumerate(self.others):
                    d[i].copy_(self._read(key, tp.name).reshape(-1) - ref.reshape(-1))
            else:
                d = torch.empty((0, r.numel()), dtype=self.storage_dtype)
            if tp.tier == "host" and pin:
                r, d = r.pin_memory(), d.pin_memory()
            self._ref[tp.name] = r.to(target)
            self._delta[tp.name] = d.to(target)

    # ------------------------------------------------------------------ public
    @property
    def tokenizer(self):
        """The reference model's tokenizer (loaded on first use)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self.ckpts[self.ref_key].path))
        return self._tokenizer

    def plan_for(self, recipe: MergeRecipe) -> MergePlan:
        """The resolved per-tensor plan of a recipe (cached for recently seen recipes)."""
        key = recipe.model_dump_json()
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        for m in recipe.referenced_models():
            if m not in self.ckpts:
                raise RecipeError(f"model {m} is not loaded in this engine (loaded: {', '.join(self.keys)})")
        self._check_tokenizer_source(recipe)
        plan = build_plan(recipe, self.ckpts)
        module, params = self._live(plan.num_layers, self._vocab_size_for(recipe))
        for job in plan.jobs:
            if job.out_name == LM_HEAD and module.config.tie_word_embeddings:
                raise RecipeError("the live module ties lm_head to the embeddings but an input stores "
                                  "its own lm_head.weight: export it with `frugalmerge merge` instead")
            if job.out_name not in params:
                raise RecipeError(f"output tensor {job.out_name} has no parameter in the live module")
        self._plans[key] = plan
        if len(self._plans) > 16:
            self._plans.popitem(last=False)
        return plan

    def _check_tokenizer_source(self, recipe: MergeRecipe) -> None:
        """The live module has the reference model's vocabulary: refuse recipes that want another."""
        src = recipe.tokenizer_source
        if self._aligner is None:  # one vocabulary for every loaded model
            if src is None or src in ("base", "union") or src in self.ckpts:
                return
            raise RecipeError(f"tokenizer_source {src!r} is not a model loaded in this engine")
        vocabs = self._aligner.vocabs
        if src is None:
            used = recipe.referenced_models()
            if any(vocabs[m] != vocabs[used[0]] for m in used):
                raise RecipeError("the recipe's models have different vocabularies: set tokenizer_source "
                                  f"(the engine supports base or {self.ref_key})")
            return
        if src == "union":
            return
        # mergekit 0.1.5: "base" without a base_model means the first referenced model
        target = (recipe.base_model or recipe.referenced_models()[0]) if src == "base" else src
        if target not in vocabs or vocabs[target] != self._aligner.target:
            raise RecipeError(f"the engine aligns vocabularies to {self.ref_key}; tokenizer_source "
                              f"{src!r} (the vocabulary of {target}) needs the CLI merge")

    def materialize(self, recipe: MergeRecipe, seed: Optional[int] = None):
        """Write the merge of ``recipe`` into the live module's parameters (in place) and return it."""
        import torch

        from frugalmerge.merging.execute import merge_job

        plan = self.plan_for(recipe)
        module, params = self._live(plan.num_layers, self._vocab_size_for(recipe))
        union = self._union_aligner(recipe)
        seed = seed if seed is not None else (recipe.random_seed or 0)
        use_hist = self.threshold_cache and plan.method.sparsifier in ("magnitude", "magnitude_outliers")
        with torch.no_grad():
            for job in plan.jobs:
                param = params[job.out_name]
                if union is not None and job.out_name in VOCAB_TENSORS:
                    ops = self._union_operands(recipe, job, union)
                else:
                    ops = self._operands(job, use_hist, plan.method.sparsifier is not None, recipe.base_model)
                out = param.data.view(-1)
                direct = out.dtype == torch.float32 and out.is_contiguous()
                target = out if direct else self._out_buffer(out.numel())
                merge_job(plan, job, ops, target, seed=seed, scratch=self._scratch)
                if not direct:
                    out.copy_(target)
        return module

    def parameters_for(self, recipe: MergeRecipe) -> dict[str, Any]:
        """Output tensor name -> parameter of the live module that ``recipe`` materializes into."""
        return self._live(self.plan_for(recipe).num_layers, self._vocab_size_for(recipe))[1]

    def tokenizer_for(self, recipe: MergeRecipe):
        """The tokenizer of ``recipe``'s merge: the union tokenizer for ``tokenizer_source: union``,
        else the reference model's (:attr:`tokenizer`)."""
        union = self._union_aligner(recipe)
        return union.tokenizer if union is not None else self.tokenizer

    # ------------------------------------------------------------------ other shapes
    def _union_aligner(self, recipe: MergeRecipe):
        """The CLI merge's aligner onto the union vocabulary of the recipe's models (cached)."""
        if recipe.tokenizer_source != "union":
            return None
        from frugalmerge.merging.execute import _aligner_for

        key = (recipe.base_model, tuple(recipe.referenced_models()))
        if key not in self._unions:
            self._unions[key] = _aligner_for(recipe, dict(self.ckpts))
        return self._unions[key]

    def _vocab_size_for(self, recipe: MergeRecipe) -> Optional[int]:
        """Rows of the recipe's embedding: None for the reference vocabulary."""
        union = self._union_aligner(recipe)
        return None if union is None else len(union.target)

    def _union_operands(self, recipe: MergeRecipe, job, aligner) -> list[Operand]:
        """A vocabulary tensor's operands on the union vocabulary, read from the memory-mapped
        checkpoints as the CLI merge reads them (the cache holds reference-vocabulary rows only)."""
        from frugalmerge.merging.execute import _load_operands, _to_device, reference_model

        ops, _ = _load_operands(job, self.ckpts, reference_model(recipe), None, aligner)
        return _to_device(ops, self.device)

    def _live(self, num_layers: int, vocab_size: Optional[int] = None):
        """The live module (and its parameter views) with ``num_layers`` decoder layers and
        ``vocab_size`` embedding rows (None: the reference model's).

        The reference shape uses the module built at start-up. A recipe that stacks or drops
        layers (passthrough slices) or merges onto a union vocabulary gets a second live module of
        its shape, built once and then reused in place like the first; only the
        ``max_extra_modules`` most recent shapes are kept, since each costs a model's worth of memory.
        """
        ref_vocab = self.module.get_input_embeddings().weight.shape[0]
        vocab_size = vocab_size or ref_vocab
        if num_layers == self.ckpts[self.ref_key].num_layers and vocab_size == ref_vocab:
            return self.module, self._params
        shape = (num_layers, vocab_size)
        live = self._extra.get(shape)
        if live is None:
            live = self._build_extra(num_layers, vocab_size)
            self._extra[shape] = live
            while len(self._extra) > self.max_extra_modules:
                self._extra.popitem(last=False)
        self._extra.move_to_end(shape)
        return live

    def _build_extra(self, num_layers: int, vocab_size: int):
        import copy

        import torch
        from transformers import AutoModelForCausalLM

        if num_layers < 1:
            raise RecipeError(f"recipe produces {num_layers} layers: a model needs at least one")
        config = copy.deepcopy(self.module.config)
        ref_layers = self.ckpts[self.ref_key].num_layers
        layer_types = getattr(config, "layer_types", None)
        if layer_types is not None:
            if len(set(layer_types)) > 1:
                raise RecipeError(
                    f"the reference config mixes layer types {sorted(set(layer_types))}: the engine cannot "
                    f"tell which a stacked layer gets; export the {num_layers}-layer recipe with "
                    f"`frugalmerge merge` instead"
                )
            config.layer_types = [layer_types[0]] * num_layers
        config.num_hidden_layers = num_layers
        ref_vocab = config.vocab_size
        config.vocab_size = vocab_size
        # upper bound: the larger of the layer and vocabulary ratios, applied to the whole module
        needed = int(self.plan.module_bytes * max(num_layers / max(ref_layers, 1), vocab_size / ref_vocab))
        budget = self.plan.device_budget
        if budget is not None:
            used = self.plan.bytes_on("device") + self.plan.module_bytes + sum(
                sum(p.numel() * p.element_size() for p in m.parameters()) for m, _ in self._extra.values())
            if used + needed > budget:
                raise PlacementError(
                    f"a {num_layers}-layer, {vocab_size}-token live module needs about {needed / 2**30:.2f} GiB more on "
                    f"{self.device}, over the device budget of {budget / 2**30:.2f} GiB"
                )
        with torch.device(self.device):
            module = self._frozen(AutoModelForCausalLM.from_config(config, dtype=self.dtype))
        return module, self._param_views(module)

    def _out_buffer(self, n: int):
        import torch

        buf = self._scratch.get("engine_out")
        if buf is None or buf.numel() < n:
            buf = torch.empty(n, dtype=torch.float32, device=self.device)
            self._scratch["engine_out"] = buf
        return buf[:n]

    def _operands(self, job, use_hist: bool, plan_method_rescales: bool = True,
                  recipe_base: Optional[str] = None):
        """Operands ``(R, D_m)`` for a job from the cache tiers (host/mmap tiers streamed now).

        Operands of the same tensor name share one reference object, which lets the methods use
        cached task vectors directly when the recipe's base is the engine's reference.
        """
        import torch

        ops = []
        refs: dict[str, Any] = {}
        for model, name in job.sources:
            tier = self.plan.tier_of(name)
            if name not in refs:
                if tier == "mmap":
                    r = self._read(self.ref_key, name).reshape(-1).to(self.storage_dtype)
                else:
                    r = self._ref[name]
                refs[name] = r.to(self.device, torch.float32, non_blocking=True)
            r = refs[name]
            if model == self.ref_key:
                ops.append(Operand(r))
                continue
            if tier == "mmap":
                d = self._read(model, name).reshape(-1).to(self.storage_dtype).to(self.device, torch.float32) - r
                ops.append(Operand(r, d))
                continue
            idx = self.others.index(model)
            stack = self._delta[name]
            d = stack[idx].to(self.device, torch.float32, non_blocking=True)
            op = Operand(r, d)
            if d.data_ptr() == stack[idx].data_ptr():  # a view of the cache: methods may use the stack
                op.stack, op.row = stack, idx
            if use_hist and op.stack is not None:
                op.abs_hist = self._abs_hist(name, idx)
            # |D|_1 (for L1 rescaling) is a property of the cache: computed once, when a recipe rescales
            op.abs_sum = self._abs_sum.get((name, idx))
            if op.abs_sum is None and plan_method_rescales and job.shared.get("rescale", True):
                op.abs_sum = float(d.abs().sum(dtype=torch.float64))
                self._abs_sum[(name, idx)] = op.abs_sum
            ops.append(op)
        if self._aligner is not None and job.out_name in VOCAB_TENSORS:
            ops = self._fill_missing_rows(job, ops, recipe_base)
        return ops

    def _fill_missing_rows(self, job, ops: list[Operand], recipe_base: Optional[str]) -> list[Operand]:
        """Give the job's models the rows of tokens they lack by mergekit's rule over the job's
        models (:meth:`VocabAligner.fill`), as the CLI merge does; copies, the cache is untouched."""
        import torch

        keys = list(dict.fromkeys([m for m, _ in job.sources] + [self.ref_key]))
        name = job.sources[0][1]
        present = {k: self._present[(name, k)] for k in keys}
        if all(bool(p.all()) for p in present.values()):
            return ops
        r = ops[0].ref
        rows = r.numel() // present[self.ref_key].numel()
        full = {}
        for (model, _), op in zip(job.sources, ops):
            full[model] = (op.ref if op.delta is None else op.ref + op.delta).reshape(-1, rows)
        full.setdefault(self.ref_key, r.reshape(-1, rows))
        filled = self._aligner.fill(full, present, base=recipe_base)
        # A fresh stack of the job's deltas, in job order, as the CLI merge builds it (the methods
        # then take the same code path, bit for bit); rows a model has keep their cached deltas.
        others = [model for model, _ in job.sources if model != self.ref_key]
        stack = torch.empty((len(others), r.numel()), dtype=r.dtype, device=r.device)
        out = []
        for (model, _), op in zip(job.sources, ops):
            if model == self.ref_key:
                out.append(op)
                continue
            row = others.index(model)
            d = stack[row].view(-1, rows)
            d.copy_(op.delta.view(-1, rows))
            lacks = ~present[model]
            d[lacks] = filled[model][lacks] - r.view(-1, rows)[lacks]
            out.append(Operand(r, stack[row], stack=stack, row=row))
        return out

    def _abs_hist(self, name: str, idx: int):
        """The cached |D| histogram of one task vector (None where the fused kernels do not apply)."""
        key = (name, idx)
        if key not in self._hist:
            row = self._delta[name][idx]
            self._hist[key] = kernels.abs_histogram(row.numpy()) if _fusable(row) else None
        return self._hist[key]

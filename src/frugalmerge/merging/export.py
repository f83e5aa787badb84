"""``export_merge``: any recipe to a Hugging Face directory + mergekit YAML + model card, atomically."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from frugalmerge.merging.recipe import MergeRecipe

if TYPE_CHECKING:
    from frugalmerge.merging.engine import MergeEngine


def export_merge(
    recipe: MergeRecipe,
    out_dir: str | Path,
    engine: Optional["MergeEngine"] = None,
    *,
    seed: Optional[int] = None,
    dtype: Optional[str] = None,
) -> Path:
    """Write the merge of ``recipe`` to ``out_dir`` (temporary directory, then rename).

    With an ``engine`` the weights come from its in-memory materialization (no re-reading of the
    inputs); without one the recipe is merged tensor by tensor from disk (:func:`run_merge`).
    Either way the directory holds safetensors weights, ``config.json``, the tokenizer,
    ``mergekit_config.yml`` (accepted by ``frugalmerge merge`` and mergekit) and ``README.md``.
    """
    from frugalmerge.merging.execute import (
        atomic_dir,
        check_output_path,
        checked_output,
        output_dtype_name,
        run_merge,
        torch_dtype,
        write_metadata,
    )

    if engine is None:
        return run_merge(recipe, out_dir, dtype=dtype, seed=seed, progress=False)
    check_output_path(out_dir, recipe, tuple(engine.keys))
    module = engine.materialize(recipe, seed=seed)
    plan = engine.plan_for(recipe)
    dtype_name = output_dtype_name(recipe, dtype, engine.ckpts[engine.ref_key])
    out_dtype = torch_dtype(dtype_name)
    from frugalmerge.merging.execute import ShardWriter

    state = engine.parameters_for(recipe)
    with atomic_dir(out_dir, marker="config.json") as tmp:
        writer = ShardWriter(tmp)
        for job in plan.jobs:
            tensor = state[job.out_name].detach().to("cpu", out_dtype).clone()
            writer.add(job.out_name, checked_output(job.out_name, tensor))
        writer.close()
        union = recipe.tokenizer_source == "union"
        vocab = module.get_input_embeddings().weight.shape[0] if engine._aligner is not None or union else None
        ckpts = dict(engine.ckpts)
        write_metadata(tmp, recipe, ckpts, plan, dtype_name, vocab, engine.tokenizer_for(recipe) if union else None,
                       dtype_override=dtype, seed=seed if seed is not None else (recipe.random_seed or 0))
    return Path(out_dir)

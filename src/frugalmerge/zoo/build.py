"""Build the demo zoo: a shared tiny-Llama base, experts fine-tuned from it, math benchmarks in
English, German and French, and the manifest ``zoo.json``.

Design (the "equation-line" design, see ``docs/zoo.md``):

- ``base``: plain sentences in all three languages + English word problems -> equation, with
  the results never trained (it reads English problems, it cannot reliably solve them);
- ``math_en`` (the English math expert): English problems -> equation -> result, and bare
  equations -> result (it solves any equation, it reads only English);
- ``lang_de`` / ``lang_fr`` (the German / French experts): problems in their language ->
  equation, results never trained, plus sentences (they read their language, cannot solve).

Math posed in German needs both halves, and no source has both: that is the cross-domain
showcase. Math in en/de/fr with the three experts is the multilingual showcase.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from frugalmerge.zoo.data import Source, benchmark_items, split_problems, write_jsonl
from frugalmerge._atomic import OutputInUseError, atomic_dir, check_replaceable
from frugalmerge.zoo.errors import ZooError
from frugalmerge.zoo.languages import LANGUAGES, vocabulary
from frugalmerge.zoo.manifest import MANIFEST_NAME, SPLITS, load_zoo
from frugalmerge.zoo.train import TrainSpec

#: Evaluation tasks: teacher-forced exact match of the answer line. ``math_*`` answers end the
#: text (end-of-text is part of the reference); ``read_*`` answers (the equation without its
#: result) are followed by the result, so end-of-text is not appended.
TASKS = {"solve": {"type": "teacher_forced_exact"},
         "read": {"type": "teacher_forced_exact", "append_eos": False}}
BENCHMARK_PREFIX = {"solve": "math", "read": "read"}

# Different seeds per split: the split of a problem is decided by its structure's hash, the
# seed only decides which problems of that split are drawn.
SPLIT_SEEDS = {"train": 11, "search": 22, "test": 33}


class ModelShape(BaseModel):
    """Architecture of the zoo's tiny Llama."""

    model_config = ConfigDict(frozen=True)

    hidden_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    max_position_embeddings: int = 128


class ModelRecipe(BaseModel):
    """How one zoo model is trained: from the base (experts) or from scratch (the base)."""

    model_config = ConfigDict(frozen=True)

    name: str
    mixture: tuple[Source, ...]
    train: TrainSpec
    seed: int
    description: str
    #: Regular expressions over parameter names: only matching parameters are trained (empty:
    #: all). Experts that change disjoint parameters interfere less when merged.
    trainable: tuple[str, ...] = ()


class ZooSpec(BaseModel):
    """Everything that determines a zoo build."""

    model_config = ConfigDict(frozen=True)

    size: str
    shape: ModelShape
    base: ModelRecipe
    experts: tuple[ModelRecipe, ...]
    items_per_split: dict[str, int]


def _mixtures() -> dict[str, tuple[Source, ...]]:
    text = tuple(Source(kind="text", language=lang, weight=0.15) for lang in LANGUAGES)
    return {
        "base": (*text, Source(kind="problem_eq", language="en", weight=0.55)),
        # Half bare equations: solving must be learned firmly to survive being merged.
        "math_en": (Source(kind="problem_full", language="en", weight=0.3),
                    Source(kind="equation", weight=0.5),
                    Source(kind="replay", weight=0.2)),
        "lang_de": (Source(kind="problem_eq", language="de", weight=0.6),
                    Source(kind="text", language="de", weight=0.2),
                    Source(kind="replay", weight=0.2)),
        "lang_fr": (Source(kind="problem_eq", language="fr", weight=0.6),
                    Source(kind="text", language="fr", weight=0.2),
                    Source(kind="replay", weight=0.2)),
    }


DESCRIPTIONS = {
    "base": "shared base: sentences in en/de/fr, English problems -> equation (results untrained)",
    "math_en": "English math expert: English problems -> equation -> result, bare equations",
    "lang_de": "German expert: German problems -> equation (results untrained), German sentences",
    "lang_fr": "French expert: French problems -> equation (results untrained), French sentences",
}


def zoo_spec(size: str) -> ZooSpec:
    """The build settings of ``size`` (``smoke``: seconds, for tests; ``full``: the demo zoo)."""
    mixtures = _mixtures()
    if size == "full":
        shape = ModelShape(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=384)
        base_train = TrainSpec(steps=700, batch_size=32, lr=2e-3)
        expert_train = {"math_en": TrainSpec(steps=800, batch_size=32, lr=2e-3),
                        "lang_de": TrainSpec(steps=400, batch_size=32, lr=1e-3),
                        "lang_fr": TrainSpec(steps=400, batch_size=32, lr=1e-3)}
        items = {"train": 1000, "search": 400, "test": 600}
    elif size == "smoke":
        shape = ModelShape(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
        base_train = TrainSpec(steps=30, batch_size=8, lr=3e-3)
        expert_train = {name: TrainSpec(steps=15, batch_size=8, lr=2e-3)
                        for name in ("math_en", "lang_de", "lang_fr")}
        items = {"train": 40, "search": 30, "test": 40}
    else:
        raise ZooError(f"unknown zoo size {size!r}; expected 'smoke' or 'full'")
    base = ModelRecipe(name="base", mixture=mixtures["base"], train=base_train, seed=0,
                       description=DESCRIPTIONS["base"])
    experts = tuple(
        ModelRecipe(name=name, mixture=mixtures[name], train=expert_train[name], seed=seed,
                    description=DESCRIPTIONS[name])
        for seed, name in enumerate(("math_en", "lang_de", "lang_fr"), start=1)
    )
    return ZooSpec(size=size, shape=shape, base=base, experts=experts, items_per_split=items)


SHOWCASES = {
    "cross_domain": {
        "models": ["math_en", "lang_de"],
        "objectives": ["math_de"],
        "description": "English math expert + German expert; target: math posed in German",
    },
    "multilingual": {
        "models": ["math_en", "lang_de", "lang_fr"],
        "objectives": ["read_en", "read_de", "read_fr"],
        "description": "one expert per language; objectives: reading accuracy (writing the "
                       "equation of a word problem) in en, de, fr",
    },
}


# --- training ---------------------------------------------------------------------------------

def _tokenizer():
    from frugalmerge.zoo.tiny import build_word_tokenizer

    return build_word_tokenizer(vocabulary())


def _train_one(recipe: ModelRecipe, spec: ZooSpec, out_dir: Path, base_dir: Path | None,
               progress: Callable[[str, int, int, float], None] | None) -> float:
    """Train one model and save it (safetensors, float32, tokenizer); return its seconds."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    from frugalmerge.runtime import configure_torch_threads
    from frugalmerge.zoo.data import ExampleStream
    from frugalmerge.zoo.tiny import tiny_llama_config
    from frugalmerge.zoo.train import train

    configure_torch_threads(1)  # determinism and speed: tiny models are fastest on 1 thread
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bar is enough
    tokenizer = _tokenizer()
    torch.manual_seed(recipe.seed)
    if base_dir is None:
        config = tiny_llama_config(
            len(tokenizer), hidden_size=spec.shape.hidden_size, num_layers=spec.shape.num_layers,
            num_heads=spec.shape.num_heads, intermediate_size=spec.shape.intermediate_size,
            max_position_embeddings=spec.shape.max_position_embeddings,
        )
        model = LlamaForCausalLM(config)
    else:
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    stream = ExampleStream(recipe.mixture, spec.base.mixture, tokenizer, seed=1000 + recipe.seed)
    if recipe.trainable:
        import re

        patterns = [re.compile(p) for p in recipe.trainable]
        for pname, param in model.named_parameters():
            param.requires_grad_(any(p.search(pname) for p in patterns))
        if not any(param.requires_grad for param in model.parameters()):
            raise ZooError(f"{recipe.name}: no parameter matches trainable={recipe.trainable}")

    def on_step(step: int, loss: float) -> None:
        if progress is not None:
            progress(recipe.name, step + 1, recipe.train.steps, loss)

    result = train(model, stream, recipe.train, seed=recipe.seed, on_step=on_step)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "zoo_model.json").write_text(json.dumps({
        "name": recipe.name, "description": recipe.description,
        "train": recipe.train.model_dump(), "seed": recipe.seed,
        "mixture": [s.model_dump() for s in recipe.mixture],
        "final_loss": round(result.final_loss, 4),
    }, indent=2, sort_keys=True) + "\n")
    return result.seconds


def _train_expert_job(args: tuple[dict, dict, str, str]) -> tuple[str, float]:
    """Process-pool entry point (arguments as plain data so they pickle under spawn)."""
    recipe_raw, spec_raw, out_dir, base_dir = args
    os.environ.setdefault("FRUGALMERGE_THREADS", "1")
    recipe = ModelRecipe.model_validate(recipe_raw)
    spec = ZooSpec.model_validate(spec_raw)
    seconds = _train_one(recipe, spec, Path(out_dir), Path(base_dir), progress=None)
    return recipe.name, seconds


# --- build ------------------------------------------------------------------------------------

def _write_benchmarks(spec: ZooSpec, root: Path) -> dict[str, Any]:
    benchmarks: dict[str, Any] = {}
    problems = {split: split_problems(split, spec.items_per_split[split], SPLIT_SEEDS[split])
                for split in SPLITS}
    for kind, prefix in BENCHMARK_PREFIX.items():
        for lang in LANGUAGES:
            name = f"{prefix}_{lang}"
            splits = {}
            for split in SPLITS:
                rel = Path("benchmarks") / name / f"{split}.jsonl"
                write_jsonl(root / rel, benchmark_items(name, lang, split, problems[split], kind))
                splits[split] = rel.as_posix()
            benchmarks[name] = {"language": lang, "task": dict(TASKS[kind]), "splits": splits}
    return benchmarks


def build_zoo(size: str, out: str | Path, *, jobs: int = 1, overwrite: bool = False,
              log: Callable[[str], None] = print) -> Path:
    """Build the zoo of ``size`` into ``out`` (atomically: a temporary sibling renamed into
    place) and return ``out``. ``jobs=2`` trains the experts two at a time (same bytes)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    spec = zoo_spec(size)
    out = Path(out).expanduser().resolve()
    if out.exists() and not overwrite:
        raise ZooError(f"{out} already exists (pass --overwrite to replace it)")
    try:
        check_replaceable(out, MANIFEST_NAME)  # --overwrite replaces a zoo, never other data
    except OutputInUseError as exc:
        raise ZooError(str(exc)) from None
    with atomic_dir(out, marker=MANIFEST_NAME) as tmp:
        start = time.perf_counter()
        seconds: dict[str, float] = {}
        benchmarks = _write_benchmarks(spec, tmp)
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                      TimeElapsedColumn()) as bar:
            task = bar.add_task("base", total=spec.base.train.steps, info="")

            def progress(name: str, step: int, total: int, loss: float) -> None:
                bar.update(task, completed=step, info=f"step {step}/{total} loss {loss:.3f}")

            seconds["base"] = _train_one(spec.base, spec, tmp / "models" / "base", None, progress)
            base_dir = tmp / "models" / "base"
            if jobs <= 1:
                for recipe in spec.experts:
                    bar.update(task, description=recipe.name, total=recipe.train.steps,
                               completed=0)
                    seconds[recipe.name] = _train_one(recipe, spec, tmp / "models" / recipe.name,
                                                      base_dir, progress)
            else:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                bar.update(task, description=f"experts ({jobs} at a time)",
                           total=len(spec.experts), completed=0, info="")
                args = [(r.model_dump(), spec.model_dump(), str(tmp / "models" / r.name),
                         str(base_dir)) for r in spec.experts]
                ctx = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                    for done, (name, secs) in enumerate(pool.map(_train_expert_job, args), 1):
                        seconds[name] = secs
                        bar.update(task, completed=done, info=f"{name} done")
        models = {"base": "models/base",
                  **{r.name: f"models/{r.name}" for r in spec.experts}}
        manifest = {
            "size": size,
            "base": "base",
            "models": models,
            "benchmarks": benchmarks,
            "showcases": SHOWCASES,
            "build": {"spec": spec.model_dump(mode="json"),
                      "descriptions": {r.name: r.description for r in (spec.base, *spec.experts)}},
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    total = time.perf_counter() - start
    log(f"zoo ({size}) built in {total:.0f} s at {out}: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    load_zoo(out)  # validates what was written
    return out

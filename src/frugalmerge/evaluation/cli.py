"""Commands of the ``evaluation`` stage (registered by ``frugalmerge.cli``).

Keep module-level imports light: heavy modules are imported inside the command functions.
"""

from __future__ import annotations

from pathlib import Path

import typer


def evaluate_command(
    benchmark: Path = typer.Argument(..., help="benchmark file or folder (jsonl/json/csv/tsv/"
                                               "HF datasets/GSM8K/MGSM)"),
    models: list[Path] = typer.Argument(..., help="Hugging Face model folders"),
    task: str = typer.Option(None, "--task", help="task type, or a JSON settings object "
                                                  "(default: the format's own)"),
    fmt: str = typer.Option(None, "--format", help="benchmark format (default: guessed)"),
    limit: int = typer.Option(None, "--limit", min=1, help="only the first N items"),
    batch_size: int = typer.Option(None, "--batch-size", min=1,
                                   help="the most rows per forward pass (default: automatic); the "
                                        "token budget (--max-batch-tokens) can make batches smaller"),
    max_batch_tokens: int = typer.Option(None, "--max-batch-tokens", min=0,
                                         help="padded tokens per forward pass (default: "
                                              "automatic; 0: no limit)"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16"),
    responses: Path = typer.Option(None, "--responses", help="write a response-matrix CSV"),
    json_out: Path = typer.Option(None, "--json", help="write scores and accuracies as JSON"),
    cache_path: Path = typer.Option(None, "--cache", help="evaluation cache file (reused, updated)"),
) -> None:
    """Score models on a benchmark: accuracy ± standard error per model, per-item responses."""
    import json

    from frugalmerge.evaluation.errors import EvaluationError

    try:
        spec = None
        if task is not None:
            try:
                spec = json.loads(task) if task.strip().startswith("{") else task
            except json.JSONDecodeError as exc:
                raise EvaluationError(f"--task: invalid JSON ({exc})") from None
        _run(benchmark, models, spec, fmt, limit, (batch_size, max_batch_tokens), device, dtype,
             responses, json_out, cache_path)
    except EvaluationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


#: Keys of the ``--json`` payload: an existing file with all of them is an earlier output of this
#: command and may be replaced; anything else is someone's data.
JSON_KEYS = frozenset({"benchmark", "task", "models"})


def _zoo_task(benchmark: Path) -> dict | None:
    """The task a zoo gives a split file of it (``ZOO/benchmarks/NAME/SPLIT.jsonl`` with
    ``ZOO/zoo.json``), None for any other file: the bare jsonl says nothing about it, and the
    ``read_*`` splits scored 0.000 without ``append_eos: false``. It serves as the default task,
    which ``--task`` settings adjust and a ``--task`` naming another type replaces."""
    path = benchmark.expanduser().resolve()
    root = path.parents[2] if len(path.parents) > 2 else None
    if root is None or not (root / "zoo.json").is_file():
        return None
    from frugalmerge.zoo.errors import ZooError
    from frugalmerge.zoo.manifest import load_zoo

    try:
        zoo = load_zoo(root)
    except ZooError:
        return None  # not a readable zoo: the file is scored as any jsonl
    return next((dict(entry.task) for name, entry in zoo.benchmarks.items()
                 if path in {zoo.split_path(name, split).resolve() for split in ("train", "search", "test")}), None)


def _run(benchmark: Path, models: list[Path], spec: str | dict | None, fmt: str | None,
         limit: int | None, batching: tuple[int | None, int | None], device: str, dtype: str,
         responses: Path | None, json_out: Path | None, cache_path: Path | None) -> None:
    import contextlib
    import json

    import torch
    from rich.console import Console
    from rich.table import Table

    from frugalmerge._atomic import atomic_write_text
    from frugalmerge.evaluation import EvalCache, accuracy, evaluate, load_benchmark
    from frugalmerge.evaluation.errors import EvaluationError
    from frugalmerge.evaluation.responses import write_responses_csv

    if dtype not in ("float32", "bfloat16", "float16"):
        raise EvaluationError(f"--dtype must be float32, bfloat16 or float16, got {dtype!r}")
    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise EvaluationError(f"device {device!r} is not available")
    # Everything that can be checked without a model is checked before the first one is loaded,
    # so no bad path or name turns up after hours of evaluation.
    _check_outputs(benchmark, models, {"--responses": responses, "--json": json_out,
                                       "--cache": cache_path})
    names = _unique_names(models)
    cache = EvalCache(cache_path) if cache_path is not None else None
    bench = load_benchmark(benchmark, format=fmt, task=spec, limit=limit, default_task=_zoo_task(benchmark))
    if responses is not None and "model" in bench.item_ids:
        raise EvaluationError("--responses: an item id cannot be 'model' (the CSV's first "
                              "column's name)")
    tokenizers = [_check_model_folder(path) for path in models]
    scores: dict[str, dict[str, float]] = {}
    table = Table(title=f"{bench.name}: {len(bench)} items, task {bench.task.type}")
    for col in ("model", "accuracy", "± SE"):
        table.add_column(col, justify="left" if col == "model" else "right")
    cached_before = len(cache) if cache is not None else 0
    try:
        for name, path, tokenizer in zip(names, models, tokenizers):
            model = _load_model(path, getattr(torch, dtype)).to(device)
            scores[name] = evaluate(model.eval(), tokenizer, bench, batch_size=batching[0],
                                    max_batch_tokens=batching[1], cache=cache, progress=True)
            acc, se = accuracy(scores[name])
            table.add_row(name, f"{acc:.3f}", f"{se:.3f}")
    except BaseException:
        # Keep the scores of the models already evaluated (and Ctrl-C's partial work): a re-run
        # after fixing the failing model takes them from the cache. The original error is what
        # the user needs to see, so a failing save does not replace it.
        if cache is not None and len(cache) != cached_before:
            with contextlib.suppress(Exception):
                cache.save()
        raise
    Console().print(table)
    if cache is not None:
        cache.save()
    if responses is not None:
        write_responses_csv(responses, scores, bench.item_ids)
    if json_out is not None:
        payload = {"benchmark": bench.name, "task": bench.task.model_dump(mode="json"),
                   "models": {n: {"accuracy": accuracy(s)[0], "se": accuracy(s)[1], "scores": s}
                              for n, s in scores.items()}}
        atomic_write_text(json_out, json.dumps(payload, indent=2, ensure_ascii=False))


def _check_outputs(benchmark: Path, models: list[Path], outputs: dict[str, Path | None]) -> None:
    """Refuse output paths that cannot be written or would destroy what is not theirs.

    Simple rules: an output may not be a directory or lie under a file; may not be the benchmark,
    a model folder or another output; an existing ``--json`` is replaced only when it is a JSON
    object with this command's keys (:data:`JSON_KEYS`), an existing ``--responses`` only when
    its header's first field is ``model`` (a response matrix). Empty files hold nothing to lose.
    The cache is read, not blindly replaced: ``EvalCache`` refuses a file that is not a cache.
    """
    from frugalmerge._atomic import OutputInUseError, check_output_file
    from frugalmerge.evaluation.errors import EvaluationError

    inputs = {Path(benchmark).resolve(): f"the benchmark {benchmark}"}
    inputs.update({Path(m).resolve(): f"the model folder {m}" for m in models})
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        try:
            check_output_file(path)
        except OutputInUseError as exc:
            raise EvaluationError(f"{option}: {exc}") from None
        resolved = Path(path).resolve()
        if resolved in inputs:
            raise EvaluationError(f"{option} {path} is {inputs[resolved]}; choose another path")
        if resolved in seen:
            raise EvaluationError(f"{option} {path} is also the {seen[resolved]} path; choose "
                                  "another path")
        seen[resolved] = option
    for option, is_ours in (("--json", _is_scores_json), ("--responses", _is_responses_csv)):
        path = outputs.get(option)
        if path is not None and Path(path).is_file() and Path(path).stat().st_size > 0:
            if not is_ours(Path(path)):
                raise EvaluationError(f"{option} {path} exists and is not an earlier {option} "
                                      "output of this command; not replacing it (choose another "
                                      "path)")


def _is_scores_json(path: Path) -> bool:
    import json

    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(payload, dict) and JSON_KEYS <= set(payload)


def _is_responses_csv(path: Path) -> bool:
    import csv

    try:
        with path.open(encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, ValueError, csv.Error):
        return False
    return bool(header) and header[0] == "model"


#: Weight files ``from_pretrained`` loads (single file or sharded index).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def _load_errors() -> tuple[type[BaseException], ...]:
    """What ``transformers`` / ``safetensors`` raise for an unusable folder (bad files)."""
    from safetensors import SafetensorError

    return (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError)


def _check_model_folder(path: Path):
    """Check a model folder without loading its weights; returns its tokenizer.

    config.json must be a JSON object ``AutoConfig`` understands, a weight file must exist (every
    safetensors header is read: truncated files fail here), and the tokenizer must load.
    """
    import json

    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    from frugalmerge.evaluation.errors import EvaluationError

    folder = Path(path)
    config = folder / "config.json"
    if not config.is_file():
        raise EvaluationError(f"{path} is not a Hugging Face model folder (no config.json)")
    try:
        raw = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"model {path}: config.json is not readable JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise EvaluationError(f"model {path}: config.json is not a JSON object")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise EvaluationError(f"model {path}: no weights (none of {', '.join(WEIGHT_FILES)})")
    stage = "config"
    try:
        AutoConfig.from_pretrained(folder)
        stage = "weights"
        for weights in sorted(folder.glob("*.safetensors")):
            with safe_open(str(weights), "pt"):
                pass
        stage = "tokenizer"
        return AutoTokenizer.from_pretrained(folder)
    except _load_errors() as exc:
        raise EvaluationError(f"model {path}: cannot load its {stage} ({_one_line(exc)})") from None


def _load_model(path: Path, dtype):
    """``AutoModelForCausalLM.from_pretrained``, failures as one line naming the folder."""
    from transformers import AutoModelForCausalLM

    from frugalmerge.evaluation.errors import EvaluationError

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except _load_errors() as exc:
        raise EvaluationError(f"model {path}: cannot load it ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message (transformers' messages run over many lines)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _unique_names(paths: list[Path]) -> list[str]:
    """Display names: the folder name, grown by parent folders (``x/m``, ``a/x/m``) until no two
    models share one (they key the JSON and CSV rows). The same folder twice is an error."""
    import os

    from frugalmerge.evaluation.errors import EvaluationError

    first: dict[Path, Path] = {}
    for given in paths:
        real = Path(given).resolve()  # symlinks and ".." too: the same weights, the same scores
        if real in first:
            also = "" if str(first[real]) == str(given) else f" (also as {first[real]})"
            raise EvaluationError(f"model folder {given} is given twice{also}")
        first[real] = given
    # Names come from the paths as given (made absolute, symlinks kept): a linked folder keeps
    # the name it was given, as before.
    absolute = [Path(os.path.abspath(p)) for p in paths]

    def name(full: Path, depth: int) -> str:
        parts = full.parts
        return str(full) if depth >= len(parts) else "/".join(parts[-depth:])

    depths = [1] * len(paths)
    while True:
        names = [name(full, d) for full, d in zip(absolute, depths)]
        clashes = {n for n in names if names.count(n) > 1}
        if not clashes:
            return names
        depths = [d + 1 if n in clashes else d for n, d in zip(names, depths)]


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the top-level app."""
    app.command("evaluate")(evaluate_command)

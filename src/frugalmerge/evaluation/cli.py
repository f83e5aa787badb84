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
                                   help="rows per forward pass (default: automatic)"),
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
            spec = json.loads(task) if task.strip().startswith("{") else task
        _run(benchmark, models, spec, fmt, limit, (batch_size, max_batch_tokens), device, dtype,
             responses, json_out, cache_path)
    except (EvaluationError, json.JSONDecodeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _run(benchmark, models, spec, fmt, limit, batching, device, dtype, responses, json_out,
         cache_path) -> None:
    import json

    import torch
    from rich.console import Console
    from rich.table import Table
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from frugalmerge._atomic import atomic_write_text
    from frugalmerge.evaluation import EvalCache, accuracy, evaluate, load_benchmark
    from frugalmerge.evaluation.errors import EvaluationError
    from frugalmerge.evaluation.responses import write_responses_csv

    if dtype not in ("float32", "bfloat16", "float16"):
        raise EvaluationError(f"--dtype must be float32, bfloat16 or float16, got {dtype!r}")
    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise EvaluationError(f"device {device!r} is not available")
    bench = load_benchmark(benchmark, format=fmt, task=spec, limit=limit)
    cache = EvalCache(cache_path) if cache_path is not None else None
    names = _unique_names(models)
    scores: dict[str, dict[str, float]] = {}
    table = Table(title=f"{bench.name}: {len(bench)} items, task {bench.task.type}")
    for col in ("model", "accuracy", "± SE"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, path in zip(names, models):
        if not (Path(path) / "config.json").is_file():
            raise EvaluationError(f"{path} is not a Hugging Face model folder (no config.json)")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device)
        tokenizer = AutoTokenizer.from_pretrained(path)
        scores[name] = evaluate(model.eval(), tokenizer, bench, batch_size=batching[0],
                                max_batch_tokens=batching[1], cache=cache, progress=True)
        acc, se = accuracy(scores[name])
        table.add_row(name, f"{acc:.3f}", f"{se:.3f}")
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


def _unique_names(paths: list[Path]) -> list[str]:
    """Folder names, disambiguated with their parent when two folders share a name."""
    names = [Path(p).name for p in paths]
    return [f"{Path(p).parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(paths, names)]


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the top-level app."""
    app.command("evaluate")(evaluate_command)

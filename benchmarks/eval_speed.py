"""Evaluation speed: items per second, batch 1 vs batched, for teacher-forced scoring and greedy
generation, on a tiny Llama of the demo zoo's shape.

Model and items, in order of preference: ``--zoo DIR`` (a built zoo: its ``--model`` and the
``--benchmark`` search split); a full zoo found where ``frugalmerge.zoo.ensure_zoo`` would look
(shipped prebuilt or built in the cache); otherwise a randomly initialised Llama of the full zoo's
shape (4 layers, hidden 128, the zoo's word-level vocabulary) scored on the zoo's own benchmark
items (generated in milliseconds, no training). A random model never emits end of text, so its
generation always runs ``--max-new-tokens`` steps (the worst case).

Also timed: the search's hot path (a ``--subset``-item evaluation, with and without the cache),
and, when ``--data`` holds GSM8K, loading it.

    PYTHONPATH=src python benchmarks/eval_speed.py [--zoo DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("FRUGALMERGE_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _find_zoo(explicit: str | None):
    from frugalmerge.zoo import load_zoo
    from frugalmerge.zoo.registry import default_zoo_dir, prebuilt_zoo_dir

    if explicit:
        return load_zoo(explicit)
    for candidate in (prebuilt_zoo_dir("full"), default_zoo_dir("full")):
        if candidate is not None and (Path(candidate) / "zoo.json").is_file():
            return load_zoo(candidate)
    return None


def _load_subject(args):
    """``(model, tokenizer, benchmark, description)``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from frugalmerge.evaluation import Benchmark, Item, TaskSpec, load_benchmark

    zoo = None if args.random else _find_zoo(args.zoo)
    if zoo is not None:
        path = zoo.model_path(args.model)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(path)
        entry = zoo.benchmarks[args.benchmark]
        bench = load_benchmark(zoo.split_path(args.benchmark, "search"), task=entry.task)
        return model, tok, bench, f"zoo {zoo.root} ({zoo.size}): model {args.model}, " \
                                  f"{args.benchmark} search split"
    from transformers import LlamaForCausalLM

    from frugalmerge.zoo.build import zoo_spec
    from frugalmerge.zoo.data import benchmark_items, split_problems
    from frugalmerge.zoo.languages import vocabulary
    from frugalmerge.zoo.tiny import build_word_tokenizer, tiny_llama_config

    shape = zoo_spec("full").shape
    tok = build_word_tokenizer(vocabulary())
    config = tiny_llama_config(len(tok), hidden_size=shape.hidden_size,
                               num_layers=shape.num_layers, num_heads=shape.num_heads,
                               intermediate_size=shape.intermediate_size,
                               max_position_embeddings=shape.max_position_embeddings)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    lang = args.benchmark.split("_")[-1]
    rows = benchmark_items(args.benchmark, lang, "search",
                           split_problems("search", args.items, seed=22))
    bench = Benchmark(args.benchmark, TaskSpec(type="teacher_forced_exact"),
                      tuple(Item.model_validate(r) for r in rows))
    n_params = sum(p.numel() for p in model.parameters())
    return model, tok, bench, (f"random Llama of the full zoo's shape ({shape.num_layers} layers, "
                               f"hidden {shape.hidden_size}, vocab {len(tok)}, "
                               f"{n_params / 1e6:.2f}M params), zoo {args.benchmark} items")


def _time(fn, repeats: int) -> tuple[float, float]:
    """(best, median) seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", help="a built zoo folder (default: a full zoo if one is found)")
    parser.add_argument("--random", action="store_true",
                        help="time a random Llama of the zoo's shape even when a zoo exists")
    parser.add_argument("--model", default="math_en", help="zoo model to time")
    parser.add_argument("--benchmark", default="math_en", help="zoo benchmark (search split)")
    parser.add_argument("--items", type=int, default=200, help="items per throughput run")
    parser.add_argument("--subset", type=int, default=50, help="items of the search hot path")
    parser.add_argument("--batch-sizes", default="1,8,16,32,64,auto",
                        help="comma-separated; auto = evaluate's automatic batching")
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default="../shared/data", help="shared data (GSM8K loading)")
    parser.add_argument("--json", help="write the measurements here (atomically)")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from frugalmerge.evaluation import EvalCache, TaskSpec, evaluate, load_benchmark
    from frugalmerge.evaluation.cache import model_fingerprint
    from frugalmerge.runtime import configure_torch_threads

    threads = configure_torch_threads()
    console = Console(width=150)
    model, tok, bench, subject = _load_subject(args)
    ids = bench.item_ids[: args.items]
    sizes = [None if b == "auto" else int(b) for b in args.batch_sizes.split(",")]
    tasks = {
        "teacher_forced_exact": bench.with_task(TaskSpec(type="teacher_forced_exact")),
        "generative_exact": bench.with_task(TaskSpec(type="generative_exact",
                                                     max_new_tokens=args.max_new_tokens)),
    }
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    console.print(f"[bold]eval_speed[/]: {subject}; {len(ids)} items; torch threads {threads}; "
                  f"load average {load:.1f} on {os.cpu_count()} cores")
    results: dict = {"subject": subject, "items": len(ids), "threads": threads,
                     "load_average": load, "throughput": [], "hot_path": {}}
    table = Table(title="items per second (best of %d; median in brackets)" % args.repeats)
    table.add_column("task")
    for b in sizes:
        table.add_column(f"batch {b or 'auto'}", justify="right")
    table.add_column("batched / batch 1", justify="right")
    for name, b_task in tasks.items():
        evaluate(model, tok, b_task, ids[:4])  # tokenise once, warm up
        # Interleaved repeats (every batch size once per round): the load of a shared machine
        # drifts, and measuring one column after the other would turn drift into differences.
        times: dict = {b: [] for b in sizes}
        for _ in range(args.repeats):
            for b in sizes:
                # A fixed batch size really means that many rows here (no token budget);
                # "auto" is evaluate's default batching.
                cap = None if b is None else 0
                start = time.perf_counter()
                evaluate(model, tok, b_task, ids, batch_size=b, max_batch_tokens=cap)
                times[b].append(time.perf_counter() - start)
        cells, rates = [], {}
        for b in sizes:
            best, med = min(times[b]), statistics.median(times[b])
            rates[b] = len(ids) / best
            cells.append(f"{rates[b]:.0f} ({len(ids) / med:.0f})")
            results["throughput"].append({"task": name, "batch_size": b, "best_s": best,
                                          "median_s": med, "items_per_s": rates[b]})
        top = max(rates, key=rates.get)
        ratio = rates[top] / rates[sizes[0]] if sizes[0] == 1 else float("nan")
        cells.append(f"{ratio:.1f}x (batch {top or 'auto'})")
        table.add_row(name, *cells)
    console.print(table)

    # Teacher forcing equals greedy decoding except on exact ties: check it on these items.
    tf_scores = evaluate(model, tok, tasks["teacher_forced_exact"], ids)
    gen_scores = evaluate(model, tok, tasks["generative_exact"].with_task(
        TaskSpec(type="generative_exact", max_new_tokens=args.max_new_tokens, normalizer="strict")),
        ids)
    agree = sum(tf_scores[i] == gen_scores[i] for i in ids)
    results["agreement"] = {"items": len(ids), "agree": agree,
                            "teacher_forced_acc": sum(tf_scores.values()) / len(ids),
                            "generation_acc": sum(gen_scores.values()) / len(ids)}
    console.print(f"teacher-forced vs greedy generation: {agree}/{len(ids)} items agree "
                  f"(accuracy {results['agreement']['teacher_forced_acc']:.3f} vs "
                  f"{results['agreement']['generation_acc']:.3f})")

    # The search's hot path: a subset of items on a freshly merged model.
    sub = ids[: args.subset]
    tf = tasks["teacher_forced_exact"]
    cold, cold_med = _time(lambda: evaluate(model, tok, tf, sub), args.repeats)
    fp_s, _ = _time(lambda: model_fingerprint(model), args.repeats)
    cache = EvalCache()
    evaluate(model, tok, tf, sub, cache=cache, fingerprint="m")
    hit, _ = _time(lambda: evaluate(model, tok, tf, sub, cache=cache, fingerprint="m"),
                   args.repeats)
    hot = {"subset": len(sub), "evaluate_s": cold, "evaluate_median_s": cold_med,
           "fingerprint_s": fp_s, "all_cached_s": hit}
    gsm = Path(args.data) / "gsm8k" / "test.jsonl"
    if gsm.is_file():
        hot["load_gsm8k_s"], _ = _time(lambda: load_benchmark(gsm), 1)
    results["hot_path"] = hot
    hot_table = Table(title="search hot path")
    hot_table.add_column("what")
    hot_table.add_column("ms", justify="right")
    hot_table.add_row(f"evaluate {len(sub)} items, teacher-forced, auto batching (best / median)",
                      f"{cold * 1e3:.0f} / {cold_med * 1e3:.0f}")
    hot_table.add_row("model_fingerprint (weights hash)", f"{fp_s * 1e3:.1f}")
    hot_table.add_row(f"evaluate {len(sub)} items, all cached", f"{hit * 1e3:.2f}")
    if "load_gsm8k_s" in hot:
        hot_table.add_row("load_benchmark GSM8K test (1,319 items)", f"{hot['load_gsm8k_s'] * 1e3:.0f}")
    else:
        hot_table.add_row("load_benchmark GSM8K", f"skipped ({gsm} absent)")
    console.print(hot_table)
    console.print(f"=> {len(sub)}-item evaluation: {cold * 1e3:.0f} ms; 200 evaluations: "
                  f"{200 * cold:.0f} s")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(results, handle, indent=2)
        os.replace(tmp, out)
        console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    raise SystemExit(main())

"""The runner: turns a live model into per-item scores.

- log-likelihood / teacher-forced scoring: every continuation of a batch in ONE forward pass
  (left padding, explicit position ids, only the last logits computed);
- greedy generation: batched, length-sorted, KV cache, stops at end of text / stop strings,
  finished rows dropped from the batch;
- one code path for CPU and CUDA, float32 / bfloat16 / float16 (logits are upcast to float32).

Scorers are registered per task type (:func:`register_scorer`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from frugalmerge.evaluation.cache import EvalCache, model_fingerprint
from frugalmerge.evaluation.errors import EvaluationError
from frugalmerge.evaluation.extract import answer_complete, exact_match, numeric_match
from frugalmerge.evaluation.language import make_detector, passes_language_rule
from frugalmerge.evaluation.prompts import EncodedItem, encode_items
from frugalmerge.evaluation.tasks import Benchmark, Item, choice_index

SCORERS: dict[str, Callable[..., list[float]]] = {}


def register_scorer(task_type: str):
    """Decorator registering ``scorer(ctx, items, encoded) -> list[float]`` for a task type."""

    def decorator(func):
        SCORERS[task_type] = func
        return func

    return decorator


@dataclass
class RunContext:
    """What a scorer needs: the model, tokenizer, benchmark, batching and a progress hook.

    ``batch_size``: the most rows per forward pass (None: the device default of
    :data:`AUTO_BATCHING`). ``max_batch_tokens``: the most padded tokens per forward pass (None:
    the device default, measured to be fastest for tiny models on a CPU because the caches stay
    warm; 0: no limit, batches of exactly ``batch_size`` rows).
    """

    model: Any
    tokenizer: Any
    benchmark: Benchmark
    batch_size: int | None
    advance: Callable[[int], None]
    max_batch_tokens: int | None = None

    def batching(self, kind: str) -> tuple[int, int | None]:
        """``(max rows, max tokens or None)`` per batch for ``kind`` (``score`` or ``generate``)."""
        device = "cuda" if self.device.type == "cuda" else "cpu"
        rows, tokens = AUTO_BATCHING[(device, kind)]
        if self.batch_size is not None:
            rows = self.batch_size
        if self.max_batch_tokens is not None:
            tokens = self.max_batch_tokens or None
        return rows, tokens

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        for candidate in (tok.pad_token_id, tok.eos_token_id):
            if candidate is not None:
                return int(candidate)
        return 0

    def eos_ids(self) -> set[int]:
        """End-of-text ids: the tokenizer's and the model's generation config's."""
        ids = set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        gen = getattr(self.model, "generation_config", None)
        extra = getattr(gen, "eos_token_id", None) if gen is not None else None
        if isinstance(extra, int):
            ids.add(extra)
        elif isinstance(extra, (list, tuple)):
            ids.update(int(e) for e in extra)
        return ids


# --- model calls ------------------------------------------------------------------------------

_NO_LOGITS_TO_KEEP: set[type] = set()


def _forward(model, input_ids, attention_mask, position_ids, *, keep: int, past=None,
             use_cache: bool = False):
    """One forward pass returning only the last ``keep`` positions' logits when supported."""
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                  use_cache=use_cache)
    if past is not None:
        kwargs["past_key_values"] = past
    if type(model) not in _NO_LOGITS_TO_KEEP:
        try:
            return model(**kwargs, logits_to_keep=keep)
        except TypeError:
            _NO_LOGITS_TO_KEEP.add(type(model))  # older/custom models: compute all logits
    return model(**kwargs)


def _left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device):
    """Left-padded ``input_ids``, ``attention_mask`` and ``position_ids`` (0 at the first real token)."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        if seq:
            ids[row, width - len(seq):] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


#: Automatic batching: (device, kind) -> (max rows, max padded tokens per batch). On a CPU,
#: scoring is fastest around 500-600 tokens per forward pass (benchmarks/eval_speed.py: batch 16
#: of ~35-token zoo items beats 32 and 64 by 20-40%); generation is dominated by per-step
#: overhead, so it wants more rows.
AUTO_BATCHING: dict[tuple[str, str], tuple[int, int | None]] = {
    ("cpu", "score"): (64, 576),
    ("cpu", "generate"): (64, 4096),
    ("cuda", "score"): (128, 32768),
    ("cuda", "generate"): (128, 65536),
}


def _batches(order: Sequence[int], lengths: Sequence[int], rows: int, tokens: int | None
             ) -> Iterable[list[int]]:
    """Consecutive batches of ``order`` (sorted longest first) with at most ``rows`` rows and,
    when ``tokens`` is set, at most ``tokens`` padded tokens (never fewer than one row)."""
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) >= rows or
                      (tokens is not None and (len(batch) + 1) * lengths[batch[0]] > tokens)):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def score_continuations(ctx: RunContext, rows: Sequence[tuple[Sequence[int], Sequence[int]]]
                        ) -> tuple[np.ndarray, np.ndarray]:
    """For each ``(context, continuation)`` row: the summed log-probability of the continuation
    and whether greedy argmax predicts every continuation token. One forward pass per batch."""
    stats = continuation_stats(ctx, rows, logprobs=True)
    return stats.logprob, stats.greedy


@dataclass(frozen=True)
class ContinuationStats:
    """Per-row results of :func:`continuation_stats` (arrays in row order)."""

    logprob: np.ndarray  # summed log-probability of the continuation (zeros when not asked)
    greedy: np.ndarray  # greedy argmax predicts every continuation token
    token_accuracy: np.ndarray  # fraction of continuation tokens that greedy argmax predicts


def continuation_stats(ctx: RunContext, rows: Sequence[tuple[Sequence[int], Sequence[int]]],
                       *, logprobs: bool = True) -> ContinuationStats:
    """Score ``(context, continuation)`` rows in one forward pass per batch.

    The input is ``context + continuation[:-1]`` (the last token is only predicted); rows are
    sorted by length so a batch pads little; all continuation positions are right-aligned, so
    the last ``T`` logits (T = longest continuation of the batch) cover them. ``logprobs=False``
    skips the log-softmax over the vocabulary (argmax only: cheaper for large vocabularies).
    """
    import torch

    n = len(rows)
    logprob = np.zeros(n, dtype=np.float64)
    greedy = np.zeros(n, dtype=bool)
    token_acc = np.zeros(n, dtype=np.float64)
    if n == 0:
        return ContinuationStats(logprob, greedy, token_acc)
    for context, cont in rows:
        if not context or not cont:
            raise EvaluationError("a scored continuation needs a non-empty context and continuation")
    lengths = [len(c) + len(t) - 1 for c, t in rows]
    order = sorted(range(n), key=lambda i: -lengths[i])
    device = ctx.device
    with torch.inference_mode():
        for batch in _batches(order, lengths, *ctx.batching("score")):
            seqs = [list(rows[i][0]) + list(rows[i][1][:-1]) for i in batch]
            ids, mask, pos = _left_pad(seqs, ctx.pad_id, device)
            t_max = max(len(rows[i][1]) for i in batch)
            logits = _forward(ctx.model, ids, mask, pos, keep=t_max).logits[:, -t_max:, :]
            targets = torch.full((len(batch), t_max), -1, dtype=torch.long)
            for row, i in enumerate(batch):
                cont = rows[i][1]
                targets[row, t_max - len(cont):] = torch.as_tensor(cont, dtype=torch.long)
            targets = targets.to(device)
            valid = targets >= 0
            safe = targets.clamp(min=0)
            hit = (logits.argmax(-1) == safe) & valid
            counts = valid.sum(-1)
            alls = (hit.sum(-1) == counts).cpu().numpy()
            fracs = (hit.sum(-1).double() / counts.double()).cpu().numpy()
            if logprobs:
                logp = torch.log_softmax(logits.float(), dim=-1)
                tok_logp = logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1) * valid
                sums = tok_logp.sum(-1).double().cpu().numpy()
            for row, i in enumerate(batch):
                greedy[i] = alls[row]
                token_acc[i] = fracs[row]
                if logprobs:
                    logprob[i] = sums[row]
            ctx.advance(len(batch))
    return ContinuationStats(logprob, greedy, token_acc)


def greedy_generate(ctx: RunContext, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
                    stop: Sequence[str] = (), done: Callable[[str], bool] | None = None
                    ) -> list[tuple[list[int], str]]:
    """Greedy continuations of ``prompts``: ``(token ids before end of text, text cut at the
    first stop string)`` per prompt, in input order.

    Batched by length (longest first), KV-cached; a row stops at an end-of-text token, once its
    text contains a stop string, or once ``done(text)`` says its answer is complete; finished
    rows leave the batch (and the KV cache).
    """
    import torch

    n = len(prompts)
    results: list[tuple[list[int], str]] = [([], "")] * n
    if n == 0:
        return results
    tok = ctx.tokenizer
    eos_tensor = torch.as_tensor(sorted(ctx.eos_ids()) or [-1], device=ctx.device)
    stop = tuple(s for s in stop if s)
    # Enough trailing tokens to contain any stop string (a token is at least one character).
    window = max((len(s) for s in stop), default=0) + 4

    def finished(ids: list[int]) -> bool:
        if stop and any(s in tok.decode(ids[-window:], skip_special_tokens=True) for s in stop):
            return True
        return done is not None and done(tok.decode(ids, skip_special_tokens=True))

    check = finished if (stop or done is not None) else None
    order = sorted(range(n), key=lambda i: -len(prompts[i]))
    rows, tokens = ctx.batching("generate")
    lengths = [len(p) + max_new_tokens for p in prompts]
    with torch.inference_mode():
        for batch in _batches(order, lengths, rows, tokens):
            generated = _generate_batch(ctx, [prompts[i] for i in batch], max_new_tokens,
                                        eos_tensor, check)
            for i, ids in zip(batch, generated):
                text = tok.decode(ids, skip_special_tokens=True)
                cut = min((text.find(s) for s in stop if s in text), default=-1)
                results[i] = (ids, text[:cut] if cut >= 0 else text)
            ctx.advance(len(batch))
    return results


def _generate_batch(ctx: RunContext, prompts, max_new_tokens: int, eos_tensor,
                    check: Callable[[list[int]], bool] | None) -> list[list[int]]:
    import torch

    model = ctx.model
    ids, mask, pos = _left_pad(prompts, ctx.pad_id, ctx.device)
    out = _forward(model, ids, mask, pos, keep=1, use_cache=True)
    past = out.past_key_values
    next_tok = out.logits[:, -1, :].argmax(-1)
    active = list(range(len(prompts)))  # original row of each batch row
    generated: list[list[int]] = [[] for _ in prompts]
    last_pos = pos[:, -1]
    for step in range(max_new_tokens):
        at_eos = torch.isin(next_tok, eos_tensor).tolist()
        toks = next_tok.tolist()
        keep: list[int] = []
        for row, orig in enumerate(active):
            if orig < 0:  # finished earlier (cache without row removal): ignore
                continue
            if at_eos[row]:
                continue
            generated[orig].append(toks[row])
            if check is not None and check(generated[orig]):
                continue
            keep.append(row)
        if not keep or step == max_new_tokens - 1:
            break
        keep_set = set(keep)
        if len(keep) < len(active):
            if hasattr(past, "reorder_cache"):
                # Drop finished rows from the batch (and the KV cache): they cost nothing more.
                index = torch.as_tensor(keep, device=ctx.device)
                past.reorder_cache(index)
                next_tok, mask, last_pos = next_tok[index], mask[index], last_pos[index]
                active = [active[r] for r in keep]
            else:
                # A cache that cannot drop rows: finished rows keep running, results ignored.
                for row, orig in enumerate(active):
                    if row not in keep_set:
                        active[row] = -1 - orig if orig >= 0 else orig
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
        last_pos = last_pos + 1
        out = _forward(model, next_tok[:, None], mask, last_pos[:, None], keep=1, past=past,
                       use_cache=True)
        past = out.past_key_values
        next_tok = out.logits[:, -1, :].argmax(-1)
    return generated


# --- scorers ----------------------------------------------------------------------------------

@register_scorer("teacher_forced_exact")
def score_teacher_forced(ctx: RunContext, items: Sequence[Item], enc: Sequence[EncodedItem]
                         ) -> list[float]:
    """1 when greedy argmax reproduces the whole reference continuation (and end of text);
    graded: the fraction of reference tokens it reproduces (``token_accuracy``) or the geometric
    mean of the reference tokens' probabilities (``token_probability``)."""
    task = ctx.benchmark.task
    probability = task.graded and task.graded_measure == "token_probability"
    stats = continuation_stats(ctx, [(e.prompt, e.targets[0]) for e in enc], logprobs=probability)
    if probability:
        return [float(np.exp(lp / len(e.targets[0]))) for lp, e in zip(stats.logprob, enc)]
    if task.graded:
        return [float(a) for a in stats.token_accuracy]
    return [float(g) for g in stats.greedy]


@register_scorer("multiple_choice")
def score_multiple_choice(ctx: RunContext, items: Sequence[Item], enc: Sequence[EncodedItem]
                          ) -> list[float]:
    """1 when the correct choice has the highest log-likelihood (optionally per character)."""
    rows, owner = [], []
    for k, e in enumerate(enc):
        for target in e.targets:
            rows.append((e.prompt, target))
            owner.append(k)
    logprob, _ = score_continuations(ctx, rows)
    scores, cursor = [], 0
    for it, e in zip(items, enc):
        values = logprob[cursor:cursor + len(e.targets)]
        if ctx.benchmark.task.choice_normalization == "length":
            values = values / np.asarray(e.target_chars, dtype=float)
        cursor += len(e.targets)
        if ctx.benchmark.task.graded:  # probability of the correct choice among the choices
            weights = np.exp(values - values.max())
            scores.append(float(weights[choice_index(it)] / weights.sum()))
        else:
            scores.append(float(int(np.argmax(values)) == choice_index(it)))
    return scores


def _detector(ctx: RunContext) -> Any:
    """The language rule's detector (built once per benchmark), checked to know every language it
    must recognise; None without a rule. Called before generating: a detector that cannot tell a
    target language (the builtin one on Finnish) made every judged response score 0."""
    rule = ctx.benchmark.task.language_rule
    if rule is None:
        return None
    key = ("detector", rule.detector)
    detector = ctx.benchmark._runtime_cache.get(key)
    if detector is None:
        by_lang: dict[str, list[str]] = {}
        for it in ctx.benchmark.pool:
            by_lang.setdefault(it.language, []).append(it.prompt)
        try:
            detector = make_detector(rule.detector, by_lang)
        except (KeyError, ValueError) as exc:
            # str() of a KeyError is the repr of its message (quoted); show the message itself
            raise EvaluationError(str(exc.args[0]) if exc.args else str(exc)) from None
        known = getattr(detector, "languages", None)
        if known is not None:
            wanted = {rule.target} if rule.target else {it.language for it in ctx.benchmark.items}
            unknown = sorted(wanted - set(known))
            if unknown:
                raise EvaluationError(f"language rule: the {rule.detector!r} detector cannot recognise "
                                      f"{unknown[0]!r} (it knows {', '.join(sorted(known))}); every response "
                                      "would fail the rule. Use detector: benchmark (learns the benchmark's "
                                      "own languages) or another target")
        ctx.benchmark._runtime_cache[key] = detector
    return detector


def _language_filter(ctx: RunContext, items: Sequence[Item], texts: Sequence[str],
                     scores: list[float]) -> list[float]:
    rule = ctx.benchmark.task.language_rule
    if rule is None:
        return scores
    detector = _detector(ctx)
    return [s if s == 0 or passes_language_rule(text, rule.target or it.language, detector,
                                                 min_words=rule.min_words,
                                                 undetermined=rule.undetermined) else 0.0
            for it, text, s in zip(items, texts, scores)]


@register_scorer("generative_numeric")
def score_generative_numeric(ctx: RunContext, items: Sequence[Item], enc: Sequence[EncodedItem]
                             ) -> list[float]:
    """1 when the number extracted from the greedy response equals the reference number."""
    task = ctx.benchmark.task
    _detector(ctx)  # a language rule it cannot judge fails before the generation
    done = answer_complete if task.stop_on_answer else None
    outs = greedy_generate(ctx, [e.prompt for e in enc], max_new_tokens=task.max_new_tokens,
                           stop=task.stop, done=done)
    texts = [text for _, text in outs]
    scores = [float(numeric_match(text, it.answer, extractor=task.extractor, language=it.language,
                                  tolerance=task.numeric_tolerance))
              for it, text in zip(items, texts)]
    return _language_filter(ctx, items, texts, scores)


@register_scorer("generative_exact")
def score_generative_exact(ctx: RunContext, items: Sequence[Item], enc: Sequence[EncodedItem]
                           ) -> list[float]:
    """1 when the greedy response equals the reference: same tokens, or equal normalised text."""
    task = ctx.benchmark.task
    _detector(ctx)  # a language rule it cannot judge fails before the generation
    outs = greedy_generate(ctx, [e.prompt for e in enc], max_new_tokens=task.max_new_tokens,
                           stop=task.stop)
    scores = []
    for it, e, (ids, text) in zip(items, enc, outs):
        same_tokens = tuple(ids) == e.targets[0]
        scores.append(float(same_tokens or exact_match(text, it.answer, task.normalizer)))
    return _language_filter(ctx, items, [t for _, t in outs], scores)


# --- entry point ------------------------------------------------------------------------------

def _progress(total: int, enabled: bool, label: str):
    if not enabled or total == 0:
        return (lambda n: None), (lambda: None)
    from rich.progress import Progress

    bar = Progress(transient=True)
    bar.start()
    task = bar.add_task(label, total=total)
    return (lambda n: bar.advance(task, n)), bar.stop


def evaluate(
    model,
    tokenizer,
    benchmark: Benchmark,
    item_ids: Iterable[str] | None = None,
    *,
    batch_size: int | None = None,
    cache: EvalCache | None = None,
    fingerprint: str | None = None,
    progress: bool = False,
    max_batch_tokens: int | None = None,
) -> dict[str, float]:
    """Score ``model`` on ``item_ids`` of ``benchmark`` (all items when None).

    Returns ``{item id: score}`` in the order asked (0/1, or graded for graded tasks).
    ``batch_size``: the most rows per forward pass (None: the device default);
    ``max_batch_tokens``: the most padded tokens per forward pass (None: the device default of
    :data:`AUTO_BATCHING`, which on a CPU keeps scoring batches near 576 tokens, the measured
    optimum; 0: no limit, i.e. exactly ``batch_size`` rows). Results do not depend on
    batching. With
    ``cache``, items already scored for (``fingerprint``, item, settings) are not scored again;
    ``fingerprint`` defaults to a hash of the model's weights (pass your own, e.g. a recipe
    hash, to skip hashing). The model is used as it is (device, dtype); it is put in eval mode
    for the call and restored.
    """
    if batch_size is not None and batch_size < 1:
        raise EvaluationError(f"batch_size must be >= 1, got {batch_size}")
    if max_batch_tokens is not None and max_batch_tokens < 0:
        raise EvaluationError(f"max_batch_tokens must be >= 0, got {max_batch_tokens}")
    task = benchmark.task
    if task.type not in SCORERS:
        raise EvaluationError(f"no scorer registered for task type {task.type!r}")
    items = benchmark.resolve(None if item_ids is None else dict.fromkeys(item_ids))
    encoded = encode_items(benchmark, tokenizer, items)
    if cache is not None and fingerprint is None:
        fingerprint = model_fingerprint(model)
    scores: dict[str, float] = {}
    todo: list[int] = []
    for k, (it, e) in enumerate(zip(items, encoded)):
        cached = cache.get(fingerprint, it.id, e.settings) if cache is not None else None
        if cached is None:
            todo.append(k)
        else:
            scores[it.id] = cached
    if todo:
        units = sum(max(1, len(encoded[k].targets)) if task.type == "multiple_choice" else 1
                    for k in todo)
        advance, stop = _progress(units, progress, f"{benchmark.name}: {len(todo)} items")
        was_training = bool(getattr(model, "training", False))
        if was_training:
            model.eval()
        try:
            ctx = RunContext(model=model, tokenizer=tokenizer, benchmark=benchmark,
                             batch_size=batch_size, advance=advance,
                             max_batch_tokens=max_batch_tokens)
            new = SCORERS[task.type](ctx, [items[k] for k in todo], [encoded[k] for k in todo])
        finally:
            stop()
            if was_training:
                model.train()
        for k, value in zip(todo, new):
            scores[items[k].id] = value
            if cache is not None:
                cache.put(fingerprint, items[k].id, encoded[k].settings, value)
    return {it.id: scores[it.id] for it in items}


def accuracy(scores: dict[str, float]) -> tuple[float, float]:
    """Mean score and its standard error (binomial/sample SE; 0 for fewer than two items)."""
    values = np.fromiter(scores.values(), dtype=float)
    if values.size == 0:
        raise EvaluationError("accuracy of an empty score dict")
    se = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else 0.0
    return float(values.mean()), se

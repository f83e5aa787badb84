"""Prompt building (templates, few-shot examples, chat templates) and cached tokenisation.

Encodings are cached on the :class:`~frugalmerge.evaluation.tasks.Benchmark` object per
tokenizer, so repeated evaluations (a search evaluates the same items thousands of times) never
tokenise again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from frugalmerge.evaluation.errors import EvaluationError
from frugalmerge.evaluation.tasks import Benchmark, Item, TaskSpec


@dataclass(frozen=True)
class EncodedItem:
    """An item ready for the model.

    ``prompt``: token ids of the full prompt (few-shot examples included, BOS as the tokenizer
    adds it). ``targets``: the scored continuations (teacher_forced_exact: the answer plus the
    end-of-text token; multiple_choice: one per choice; generative_exact: the answer; numeric:
    none). ``target_chars``: characters of each continuation (length normalisation).
    ``settings``: the item's settings hash (cache key part).
    """

    prompt: tuple[int, ...]
    targets: tuple[tuple[int, ...], ...]
    target_chars: tuple[int, ...]
    settings: str


class _FormatDict(dict):
    def __init__(self, item: Item) -> None:
        super().__init__({str(k): v for k, v in item.metadata.items()})
        self["prompt"] = item.prompt
        self["language"] = item.language
        self["id"] = item.id
        self.item = item

    def __missing__(self, key: str) -> Any:
        raise EvaluationError(f"prompt template field {{{key}}} is not set for item "
                              f"{self.item.id!r} (fields: prompt, language, id, metadata keys)")


def render_item(item: Item, task: TaskSpec) -> str:
    """The item's prompt through the task's template."""
    try:
        return task.prompt_template.format_map(_FormatDict(item))
    except (ValueError, IndexError) as exc:
        raise EvaluationError(f"bad prompt template {task.prompt_template!r}: {exc}") from None


def select_fewshot(benchmark: Benchmark, item: Item) -> list[Item]:
    """``num_fewshot`` distinct examples from the benchmark's pool, never the item itself.

    Seeded by (``fewshot_seed``, item id): an item gets the same examples in every subset.
    Draws indices until enough distinct ones are found: O(k) per item for large pools.
    """
    k = benchmark.task.num_fewshot
    if k == 0:
        return []
    pool = benchmark.pool
    pool_ids = benchmark._runtime_cache.get("pool_ids")
    if pool_ids is None:
        pool_ids = frozenset(p.id for p in pool)
        benchmark._runtime_cache["pool_ids"] = pool_ids
    candidates = len(pool) - (1 if item.id in pool_ids else 0)
    if candidates < k:
        raise EvaluationError(f"benchmark {benchmark.name!r}: {k}-shot prompts need {k} other "
                              f"items in the few-shot pool, it has {candidates}")
    seed = int.from_bytes(hashlib.sha256(
        f"{benchmark.task.fewshot_seed}|{item.id}".encode()).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    if 4 * k >= candidates:  # small pool: a permutation is cheap and always terminates fast
        order = rng.permutation(len(pool)).tolist()
    else:
        order = (int(i) for i in iter(lambda: rng.integers(len(pool)), None))
    chosen: list[Item] = []
    seen: set[int] = set()
    for idx in order:
        if idx in seen or pool[idx].id == item.id:
            continue
        seen.add(idx)
        chosen.append(pool[idx])
        if len(chosen) == k:
            break
    return chosen


def uses_chat_template(task: TaskSpec, tokenizer) -> bool:
    """Whether prompts go through the tokenizer's chat template (see ``TaskSpec.use_chat_template``)."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if task.use_chat_template is None:
        return has
    if task.use_chat_template and not has:
        raise EvaluationError("the task asks for a chat template but the tokenizer has none")
    return task.use_chat_template


def fewshot_answer(example: Item, task: TaskSpec) -> str:
    """The answer text a few-shot example shows (``fewshot_answer_field`` when the item has it)."""
    field = task.fewshot_answer_field
    if field is not None and example.metadata.get(field) not in (None, ""):
        return str(example.metadata[field])
    return example.answer


def prompt_text(item: Item, task: TaskSpec, fewshot: Sequence[Item], tokenizer, chat: bool) -> str:
    """The full prompt text of ``item`` (with few-shot examples; chat-formatted if ``chat``)."""
    if chat:
        messages: list[dict[str, str]] = []
        for ex in fewshot:
            messages.append({"role": "user", "content": render_item(ex, task)})
            messages.append({"role": "assistant", "content": fewshot_answer(ex, task)})
        messages.append({"role": "user", "content": render_item(item, task)})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = [render_item(ex, task) + task.target_delimiter + fewshot_answer(ex, task)
             for ex in fewshot]
    parts.append(render_item(item, task))
    return task.fewshot_separator.join(parts)


def _item_settings(task_hash: str, tok_id: str, item: Item, prompt_ids: Sequence[int],
                   targets: Sequence[Sequence[int]], detector_hash: str) -> str:
    """The item's cache-key part: a hash of exactly what its score depends on.

    Keyed on the encoded inputs (the prompt's token ids, with every few-shot example's text, the
    template's metadata fields and the chat template already in them; the scored continuations)
    rather than on few-shot *ids*: with ids, editing a few-shot example's text, or metadata a
    template or ``fewshot_answer_field`` shows, silently returned the old score. This changed
    every key once (caches written before it are recomputed, never misread). ``answer``,
    ``language`` and ``choices`` stay in: numeric/exact matching and the language rule read them.
    """
    raw = json.dumps([task_hash, tok_id, list(prompt_ids), [list(t) for t in targets],
                      item.answer, item.language, list(item.choices or ()), detector_hash],
                     ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _detector_hash(benchmark: Benchmark) -> str:
    """Hash of the pool prompts a trained language detector learns from ('' when none is used):
    with the ``benchmark`` detector, editing the pool changes which responses pass the rule."""
    rule = benchmark.task.language_rule
    if rule is None or rule.detector == "builtin":
        return ""
    raw = json.dumps([[it.language, it.prompt] for it in benchmark.pool], ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def tokenizer_id(tokenizer) -> str:
    """A stable description of a tokenizer (class, name, vocabulary size) for settings hashes."""
    return f"{type(tokenizer).__name__}|{getattr(tokenizer, 'name_or_path', '')}|{len(tokenizer)}"


def _continuations(tokenizer, contexts: list[str], context_ids: list[Sequence[int]],
                   conts: list[str], delimiter: str, add_special: bool) -> list[tuple[int, ...]]:
    """Token ids of each continuation as it is tokenised after its context.

    The pair is tokenised whole and split after the context's tokens (so merges across the
    boundary are tokenised as the model sees them); when the whole does not start with the
    context's tokens, the continuation is tokenised on its own.
    """
    full = tokenizer([c + delimiter + t for c, t in zip(contexts, conts)],
                     add_special_tokens=add_special)["input_ids"]
    ctx = [list(c) for c in context_ids]
    out = []
    for f, c, t in zip(full, ctx, conts):
        if len(f) > len(c) and f[: len(c)] == c:
            out.append(tuple(f[len(c):]))
        else:
            out.append(tuple(tokenizer(delimiter + t, add_special_tokens=False)["input_ids"]))
    return out


def encode_items(benchmark: Benchmark, tokenizer, items: Sequence[Item]) -> list[EncodedItem]:
    """Encodings of ``items`` (computed once per benchmark object and tokenizer, then cached)."""
    task = benchmark.task
    chat = uses_chat_template(task, tokenizer)
    key = ("encoded", id(tokenizer), chat)
    slot = benchmark._runtime_cache.get(key)
    if slot is None or slot[0] is not tokenizer:
        slot = (tokenizer, {})  # holding the tokenizer keeps its id from being reused
        benchmark._runtime_cache[key] = slot
    store: dict[str, EncodedItem] = slot[1]
    missing = [it for it in items if it.id not in store]
    if missing:
        store.update(_encode(benchmark, tokenizer, missing, chat))
    return [store[it.id] for it in items]


def _encode(benchmark: Benchmark, tokenizer, items: Sequence[Item], chat: bool
            ) -> dict[str, EncodedItem]:
    task = benchmark.task
    task_hash = task.settings_hash()
    tok_id = tokenizer_id(tokenizer)
    add_special = not chat  # chat templates write their own BOS
    fewshots = [select_fewshot(benchmark, it) for it in items]
    texts = [prompt_text(it, task, fs, tokenizer, chat) for it, fs in zip(items, fewshots)]
    prompts = tokenizer(texts, add_special_tokens=add_special)["input_ids"]
    delimiter = "" if chat else task.target_delimiter
    eos = tokenizer.eos_token_id
    # Which continuations each item scores, flattened for one batched tokenisation.
    owners: list[int] = []
    conts: list[str] = []
    if task.type in ("teacher_forced_exact", "generative_exact"):
        for i, it in enumerate(items):
            owners.append(i)
            conts.append(it.answer)
    elif task.type == "multiple_choice":
        for i, it in enumerate(items):
            for choice in it.choices or ():
                owners.append(i)
                conts.append(choice)
    cont_ids = (_continuations(tokenizer, [texts[i] for i in owners],
                               [prompts[i] for i in owners], conts, delimiter, add_special)
                if conts else [])
    targets: list[list[tuple[int, ...]]] = [[] for _ in items]
    chars: list[list[int]] = [[] for _ in items]
    for owner, text, ids in zip(owners, conts, cont_ids):
        if task.type == "teacher_forced_exact" and task.append_eos:
            if eos is None:
                raise EvaluationError("teacher_forced_exact with append_eos needs a tokenizer "
                                      "with an end-of-text token")
            ids = (*ids, eos)
        if not ids:
            raise EvaluationError(f"benchmark {benchmark.name!r}: item {items[owner].id!r} has "
                                  f"an empty continuation {text!r} after tokenisation")
        targets[owner].append(tuple(ids))
        chars[owner].append(max(1, len(text)))
    detector_hash = _detector_hash(benchmark)
    out = {}
    for i, it in enumerate(items):
        if not prompts[i]:
            raise EvaluationError(f"benchmark {benchmark.name!r}: item {it.id!r} has an empty "
                                  "prompt after tokenisation (no BOS token either)")
        out[it.id] = EncodedItem(prompt=tuple(prompts[i]), targets=tuple(targets[i]),
                                 target_chars=tuple(chars[i]),
                                 settings=_item_settings(task_hash, tok_id, it, prompts[i],
                                                         targets[i], detector_hash))
    return out

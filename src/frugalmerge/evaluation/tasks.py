"""Benchmarks and task settings: :class:`Item`, :class:`TaskSpec`, :class:`Benchmark`, splits.

A task *type* names how an item is scored; types live in a decorator-based registry
(:func:`register_task_type`) so the runner can look up the scorer of each type.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from frugalmerge.evaluation.errors import EvaluationError
from frugalmerge.evaluation.extract import EXTRACTORS, NORMALIZERS
from frugalmerge.evaluation.language import DETECTORS


@dataclass(frozen=True)
class TaskType:
    """A registered task type: its name, whether it generates text, and a one-line description."""

    name: str
    generative: bool
    description: str


TASK_TYPES: dict[str, TaskType] = {}


def register_task_type(name: str, *, generative: bool, description: str):
    """Class/function decorator registering task type ``name`` (the decorated object is returned)."""

    def decorator(obj):
        TASK_TYPES[name] = TaskType(name=name, generative=generative, description=description)
        return obj

    return decorator


# The four built-in types. Their scorers live in ``runner.py``; registering the names here keeps
# ``TaskSpec`` validation free of torch.
register_task_type("generative_numeric", generative=True,
                   description="greedy generation; the extracted number must equal the answer")(None)
register_task_type("generative_exact", generative=True,
                   description="greedy generation; the normalised text must equal the answer")(None)
register_task_type("multiple_choice", generative=False,
                   description="the choice with the highest log-likelihood must be the answer")(None)
register_task_type("teacher_forced_exact", generative=False,
                   description="one forward pass; greedy argmax must match every reference "
                               "token incl. the stop token (= greedy decoding except exact ties)")(None)


class Item(BaseModel):
    """One benchmark item. ``answer`` is the reference (for multiple choice: the correct choice's
    text or its index as a string); ``choices`` only for multiple choice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    prompt: str
    answer: str
    language: str = "en"
    choices: tuple[str, ...] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", "answer", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        # ids and answers are often numbers in jsonl/csv files; keep them as exact strings
        if isinstance(value, bool) or value is None:
            return value
        return str(value) if isinstance(value, (int, float)) else value


class LanguageRule(BaseModel):
    """Language fidelity: a generated response counts only if it is in the target language.

    ``target`` None means the item's own ``language``. ``detector`` is a registered detector
    (``builtin``: stop words + scripts, embedded; ``benchmark``: character n-gram profiles trained
    from the benchmark's own prompts). Responses with fewer than ``min_words`` words cannot be
    judged; ``undetermined`` says whether they pass or fail.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: str | None = None
    detector: str = "builtin"
    min_words: int = Field(default=3, ge=1)
    undetermined: Literal["pass", "fail"] = "pass"

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, value: str) -> str:
        # Checked here, not when the first response is judged: that is after all the generation.
        if value not in DETECTORS:
            raise ValueError(f"unknown language detector {value!r}; known: {sorted(DETECTORS)}")
        return value


#: The built-in types, and the type-specific settings each reads (the others read by all types:
#: few-shot, template, delimiters, chat template). A type registered later is not checked.
BUILTIN_TYPES = ("generative_numeric", "generative_exact", "multiple_choice", "teacher_forced_exact")
TYPE_SETTINGS: dict[str, tuple[str, ...]] = {
    "max_new_tokens": ("generative_numeric", "generative_exact"),
    "stop": ("generative_numeric", "generative_exact"),
    "extractor": ("generative_numeric",),
    "numeric_tolerance": ("generative_numeric",),
    "stop_on_answer": ("generative_numeric",),
    "normalizer": ("generative_exact",),
    "append_eos": ("teacher_forced_exact",),
    "choice_normalization": ("multiple_choice",),
}


class TaskSpec(BaseModel):
    """How items are prompted and scored. Everything here enters the cache key (settings hash)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    num_fewshot: int = Field(default=0, ge=0)
    fewshot_seed: int = 0
    #: Metadata key holding the answer text shown in few-shot examples (e.g. GSM8K's worked
    #: ``solution``); None or a missing key: the item's ``answer``.
    fewshot_answer_field: str | None = None
    #: Formats the item; fields: ``{prompt}`` plus any item metadata key.
    prompt_template: str = "{prompt}"
    #: Separates few-shot examples from each other and from the item.
    fewshot_separator: str = "\n\n"
    #: Between the prompt and the answer, in few-shot examples and scored continuations.
    target_delimiter: str = " "
    max_new_tokens: int = Field(default=32, ge=1)
    #: Generation stops at the first of these strings (and at end of text); they are cut off.
    stop: tuple[str, ...] = ()
    #: teacher_forced_exact: the end-of-text token is part of the reference (the answer is complete).
    append_eos: bool = True
    #: None: use the tokenizer's chat template when it has one; True: require one; False: never.
    use_chat_template: bool | None = None
    #: generative_numeric: registered extractor (``auto``, ``last_number``, ``hash``, ``answer_is``).
    extractor: str = "auto"
    #: generative_exact: registered normaliser (``strict``, ``whitespace``, ``loose``).
    normalizer: str = "loose"
    #: multiple_choice: compare summed log-likelihoods (``none``) or per character (``length``).
    choice_normalization: Literal["none", "length"] = "none"
    #: generative_numeric: absolute tolerance when comparing the extracted number.
    numeric_tolerance: float = Field(default=1e-6, ge=0)
    #: generative_numeric: stop a response once it states its final answer ("The answer is 12."
    #: or "#### 12" followed by a non-number character): the rest cannot change the score.
    stop_on_answer: bool = True
    #: Graded instead of 0/1 scores: teacher_forced_exact -> fraction of reference tokens the
    #: model predicts; multiple_choice -> probability of the correct choice among the choices.
    graded: bool = False
    #: teacher_forced_exact, graded: ``token_accuracy`` (the fraction of reference tokens greedy
    #: argmax reproduces) or ``token_probability`` (the geometric mean of the probabilities the
    #: model gives the reference tokens: continuous, so it separates models whose argmax agrees).
    graded_measure: Literal["token_accuracy", "token_probability"] = "token_accuracy"
    language_rule: LanguageRule | None = None

    @field_validator("type", "extractor", "normalizer")
    @classmethod
    def _known_name(cls, value: str, info: ValidationInfo) -> str:
        # Extractor and normalizer are checked for every type (not only the generative ones): a
        # typo should never pass silently, and the scorer would otherwise fail after the generation.
        registry = {"type": TASK_TYPES, "extractor": EXTRACTORS, "normalizer": NORMALIZERS}[info.field_name]
        if value not in registry:
            what = "task type" if info.field_name == "type" else info.field_name
            raise ValueError(f"unknown {what} {value!r}; known: {sorted(registry)}")
        return value

    @model_validator(mode="after")
    def _rule_needs_generation(self) -> TaskSpec:
        if self.language_rule is not None and not TASK_TYPES[self.type].generative:
            raise ValueError(f"a language_rule needs a generative task type; {self.type!r} "
                             "scores the reference, not a response")
        return self

    @model_validator(mode="after")
    def _settings_the_type_reads(self) -> TaskSpec:
        # A setting only another type reads (max_new_tokens on teacher_forced_exact, append_eos on
        # a generative type) changed nothing but the cache key; refused when it is not the default.
        # (graded, graded_measure and language_rule have their own checks with their own messages.)
        for name, types in TYPE_SETTINGS.items():
            if self.type in BUILTIN_TYPES and self.type not in types:
                if getattr(self, name) != type(self).model_fields[name].default:
                    raise ValueError(f"{name} is read by {' and '.join(sorted(types))}, not by {self.type!r}")
        return self

    @model_validator(mode="after")
    def _graded_types(self) -> TaskSpec:
        if self.graded and self.type not in ("teacher_forced_exact", "multiple_choice"):
            raise ValueError(f"graded scores exist for teacher_forced_exact and multiple_choice, "
                             f"not {self.type!r}")
        if self.graded_measure != "token_accuracy" and not (self.graded and self.type == "teacher_forced_exact"):
            raise ValueError(f"graded_measure {self.graded_measure!r} needs graded: true and the "
                             f"teacher_forced_exact type (got graded={self.graded}, type {self.type!r})")
        return self

    @property
    def generative(self) -> bool:
        """Whether items are scored by generating text."""
        return TASK_TYPES[self.type].generative

    def with_overrides(self, changes: Mapping[str, Any]) -> TaskSpec:
        """These settings with ``changes`` applied, validated like a new spec (``ValueError``:
        e.g. ``graded`` on a type that has no graded score). ``model_copy`` would skip validation."""
        return TaskSpec.model_validate({**self.model_dump(), **changes})

    def settings_hash(self) -> str:
        """A short stable hash of these settings (part of every cache key)."""
        settings = self.model_dump(mode="json")
        # A field added later enters the hash only when set, so existing caches keep their keys.
        if settings["graded_measure"] == "token_accuracy":
            del settings["graded_measure"]
        raw = json.dumps(settings, sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def validation_message(exc: ValidationError) -> str:
    """A pydantic error as one line, ``field: message; ...`` (pydantic's own text spans lines,
    repeats the input and ends with a URL)."""
    parts = []
    for err in exc.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        loc = ".".join(map(str, err["loc"]))
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def as_task(task: TaskSpec | str | dict[str, Any]) -> TaskSpec:
    """Coerce a task type name or a settings dict into a :class:`TaskSpec`."""
    if isinstance(task, TaskSpec):
        return task
    try:
        if isinstance(task, str):
            return TaskSpec(type=task)
        return TaskSpec.model_validate(task)
    except ValidationError as exc:
        # Not the settings themselves: for a dict without ``type`` they are the whole merged
        # default spec, which buries the one field that is wrong.
        raise EvaluationError(f"invalid task settings: {validation_message(exc)}") from None


@dataclass(frozen=True, eq=False)
class Benchmark:
    """A named list of items and the task that scores them.

    ``fewshot_pool`` holds the items few-shot examples are drawn from (default: the benchmark's
    own items, never the item itself); a :meth:`subset` keeps its parent's pool so that an item's
    prompt is the same whichever subset it is evaluated in. Benchmarks compare by identity: the
    runner caches tokenised prompts on the object.
    """

    name: str
    task: TaskSpec
    items: tuple[Item, ...]
    fewshot_pool: tuple[Item, ...] | None = None
    _index: dict[str, int] = field(init=False, repr=False)
    _runtime_cache: dict[Any, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", as_task(self.task))
        object.__setattr__(self, "items", tuple(self.items))
        index: dict[str, int] = {}
        for pos, item in enumerate(self.items):
            if item.id in index:
                raise EvaluationError(f"benchmark {self.name!r}: duplicate item id {item.id!r}")
            index[item.id] = pos
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_runtime_cache", {})
        if self.task.type == "multiple_choice":
            for item in self.items:
                _check_choices(self.name, item)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    @property
    def item_ids(self) -> list[str]:
        """Item ids in benchmark order."""
        return [item.id for item in self.items]

    def __getitem__(self, item_id: str) -> Item:
        try:
            return self.items[self._index[item_id]]
        except KeyError:
            raise EvaluationError(f"benchmark {self.name!r} has no item {item_id!r}") from None

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def resolve(self, item_ids: Iterable[str] | None) -> list[Item]:
        """The items with these ids (all items for None); unknown ids raise one error listing them."""
        if item_ids is None:
            return list(self.items)
        ids = list(item_ids)
        unknown = [i for i in ids if i not in self._index]
        if unknown:
            shown = ", ".join(map(repr, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
            raise EvaluationError(f"benchmark {self.name!r} has no items {shown} "
                                  f"({len(unknown)} unknown ids)")
        return [self.items[self._index[i]] for i in ids]

    def subset(self, item_ids: Iterable[str], name: str | None = None) -> Benchmark:
        """A benchmark of these items (in the given order), sharing task and few-shot pool.

        A subset also shares its parent's runtime caches (tokenised prompts, language
        detectors): they depend only on task, pool and tokenizer, which are the same.
        """
        sub = Benchmark(name=name or self.name, task=self.task, items=tuple(self.resolve(item_ids)),
                        fewshot_pool=self.pool)
        object.__setattr__(sub, "_runtime_cache", self._runtime_cache)
        return sub

    def with_task(self, task: TaskSpec | str | dict[str, Any]) -> Benchmark:
        """The same items scored by another task."""
        return Benchmark(name=self.name, task=as_task(task), items=self.items,
                         fewshot_pool=self.fewshot_pool)

    @property
    def pool(self) -> tuple[Item, ...]:
        """Items few-shot examples are drawn from."""
        return self.fewshot_pool if self.fewshot_pool is not None else self.items

    @property
    def languages(self) -> list[str]:
        """Distinct item languages, sorted."""
        return sorted({item.language for item in self.items})


def _check_choices(name: str, item: Item) -> None:
    if not item.choices or len(item.choices) < 2:
        raise EvaluationError(f"benchmark {name!r}: multiple-choice item {item.id!r} needs at "
                              "least two choices")
    if _choice_index(item.answer, item.choices) is None:
        raise EvaluationError(f"benchmark {name!r}: item {item.id!r} answer {item.answer!r} is "
                              "neither one of its choices, a choice index nor a choice letter")


def _choice_index(answer: str, choices: tuple[str, ...]) -> int | None:
    if answer in choices:
        return choices.index(answer)
    if answer.isdigit() and int(answer) < len(choices):
        return int(answer)
    letter = answer.strip().upper()
    if len(letter) == 1 and "A" <= letter <= "Z" and ord(letter) - ord("A") < len(choices):
        return ord(letter) - ord("A")  # ARC / MMLU style answer keys
    return None


def choice_index(item: Item) -> int:
    """Index of the correct choice of a multiple-choice item: the answer as a choice's text,
    else as an index (``"2"``), else as a letter (``"C"``)."""
    assert item.choices is not None
    index = _choice_index(item.answer, item.choices)
    if index is None:
        raise EvaluationError(f"item {item.id!r}: answer {item.answer!r} matches no choice")
    return index


def split_items(
    items: Sequence[Item] | Sequence[str],
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    names: Sequence[str] = ("train", "search", "test"),
) -> dict[str, list]:
    """Disjoint seeded random splits of ``items`` (items or ids) with the given fractions.

    Fractions must be positive and sum to at most 1 (a remainder is left out). Sizes are rounded
    down and the rounding remainder goes to the first splits, so sizes differ from the exact
    fractions by less than one item. Order inside each split follows the input order.
    """
    if len(fractions) != len(names):
        raise EvaluationError(f"split_items: {len(fractions)} fractions for {len(names)} names")
    if any(f <= 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise EvaluationError(f"split_items: fractions {list(fractions)} must be positive and "
                              "sum to at most 1")
    n = len(items)
    exact = [f * n for f in fractions]
    sizes = [int(np.floor(x)) for x in exact]
    target_total = min(n, int(round(sum(exact))))
    order = np.argsort([-(x - s) for x, s in zip(exact, sizes)], kind="stable")
    for k in order[: max(0, target_total - sum(sizes))]:
        sizes[k] += 1
    perm = np.random.default_rng(seed).permutation(n)
    out: dict[str, list] = {}
    start = 0
    for split, size in zip(names, sizes):
        chosen = sorted(perm[start:start + size].tolist())
        out[split] = [items[i] for i in chosen]
        start += size
    return out

"""Training streams and benchmark files of the zoo.

A training *mixture* is a tuple of :class:`Source` (a kind of example, its language and its
weight). Kinds:

- ``text``: a plain sentence (language exposure);
- ``problem_eq``: a word problem followed by its equation, with the *result* masked out of the
  loss (reading skill: problem -> equation, never trained to compute);
- ``problem_full``: a word problem, its equation and its result (all trained);
- ``equation``: a bare equation line ``= 7 + 5 = 12`` (solving skill, no language);
- ``replay``: an example drawn from the base model's mixture (keeps fine-tunes close to the base).

Problems used for training always come from the ``train`` split of the problem structures, so
search and test items are never seen in training, in any language.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from frugalmerge._atomic import atomic_write_text
from frugalmerge.zoo.languages import (
    LANGUAGE_NAMES,
    LANGUAGES,
    Problem,
    sample_equation,
    sample_problem,
    sample_sentence,
    split_of,
)

KINDS = ("text", "problem_eq", "problem_full", "equation", "replay")


class Source(BaseModel):
    """One component of a training mixture."""

    model_config = ConfigDict(frozen=True)

    kind: str
    language: str = "en"
    weight: float = Field(gt=0)

    def model_post_init(self, __context: object) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown example kind {self.kind!r}; expected one of {KINDS}")
        if self.language not in LANGUAGES:
            raise ValueError(f"unknown language {self.language!r}; expected one of {LANGUAGES}")


def sample_train_problem(rng: np.random.Generator) -> Problem:
    """A problem whose structure belongs to the train split."""
    while True:
        problem = sample_problem(rng)
        if split_of(problem.key) == "train":
            return problem


def render_example(source: Source, rng: np.random.Generator) -> tuple[str, str, bool]:
    """``(context, continuation, train_result)`` for one example of ``source``.

    The token sequence is ``context + continuation``; when ``train_result`` is false the tokens
    of the result (after the last ``=``) and the end of text are excluded from the loss.
    """
    if source.kind == "text":
        return sample_sentence(rng, source.language), "", True
    if source.kind == "equation":
        return sample_equation(rng), "", True
    problem = sample_train_problem(rng)
    return problem.render(source.language), problem.equation, source.kind == "problem_full"


class ExampleStream:
    """A seeded, endless stream of tokenized training examples drawn from a mixture."""

    def __init__(self, mixture: Sequence[Source], replay: Sequence[Source], tokenizer,
                 seed: int) -> None:
        self.mixture = tuple(mixture)
        self.replay = tuple(replay)
        if any(s.kind == "replay" for s in self.replay):
            raise ValueError("a replay mixture cannot itself contain replay sources")
        if any(s.kind == "replay" for s in self.mixture) and not self.replay:
            raise ValueError("the mixture asks for replay but no replay mixture was given")
        self.tokenizer = tokenizer
        self.rng = np.random.default_rng(seed)
        self.eos = tokenizer.eos_token_id
        self._equals = tokenizer.convert_tokens_to_ids("=")

    @staticmethod
    def _pick(sources: Sequence[Source], rng: np.random.Generator) -> Source:
        weights = np.array([s.weight for s in sources], dtype=float)
        return sources[int(rng.choice(len(sources), p=weights / weights.sum()))]

    def next_example(self) -> tuple[list[int], list[float]]:
        """Token ids and per-token loss weights (for the token's prediction) of one example."""
        source = self._pick(self.mixture, self.rng)
        if source.kind == "replay":
            source = self._pick(self.replay, self.rng)
        context, continuation, train_result = render_example(source, self.rng)
        text = f"{context} {continuation}" if continuation else context
        ids = list(self.tokenizer(text)["input_ids"]) + [self.eos]
        weights = [1.0] * len(ids)
        weights[0] = 0.0  # BOS is given, never predicted
        if not train_result:
            last_eq = max(i for i, t in enumerate(ids) if t == self._equals)
            for i in range(last_eq + 1, len(ids)):
                weights[i] = 0.0
        return ids, weights

    def next_batch(self, batch_size: int):
        """``(input_ids, attention_mask, loss_weights)`` tensors, right-padded."""
        import torch

        examples = [self.next_example() for _ in range(batch_size)]
        width = max(len(ids) for ids, _ in examples)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((batch_size, width), pad, dtype=torch.long)
        mask = torch.zeros((batch_size, width), dtype=torch.long)
        weights = torch.zeros((batch_size, width), dtype=torch.float32)
        for row, (ids, w) in enumerate(examples):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
            weights[row, : len(w)] = torch.tensor(w)
        return input_ids, mask, weights


# --- benchmarks -------------------------------------------------------------------------------

def split_problems(split: str, count: int, seed: int) -> list[Problem]:
    """``count`` distinct problems of ``split``, in a fixed order (the same in every language)."""
    rng = np.random.default_rng(seed)
    problems: dict[str, Problem] = {}
    attempts = 0
    while len(problems) < count:
        attempts += 1
        if attempts > 10_000 * max(count, 1):
            raise RuntimeError(f"could not draw {count} distinct {split} problems")
        problem = sample_problem(rng)
        if split_of(problem.key) == split and problem.key not in problems:
            problems[problem.key] = problem
    return list(problems.values())


ANSWER_KINDS = ("solve", "read")


def benchmark_items(name: str, language: str, split: str, problems: Sequence[Problem],
                    kind: str = "solve") -> list[dict]:
    """Benchmark items ``{id, prompt, answer, language, metadata}`` for problems in ``language``.

    ``solve``: the answer is the whole equation line with its result (``7 + 5 = 12``);
    ``read``: the answer is the equation without its result (``7 + 5 =``): reading only.
    """
    if kind not in ANSWER_KINDS:
        raise ValueError(f"unknown answer kind {kind!r}; expected one of {ANSWER_KINDS}")
    items = []
    for i, problem in enumerate(problems):
        answer = problem.equation if kind == "solve" else f"{problem.a} {problem.op} {problem.b} ="
        items.append({
            "id": f"{name}-{split}-{i:04d}",
            "prompt": problem.render(language),
            "answer": answer,
            "language": language,
            "metadata": {
                "split": split,
                "operation": "add" if problem.op == "+" else "subtract",
                "result": problem.result,
                "operands": [problem.a, problem.b],
                "distractor": problem.distractor,
                "structure": problem.key,
                "language_name": LANGUAGE_NAMES[language],
            },
        })
    return items


def write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    """Write rows as jsonl atomically (temporary file in the same folder, then rename)."""
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows))

"""The evaluation stage: benchmarks, loaders, answer extraction, language fidelity and the runner.

Importing this package loads no torch: the runner imports it when it runs.
"""

from __future__ import annotations

from frugalmerge.evaluation.cache import EvalCache, model_fingerprint
from frugalmerge.evaluation.errors import BenchmarkFormatError, EvaluationError
from frugalmerge.evaluation.extract import (
    EXTRACTORS,
    NORMALIZERS,
    exact_match,
    numeric_match,
    parse_number,
    register_extractor,
    register_normalizer,
)
from frugalmerge.evaluation.language import (
    DETECTORS,
    detect_language,
    make_detector,
    register_detector,
)
from frugalmerge.evaluation.loaders import FORMATS, load_benchmark, register_format
from frugalmerge.evaluation.runner import (
    SCORERS,
    accuracy,
    evaluate,
    greedy_generate,
    register_scorer,
    score_continuations,
)
from frugalmerge.evaluation.tasks import (
    TASK_TYPES,
    Benchmark,
    Item,
    LanguageRule,
    TaskSpec,
    register_task_type,
    split_items,
)

__all__ = [
    "DETECTORS",
    "EXTRACTORS",
    "FORMATS",
    "NORMALIZERS",
    "SCORERS",
    "TASK_TYPES",
    "Benchmark",
    "BenchmarkFormatError",
    "EvalCache",
    "EvaluationError",
    "Item",
    "LanguageRule",
    "TaskSpec",
    "accuracy",
    "detect_language",
    "evaluate",
    "exact_match",
    "greedy_generate",
    "load_benchmark",
    "make_detector",
    "model_fingerprint",
    "numeric_match",
    "parse_number",
    "register_detector",
    "register_extractor",
    "register_format",
    "register_normalizer",
    "register_scorer",
    "register_task_type",
    "score_continuations",
    "split_items",
]

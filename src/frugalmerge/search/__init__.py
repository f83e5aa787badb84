"""The search stage: evolve merge recipes with cheap fitness.

Public API (imported lazily, so ``import frugalmerge.search`` stays light): :func:`load_config` /
:func:`config_from_dict` (validated :class:`SearchConfig`), :class:`SearchSpace` (genotype ->
recipe), :func:`make_algorithm` / :func:`algorithm_names` (the optimiser registry),
:func:`run_search` (``frugalmerge evolve``), :func:`run_demo` (``frugalmerge demo``) and the errors
:class:`SearchError`, :class:`ConfigError`, :class:`ResumeError`.
"""

from __future__ import annotations

from frugalmerge._lazy import lazy_getattr

from frugalmerge.search.errors import ConfigError, ResumeError, SearchError

_EXPORTS = {
    "SearchConfig": "frugalmerge.search.config",
    "load_config": "frugalmerge.search.config",
    "config_from_dict": "frugalmerge.search.config",
    "SearchSpace": "frugalmerge.search.space",
    "make_algorithm": "frugalmerge.search.algorithms",
    "algorithm_names": "frugalmerge.search.algorithms",
    "register_algorithm": "frugalmerge.search.algorithms",
    "register_objective": "frugalmerge.search.fitness",
    "run_search": "frugalmerge.search.loop",
    "run_demo": "frugalmerge.search.demo",
}

__all__ = sorted([*_EXPORTS, "SearchError", "ConfigError", "ResumeError"])


__getattr__ = lazy_getattr(__name__, _EXPORTS)

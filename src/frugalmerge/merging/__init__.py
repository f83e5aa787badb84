"""The merging stage: mergekit-compatible merges, streamed to disk or materialized in memory.

Public surface (imported lazily so that ``import frugalmerge`` stays light):
``MergeRecipe``, ``MergeEngine``, ``export_merge``, ``run_merge``, ``MERGE_METHODS``,
``merge_method``, ``get_method`` and the errors ``MergeError``, ``RecipeError``,
``CheckpointError``, ``IncompatibleModelsError``, ``PlacementError``.
"""

from __future__ import annotations

from frugalmerge._lazy import lazy_getattr

_EXPORTS = {
    "MergeRecipe": "frugalmerge.merging.recipe",
    "MergeEngine": "frugalmerge.merging.engine",
    "PlacementPlan": "frugalmerge.merging.engine",
    "export_merge": "frugalmerge.merging.export",
    "run_merge": "frugalmerge.merging.execute",
    "MERGE_METHODS": "frugalmerge.merging.methods",
    "merge_method": "frugalmerge.merging.methods",
    "get_method": "frugalmerge.merging.methods",
    "MergeError": "frugalmerge.merging.errors",
    "RecipeError": "frugalmerge.merging.errors",
    "CheckpointError": "frugalmerge.merging.errors",
    "IncompatibleModelsError": "frugalmerge.merging.errors",
    "PlacementError": "frugalmerge.merging.errors",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)

"""Exceptions of the merging stage: each carries one line naming the culprit."""

from __future__ import annotations


class MergeError(ValueError):
    """Base class of every error raised by ``frugalmerge.merging``."""


class RecipeError(MergeError):
    """A merge recipe (YAML or dict) is invalid: unknown method, bad parameter, bad structure."""


class CheckpointError(MergeError):
    """A model directory is missing, unreadable, corrupt or holds non-finite weights."""


class IncompatibleModelsError(MergeError):
    """Models to merge differ in architecture, tensor names or shapes."""


class PlacementError(MergeError):
    """The engine cannot place its cached tensors within the given memory budgets."""


class DeviceMemoryError(MergeError):
    """One tensor's operands do not fit within the streaming merge's device memory budget."""

"""Exceptions of the search stage: one clear message naming the culprit."""

from __future__ import annotations


class SearchError(Exception):
    """Base class of every error raised by :mod:`frugalmerge.search`."""


class ConfigError(SearchError):
    """A search configuration is invalid (raised before any work starts)."""


class ResumeError(SearchError):
    """A run directory cannot be resumed (missing or inconsistent checkpoint)."""

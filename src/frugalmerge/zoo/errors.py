"""Errors of the zoo stage."""

from __future__ import annotations


class ZooError(Exception):
    """A zoo could not be built, found or read; the message names the culprit."""

"""The demo zoo: tiny models this project trains itself, and benchmarks in three languages.

``load_zoo(dir)`` reads a built zoo's manifest, ``ensure_zoo(size, dir)`` returns a ready zoo
(the shipped prebuilt one for ``full``, or builds it), ``build_zoo(size, out)`` builds one.
Importing this package does no work: torch and transformers load only when a zoo is built.
"""

from __future__ import annotations

from frugalmerge.zoo.errors import ZooError
from frugalmerge.zoo.manifest import BenchmarkEntry, Showcase, ZooManifest, load_zoo
from frugalmerge.zoo.registry import PREBUILT_DIR, default_zoo_dir, ensure_zoo, prebuilt_zoo_dir


def build_zoo(size: str, out, **kwargs):
    """Build the zoo of ``size`` into ``out`` (see :func:`frugalmerge.zoo.build.build_zoo`)."""
    from frugalmerge.zoo.build import build_zoo as _build

    return _build(size, out, **kwargs)


__all__ = [
    "PREBUILT_DIR",
    "BenchmarkEntry",
    "Showcase",
    "ZooError",
    "ZooManifest",
    "build_zoo",
    "default_zoo_dir",
    "ensure_zoo",
    "load_zoo",
    "prebuilt_zoo_dir",
]

"""Where zoos live: the prebuilt full zoo shipped with the package, and a per-user cache."""

from __future__ import annotations

import os
from pathlib import Path

from frugalmerge.zoo.errors import ZooError
from frugalmerge.zoo.manifest import MANIFEST_NAME, ZooManifest, load_zoo

SIZES = ("smoke", "full")

#: The full zoo, built by ``frugalmerge zoo build --size full`` and shipped in the package so
#: the demo starts searching right after install.
PREBUILT_DIR = Path(__file__).resolve().parent / "prebuilt"


def prebuilt_zoo_dir(size: str) -> Path | None:
    """The shipped zoo of ``size``, or ``None`` when this installation has none."""
    path = PREBUILT_DIR / size
    return path if (path / MANIFEST_NAME).is_file() else None


def default_zoo_dir(size: str) -> Path:
    """Where :func:`ensure_zoo` builds a zoo when no folder is given
    (``$FRUGALMERGE_CACHE/zoo-<size>``, default ``~/.cache/frugalmerge``)."""
    cache = os.environ.get("FRUGALMERGE_CACHE") or Path.home() / ".cache" / "frugalmerge"
    return Path(cache).expanduser() / f"zoo-{size}"


def ensure_zoo(size: str = "full", directory: str | Path | None = None) -> ZooManifest:
    """A ready zoo of ``size``.

    In order: ``directory`` when it already holds a zoo (of that size); the shipped prebuilt zoo
    (``full``); otherwise a fresh build into ``directory`` (default :func:`default_zoo_dir`).
    """
    if size not in SIZES:
        raise ZooError(f"unknown zoo size {size!r}; expected one of {SIZES}")
    if directory is not None and (Path(directory) / MANIFEST_NAME).is_file():
        zoo = load_zoo(directory)
        if zoo.size != size:
            raise ZooError(f"{directory} holds a {zoo.size!r} zoo, not the {size!r} zoo asked for")
        return zoo
    shipped = prebuilt_zoo_dir(size)
    if shipped is not None:
        return load_zoo(shipped)
    from frugalmerge.zoo.build import build_zoo

    target = Path(directory) if directory is not None else default_zoo_dir(size)
    if (target / MANIFEST_NAME).is_file():
        return load_zoo(target)
    build_zoo(size, target, overwrite=target.exists())
    return load_zoo(target)

"""Atomic directory output shared by every stage that writes a folder (merges, cards, the zoo)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    """The process umask (read by setting and restoring it: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class OutputInUseError(FileExistsError):
    """The output path holds something other than an earlier output of the same kind."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync, rename; the
    temporary file is removed on any failure (a directory at ``path``, a full disk, Ctrl-C)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600); outputs are shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def check_parents(path: str | Path, what: str = "output path") -> None:
    """Refuse ``path`` when one of its parent folders is a file (it could never be created)."""
    path = Path(path)
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputInUseError(f"{what} {path}: {parent} is a file, not a directory")


def check_output_file(path: str | Path) -> None:
    """Fail early (before hours of work) when ``path`` cannot become a file: it is a directory, or
    one of its parents is a file."""
    path = Path(path)
    if path.is_dir():
        raise OutputInUseError(f"output file {path} is an existing directory")
    check_parents(path, "output file")


def check_replaceable(out_dir: str | Path, marker: str) -> None:
    """Refuse an output path that would destroy something that is not an earlier output of this
    kind: a file, or a non-empty directory without ``marker`` (the file every such output holds,
    e.g. ``card.json``). Mistyped ``--out`` paths (a data folder, a CSV) must not be wiped."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputInUseError(f"output path {out} is an existing file; not replacing it with a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).is_file():
        raise OutputInUseError(f"output path {out} is a non-empty directory without {marker}; "
                               f"not replacing it (choose a new or empty directory)")


@contextmanager
def atomic_dir(out_dir: str | Path, *, marker: str) -> Iterator[Path]:
    """A temporary sibling directory renamed to ``out_dir`` on success, removed on failure.

    An existing ``out_dir`` is replaced only once the new one is complete, and only if it is empty
    or an earlier output of the same kind (it holds ``marker``: see :func:`check_replaceable`).
    The folder gets the permissions of a plain ``mkdir`` (``mkdtemp`` makes it private, 0700),
    since merged models, cards and zoos are meant to be shared.
    """
    out = Path(out_dir).resolve()
    check_replaceable(out, marker)
    check_parents(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        mask = _umask()
        tmp.chmod(0o777 & ~mask)
        for f in tmp.rglob("*"):  # writers such as safetensors' save_file create private (0600) files
            if f.is_file() and not f.is_symlink():
                f.chmod(0o666 & ~mask)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "previous")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

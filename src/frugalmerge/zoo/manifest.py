"""The zoo manifest (``zoo.json``) and its typed loader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from frugalmerge.zoo.errors import ZooError

MANIFEST_NAME = "zoo.json"
SPLITS = ("train", "search", "test")


class BenchmarkSplits(BaseModel):
    """Paths of a benchmark's three disjoint splits."""

    model_config = ConfigDict(frozen=True)

    train: Path
    search: Path
    test: Path


class BenchmarkEntry(BaseModel):
    """One benchmark: its language, the evaluation task settings and its split files."""

    model_config = ConfigDict(frozen=True)

    language: str
    task: dict[str, Any]
    splits: BenchmarkSplits


class Showcase(BaseModel):
    """A merge showcase: the source models and the objectives (benchmark names)."""

    model_config = ConfigDict(frozen=True)

    models: list[str]
    objectives: list[str]
    description: str = ""


class ZooManifest(BaseModel):
    """A loaded zoo: every path is absolute (resolved against the zoo folder)."""

    model_config = ConfigDict(frozen=True)

    root: Path
    size: str
    base: str
    models: dict[str, Path]
    benchmarks: dict[str, BenchmarkEntry]
    showcases: dict[str, Showcase]
    build: dict[str, Any] = {}

    def model_path(self, name: str) -> Path:
        """Absolute directory of model ``name``."""
        try:
            return self.models[name]
        except KeyError:
            raise ZooError(f"zoo {self.root} has no model {name!r}; "
                           f"models: {sorted(self.models)}") from None

    @property
    def base_path(self) -> Path:
        """Absolute directory of the shared base model."""
        return self.model_path(self.base)

    def split_path(self, benchmark: str, split: str) -> Path:
        """Absolute jsonl path of ``benchmark``'s ``split`` (train, search or test)."""
        if benchmark not in self.benchmarks:
            raise ZooError(f"zoo {self.root} has no benchmark {benchmark!r}; "
                           f"benchmarks: {sorted(self.benchmarks)}")
        if split not in SPLITS:
            raise ZooError(f"unknown split {split!r}; expected one of {SPLITS}")
        return getattr(self.benchmarks[benchmark].splits, split)


def load_zoo(directory: str | Path) -> ZooManifest:
    """Read ``DIR/zoo.json`` and return the manifest with absolute paths.

    Raises :class:`ZooError` naming the file when it is missing, unreadable, malformed, or points
    at model folders / split files that do not exist.
    """
    root = Path(directory).expanduser().resolve()
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise ZooError(f"no zoo manifest at {path} (build one with `frugalmerge zoo build`)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ZooError(f"cannot read zoo manifest {path}: {exc}") from None
    try:
        models = {name: root / rel for name, rel in raw["models"].items()}
        benchmarks = {}
        for name, entry in raw["benchmarks"].items():
            splits = {split: root / entry["splits"][split] for split in SPLITS}
            benchmarks[name] = {**entry, "splits": splits}
        manifest = ZooManifest(root=root, size=raw["size"], base=raw["base"], models=models,
                               benchmarks=benchmarks, showcases=raw["showcases"],
                               build=raw.get("build", {}))
    except (KeyError, TypeError, AttributeError, ValidationError) as exc:
        raise ZooError(f"malformed zoo manifest {path}: {exc}") from exc
    if manifest.base not in manifest.models:
        raise ZooError(f"zoo manifest {path}: base {manifest.base!r} is not among its models")
    for name, model_dir in manifest.models.items():
        if not (model_dir / "config.json").is_file():
            raise ZooError(f"zoo manifest {path}: model {name!r} has no config.json in {model_dir}")
    for name, entry in manifest.benchmarks.items():
        for split in SPLITS:
            if not getattr(entry.splits, split).is_file():
                raise ZooError(f"zoo manifest {path}: benchmark {name!r} is missing its "
                               f"{split} split {getattr(entry.splits, split)}")
    for show_name, show in manifest.showcases.items():
        unknown = [m for m in show.models if m not in manifest.models]
        unknown += [o for o in show.objectives if o not in manifest.benchmarks]
        if unknown:
            raise ZooError(f"zoo manifest {path}: showcase {show_name!r} names unknown "
                           f"models/benchmarks {unknown}")
    return manifest

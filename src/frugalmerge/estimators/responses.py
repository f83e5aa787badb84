"""Response matrices (models x items) and their loaders.

A :class:`ResponseMatrix` holds per-item scores in [0, 1] (binary or graded) of some models, NaN
for "not evaluated", plus optionally each model's true full-benchmark score (the *target*).
Loaders are registered by file kind (``csv``, ``npz``, ``parquet``, ``jsonl`` for py-irt,
``pickle`` for the tinyBenchmarks/MiniLongBench ``lb.pickle`` layout, ``psn`` for the PSN-IRT
OpenCompass folder) and picked from the path by :func:`load_responses`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import pickle
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from frugalmerge._atomic import atomic_write_text
from frugalmerge.estimators.errors import ResponseError, UnknownNameError

__all__ = [
    "ResponseMatrix",
    "load_responses",
    "register_loader",
    "LOADERS",
]


def _check_ids(ids: Sequence[str], what: str, name: str) -> tuple[str, ...]:
    """Ids as strings; ``name`` (the matrix's source) prefixes errors so they say which file is bad."""
    out = tuple(str(i) for i in ids)
    if any(i == "" for i in out):
        raise ResponseError(f"{name}: empty {what} id at position {out.index('')}")
    if len(set(out)) != len(out):
        seen: set[str] = set()
        dup = next(i for i in out if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise ResponseError(f"{name}: duplicate {what} id {dup!r}")
    return out


@dataclass(frozen=True, eq=False)
class ResponseMatrix:
    """Scores of ``len(model_ids)`` models on ``len(item_ids)`` items; NaN = not evaluated.

    ``target`` (optional) is each model's full-benchmark score in [0, 1]; ``item_groups``
    (optional) names each item's subject/task/benchmark (used by stratified subsets).
    """

    values: np.ndarray
    model_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    target: np.ndarray | None = None
    item_groups: tuple[str, ...] | None = None
    name: str = "responses"
    _col: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 2:
            raise ResponseError(f"{self.name}: responses must be 2-D (models x items), got {values.ndim}-D")
        if values.shape[0] == 0 or values.shape[1] == 0:
            raise ResponseError(f"{self.name}: empty response matrix (shape {values.shape})")
        model_ids = _check_ids(self.model_ids, "model", self.name)
        item_ids = _check_ids(self.item_ids, "item", self.name)
        if len(model_ids) != values.shape[0]:
            raise ResponseError(f"{self.name}: {len(model_ids)} model ids for {values.shape[0]} rows")
        if len(item_ids) != values.shape[1]:
            raise ResponseError(f"{self.name}: {len(item_ids)} item ids for {values.shape[1]} columns")
        if np.isinf(values).any():
            r, c = np.argwhere(np.isinf(values))[0]
            raise ResponseError(f"{self.name}: infinite response for model {model_ids[r]!r}, item {item_ids[c]!r}")
        bad = ~np.isnan(values) & ((values < 0) | (values > 1))
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ResponseError(
                f"{self.name}: response {float(values[r, c])!r} of model {model_ids[r]!r} on item "
                f"{item_ids[c]!r} is outside [0, 1]"
            )
        empty_rows = np.isnan(values).all(axis=1)
        if empty_rows.any():
            raise ResponseError(f"{self.name}: model {model_ids[int(np.argmax(empty_rows))]!r} has no responses")
        target = self.target
        if target is not None:
            target = np.asarray(target, dtype=np.float64).reshape(-1)
            if target.shape[0] != values.shape[0]:
                raise ResponseError(f"{self.name}: {target.shape[0]} targets for {values.shape[0]} models")
            if not np.isfinite(target).all():
                i = int(np.argmax(~np.isfinite(target)))
                raise ResponseError(f"{self.name}: target of model {model_ids[i]!r} is missing (NaN)")
            if ((target < 0) | (target > 1)).any():
                i = int(np.argmax((target < 0) | (target > 1)))
                raise ResponseError(
                    f"{self.name}: target {float(target[i])!r} of model {model_ids[i]!r} is outside [0, 1] "
                    "(targets are fractions, not percentages)"
                )
            target.setflags(write=False)
        groups = self.item_groups
        if groups is not None:
            groups = tuple(str(g) for g in groups)
            if len(groups) != len(item_ids):
                raise ResponseError(f"{self.name}: {len(groups)} item groups for {len(item_ids)} items")
        values.setflags(write=False)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "model_ids", model_ids)
        object.__setattr__(self, "item_ids", item_ids)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "item_groups", groups)
        object.__setattr__(self, "_col", {i: c for c, i in enumerate(item_ids)})

    # -- basic views -------------------------------------------------------------------------
    @property
    def n_models(self) -> int:
        return self.values.shape[0]

    @property
    def n_items(self) -> int:
        return self.values.shape[1]

    @property
    def mask(self) -> np.ndarray:
        """True where a response was observed."""
        return ~np.isnan(self.values)

    def full_scores(self) -> np.ndarray:
        """What estimators predict: the target if given, else each model's mean over observed items."""
        if self.target is not None:
            return np.asarray(self.target)
        return np.nanmean(self.values, axis=1)

    def columns(self, item_ids: Iterable[str]) -> np.ndarray:
        """Column indices of ``item_ids``; a clear error names the first item that is absent."""
        out = []
        for i in item_ids:
            c = self._col.get(str(i))
            if c is None:
                raise ResponseError(f"{self.name}: item {i!r} is not in the responses")
            out.append(c)
        return np.asarray(out, dtype=np.int64)

    def take_items(self, item_ids: Sequence[str]) -> np.ndarray:
        """Dense (n_models, len(item_ids)) array of these items' responses (NaN = missing)."""
        return self.values[:, self.columns(item_ids)]

    def select_models(self, rows: Sequence[int] | np.ndarray) -> ResponseMatrix:
        """The sub-matrix of these rows (indices), keeping items, target and groups."""
        rows = np.asarray(rows, dtype=np.int64)
        return ResponseMatrix(
            values=self.values[rows],
            model_ids=tuple(self.model_ids[r] for r in rows),
            item_ids=self.item_ids,
            target=None if self.target is None else self.target[rows],
            item_groups=self.item_groups,
            name=self.name,
        )

    def select_items(self, item_ids: Sequence[str], *, keep_target: bool = True) -> ResponseMatrix:
        """The sub-matrix of these items (only rows with at least one response are allowed)."""
        cols = self.columns(item_ids)
        return ResponseMatrix(
            values=self.values[:, cols],
            model_ids=self.model_ids,
            item_ids=tuple(self.item_ids[c] for c in cols),
            target=self.target if keep_target else None,
            item_groups=None if self.item_groups is None else tuple(self.item_groups[c] for c in cols),
            name=self.name,
        )

    def reveal(self, item_ids: Sequence[str]) -> ResponseMatrix:
        """What a test model shows: only these items' responses, no target."""
        return self.select_items(item_ids, keep_target=False)

    def constant_items(self) -> list[str]:
        """Items every observed model got the same score on (no information for IRT)."""
        v = self.values
        lo, hi = np.nanmin(v, axis=0), np.nanmax(v, axis=0)
        return [self.item_ids[c] for c in np.flatnonzero(lo == hi)]

    def sha256(self) -> str:
        """Content hash of values, ids and target (stable across loaders and platforms)."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.values, dtype="<f8").tobytes())
        h.update("\x1f".join(self.model_ids).encode())
        h.update(b"\x1e")
        h.update("\x1f".join(self.item_ids).encode())
        if self.target is not None:
            h.update(b"\x1dtarget")
            h.update(np.ascontiguousarray(self.target, dtype="<f8").tobytes())
        return h.hexdigest()

    def to_csv(self, path: str | Path, target_col: str = "target") -> None:
        """Write the contract's CSV layout (atomically): ``model``, items..., optional target."""
        path = Path(path)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        header = ["model", *self.item_ids] + ([target_col] if self.target is not None else [])
        w.writerow(header)
        for r, m in enumerate(self.model_ids):
            row = [m] + ["" if np.isnan(x) else repr(float(x)) for x in self.values[r]]
            if self.target is not None:
                row.append(repr(float(self.target[r])))
            w.writerow(row)
        atomic_write_text(path, buf.getvalue())


# -- loaders ---------------------------------------------------------------------------------
Loader = Callable[..., ResponseMatrix]
LOADERS: dict[str, Loader] = {}


def register_loader(kind: str) -> Callable[[Loader], Loader]:
    """Decorator: register a loader ``f(path, target=None, block=None) -> ResponseMatrix``."""

    def deco(fn: Loader) -> Loader:
        LOADERS[kind] = fn
        return fn

    return deco


def _kind_of(path: Path) -> str:
    if path.is_dir():
        if (path / "combine.csv").is_file():
            return "psn"
        pickles = sorted(path.glob("*.pickle")) + sorted(path.glob("*.pkl"))
        if len(pickles) == 1:
            return "pickle"
        raise ResponseError(f"{path}: a directory must be a PSN-IRT folder (combine.csv) or hold one .pickle")
    suffix = "".join(path.suffixes[-1:]).lower()
    kinds = {".csv": "csv", ".npz": "npz", ".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl",
             ".pickle": "pickle", ".pkl": "pickle"}
    if suffix not in kinds:
        raise UnknownNameError(f"{path}: unknown response file type {suffix!r} (known: {', '.join(sorted(kinds))})")
    return kinds[suffix]


def load_responses(path: str | Path, target: str | None = None, *, block: str | None = None) -> ResponseMatrix:
    """Load a response matrix from any supported file.

    ``target`` names the column holding each model's full score (CSV/parquet/jsonl); ``block``
    restricts a multi-benchmark source (PSN-IRT folder, lb.pickle) to one benchmark/task. A path
    ``DIR#NAME`` is shorthand for ``block=NAME``.
    """
    text = str(path)
    if block is None and "#" in text and not Path(text).exists():
        text, block = text.rsplit("#", 1)
    p = Path(text)
    if not p.exists():
        raise ResponseError(f"{p}: no such file or directory")
    kind = _kind_of(p)
    return LOADERS[kind](p, target=target, block=block)


def _no_block(path: Path, block: str | None) -> None:
    if block is not None:
        raise ResponseError(f"{path}: this file type has no benchmark blocks (got block {block!r})")


def _groups_from_ids(item_ids: Sequence[str]) -> tuple[str, ...] | None:
    """MMLU-style ids ``subject.idx`` give a subject per item; otherwise no groups."""
    parts = [i.rsplit(".", 1) for i in item_ids]
    if all(len(p) == 2 and p[1].isdigit() for p in parts) and len({p[0] for p in parts}) > 1:
        return tuple(p[0] for p in parts)
    return None


def _target_from_column(path: Path, values: np.ndarray, cols: list[str], target: str | None):
    if target is None:
        if "target" in cols:
            # ResponseMatrix.to_csv writes its targets under this name: read back without --target,
            # the scores became one more item, silently.
            raise ResponseError(f"{path}: column 'target' would be read as an item; pass --target target to "
                                "use it as the true full score (rename it if it really is an item)")
        return values, cols, None
    if target not in cols:
        raise ResponseError(f"{path}: target column {target!r} not found")
    j = cols.index(target)
    t = values[:, j]
    if np.isnan(t).any():
        raise ResponseError(f"{path}: target column {target!r} has an empty value (row {int(np.argmax(np.isnan(t)))})")
    return np.delete(values, j, axis=1), cols[:j] + cols[j + 1:], t


@register_loader("csv")
def load_csv(path: Path, target: str | None = None, block: str | None = None) -> ResponseMatrix:
    """Contract CSV: first column ``model``, other columns item ids, empty cell = missing."""
    _no_block(path, block)
    try:
        # The contract's CSV is UTF-8 whatever the locale says.
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as e:
        raise ResponseError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except csv.Error as e:
        raise ResponseError(f"{path}: malformed CSV ({e})") from None
    if not rows:
        raise ResponseError(f"{path}: empty file")
    header = [h.strip() for h in rows[0]]
    if not header:
        raise ResponseError(f"{path}: first line is blank; it must be the header 'model,<item ids>...'")
    if header[0] != "model":
        raise ResponseError(f"{path}: first column must be 'model', got {header[0]!r}")
    body = [r for r in rows[1:] if r]
    if not body:
        raise ResponseError(f"{path}: no model rows")
    values = np.full((len(body), len(header) - 1), np.nan)
    for r, row in enumerate(body):
        if len(row) != len(header):
            raise ResponseError(f"{path}: row {r + 2} has {len(row)} cells, header has {len(header)}")
        for c, cell in enumerate(row[1:]):
            cell = cell.strip()
            if cell == "":
                continue
            try:
                values[r, c] = float(cell)
            except ValueError:
                raise ResponseError(f"{path}: row {r + 2}, column {header[c + 1]!r}: not a number: {cell!r}") from None
            if np.isnan(values[r, c]):
                raise ResponseError(f"{path}: row {r + 2}, column {header[c + 1]!r}: NaN (leave the cell empty for 'missing')")
    values, items, t = _target_from_column(path, values, header[1:], target)
    return ResponseMatrix(values, [r[0].strip() for r in body], items, target=t,
                          item_groups=_groups_from_ids(items), name=path.name)


# np.load reads .npz members lazily: errors of a bad member (object dtype, bad CRC) surface on access.
_NPZ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile)


def _npz_array(path: Path, data: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    try:
        return data[key]
    except _NPZ_ERRORS as e:
        raise ResponseError(f"{path}: array {key!r} is not readable ({e})") from None


def _npz_floats(path: Path, data: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    arr = _npz_array(path, data, key)
    try:
        return arr.astype(np.float64)
    except (ValueError, TypeError) as e:
        raise ResponseError(f"{path}: array {key!r} is not numeric (dtype {arr.dtype}: {e})") from None


def _npz_strings(path: Path, data: np.lib.npyio.NpzFile, key: str) -> list[str]:
    arr = _npz_array(path, data, key)
    if arr.ndim != 1:
        raise ResponseError(f"{path}: array {key!r} must be 1-D (one id per entry), got shape {arr.shape}")
    return [str(x) for x in arr]


@register_loader("npz")
def load_npz(path: Path, target: str | None = None, block: str | None = None) -> ResponseMatrix:
    """``.npz``: either ``values``/``model_ids``/``item_ids`` [+ ``target``], or metabench_reduced
    (``X_train``, ``item_ids``, ``train_models``, ``all_models``, ``all_full_score`` in 0-100)."""
    _no_block(path, block)
    try:
        data = np.load(path, allow_pickle=False)
    except _NPZ_ERRORS as e:
        raise ResponseError(f"{path}: not a readable .npz without pickled objects ({e})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):  # a bare .npy array saved under a .npz name
        raise ResponseError(f"{path}: a single .npy array, not an .npz archive of named arrays")
    keys = set(data.files)
    if {"X_train", "item_ids", "train_models"} <= keys:
        values = _npz_floats(path, data, "X_train")
        models = _npz_strings(path, data, "train_models")
        t = None
        if {"all_models", "all_full_score"} <= keys and target in (None, "all_full_score"):
            score = {m: float(s) for m, s in zip(_npz_strings(path, data, "all_models"),
                                                 _npz_floats(path, data, "all_full_score"))}
            missing = [m for m in models if m not in score]
            if missing:
                raise ResponseError(f"{path}: no full score for model {missing[0]!r}")
            t = np.array([score[m] for m in models]) / 100.0
        elif target is not None:
            raise ResponseError(f"{path}: target {target!r} not available (metabench files give 'all_full_score')")
        items = _npz_strings(path, data, "item_ids")
        values = np.where(values < 0, np.nan, values)  # negative codes = missing in some exports
        return ResponseMatrix(values, models, items, target=t, item_groups=_groups_from_ids(items), name=path.stem)
    if {"values", "model_ids", "item_ids"} <= keys:
        tkey = target or ("target" if "target" in keys else None)
        if tkey is not None and tkey not in keys:
            raise ResponseError(f"{path}: target array {tkey!r} not found")
        items = _npz_strings(path, data, "item_ids")
        groups = tuple(_npz_strings(path, data, "item_groups")) if "item_groups" in keys else _groups_from_ids(items)
        return ResponseMatrix(_npz_floats(path, data, "values"), _npz_strings(path, data, "model_ids"), items,
                              target=None if tkey is None else _npz_floats(path, data, tkey), item_groups=groups,
                              name=path.stem)
    raise ResponseError(f"{path}: .npz needs keys values/model_ids/item_ids or X_train/item_ids/train_models; has {sorted(keys)}")


@register_loader("parquet")
def load_parquet(path: Path, target: str | None = None, block: str | None = None) -> ResponseMatrix:
    """Parquet with the CSV layout (a ``model`` column, one column per item, nulls = missing)."""
    _no_block(path, block)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ResponseError(f"{path}: reading .parquet needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:  # pyarrow's error types for corrupt/unsupported files vary
        raise ResponseError(f"{path}: not a readable parquet file ({e})") from None
    cols = table.column_names
    if not cols or cols[0] != "model":
        raise ResponseError(f"{path}: first column must be 'model'")
    # Columns by position: by name, a repeated column name would raise inside pyarrow.
    raw_models = table.column(0).to_pylist()
    if None in raw_models:
        raise ResponseError(f"{path}: row {raw_models.index(None)}: 'model' is null")
    models = [str(m) for m in raw_models]

    def column(j: int) -> np.ndarray:
        out = []
        for r, v in enumerate(table.column(j).to_pylist()):
            try:
                out.append(np.nan if v is None else float(v))
            except (ValueError, TypeError, OverflowError):
                raise ResponseError(f"{path}: row {r}, column {cols[j]!r}: not a number: {v!r}") from None
        return np.array(out)

    values = (np.column_stack([column(j) for j in range(1, len(cols))]) if len(cols) > 1
              else np.empty((len(models), 0)))
    values, items, t = _target_from_column(path, values, list(cols[1:]), target)
    return ResponseMatrix(values, models, items, target=t, item_groups=_groups_from_ids(items), name=path.stem)


def _json_number(v: object, where: str) -> float:
    """``float(v)`` as before (numbers, booleans, numeric strings); anything else names ``where``."""
    try:
        return float(v)  # type: ignore[arg-type]
    except (ValueError, TypeError, OverflowError):
        shown = json.dumps(v)  # v came from json.loads: show it as JSON (null, not None)
        raise ResponseError(f"{where} is not a number: {shown if len(shown) <= 60 else shown[:57] + '...'}") from None


@register_loader("jsonl")
def load_pyirt_jsonl(path: Path, target: str | None = None, block: str | None = None) -> ResponseMatrix:
    """py-irt jsonlines: one ``{"subject_id": ..., "responses": {item: score}}`` per line.

    ``target`` names an optional per-line numeric field holding the model's full score.
    """
    _no_block(path, block)
    subjects: list[str] = []
    responses: list[dict] = []
    line_nos: list[int] = []
    targets: list[float] = []
    try:
        # JSON is UTF-8 whatever the locale says.
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ResponseError(f"{path}:{n}: invalid JSON ({e.msg})") from None
                if not isinstance(rec, dict) or "subject_id" not in rec or not isinstance(rec.get("responses"), dict):
                    raise ResponseError(f"{path}:{n}: expected {{'subject_id': ..., 'responses': {{...}}}}")
                subjects.append(str(rec["subject_id"]))
                responses.append(rec["responses"])
                line_nos.append(n)
                if target is not None:
                    if target not in rec:
                        raise ResponseError(f"{path}:{n}: no target field {target!r}")
                    targets.append(_json_number(rec[target], f"{path}:{n}: target field {target!r}"))
    except UnicodeDecodeError as e:
        raise ResponseError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    if not subjects:
        raise ResponseError(f"{path}: no subjects")
    items: dict[str, int] = {}
    for r in responses:
        for k in r:
            items.setdefault(str(k), len(items))
    values = np.full((len(subjects), len(items)), np.nan)
    for row, r in enumerate(responses):
        for k, v in r.items():
            values[row, items[str(k)]] = _json_number(v, f"{path}:{line_nos[row]}: response to item {k!r}")
    ids = list(items)
    return ResponseMatrix(values, subjects, ids, target=np.array(targets) if target else None,
                          item_groups=_groups_from_ids(ids), name=path.stem)


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only plain containers and numpy arrays/dtypes/scalars: no code runs on load."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
        ("builtins", "frozenset"), ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only containers and numpy arrays are allowed)")


def safe_unpickle(path: Path):
    """Load a pickle that may contain only plain containers and numpy arrays."""
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f).load()
    except pickle.UnpicklingError as e:
        raise ResponseError(f"{path}: {e}") from None
    except (EOFError, ValueError, TypeError) as e:
        raise ResponseError(f"{path}: not a valid pickle ({e})") from None


@register_loader("pickle")
def load_lb_pickle(path: Path, target: str | None = None, block: str | None = None) -> ResponseMatrix:
    """tinyBenchmarks ``lb.pickle`` layout: ``{'models': [...], 'data': {task: {'correctness': (items, models)}}}``.

    Items are named ``task/index``; ``block`` keeps one task. The target is the mean over all
    (kept) items; ``target`` is not supported for this layout.
    """
    if path.is_dir():
        path = (sorted(path.glob("*.pickle")) + sorted(path.glob("*.pkl")))[0]
    if target is not None:
        raise ResponseError(f"{path}: lb.pickle has no target column (the full score is the mean over items)")
    obj = safe_unpickle(path)
    if not (isinstance(obj, dict) and "models" in obj and isinstance(obj.get("data"), dict)):
        raise ResponseError(f"{path}: expected a dict with 'models' and 'data' (lb.pickle layout)")
    raw_models = obj["models"]
    # Iterating a str, dict or set would silently give nonsense names or an arbitrary order.
    if not (isinstance(raw_models, (list, tuple)) or (isinstance(raw_models, np.ndarray) and raw_models.ndim == 1)):
        raise ResponseError(f"{path}: 'models' must be a list of model names, got {type(raw_models).__name__}")
    models = [str(m) for m in raw_models]
    tasks = list(obj["data"])
    if not tasks:
        raise ResponseError(f"{path}: 'data' has no tasks")
    if block is not None:
        if block not in obj["data"]:
            raise ResponseError(f"{path}: no task {block!r} (tasks: {', '.join(map(str, tasks))})")
        tasks = [block]
    blocks, ids, groups = [], [], []
    for t in tasks:
        entry = obj["data"][t]
        if not isinstance(entry, dict) or "correctness" not in entry:
            raise ResponseError(f"{path}: task {t!r} has no 'correctness' array")
        try:
            arr = np.asarray(entry["correctness"], dtype=np.float64)
        except (ValueError, TypeError) as e:
            raise ResponseError(f"{path}: task {t!r} correctness is not a numeric array ({e})") from None
        if arr.ndim != 2 or arr.shape[1] != len(models):
            raise ResponseError(f"{path}: task {t!r} correctness has shape {arr.shape}, expected (items, {len(models)})")
        blocks.append(arr.T)
        ids += [f"{t}/{i}" for i in range(arr.shape[0])]
        groups += [str(t)] * arr.shape[0]
    values = np.concatenate(blocks, axis=1)
    return ResponseMatrix(values, models, ids, item_groups=groups, name=path.stem + (f"#{block}" if block else ""))


@register_loader("psn")
def load_psn_irt(path: Path, target: str | None = None, block: str | None = None) -> ResponseMatrix:
    """PSN-IRT OpenCompass folder: ``combine.csv`` (models x items, no header) + ``blocks.json``.

    Items are named ``benchmark/index``; ``block`` keeps one benchmark. Models are unnamed in the
    source and become ``llm00`` ... ``llm11``.
    """
    if target is not None:
        raise ResponseError(f"{path}: PSN-IRT data has no target column (the full score is the mean over items)")
    try:
        values = np.loadtxt(path / "combine.csv", delimiter=",", ndmin=2)
    except ValueError as e:  # a non-numeric cell or ragged rows
        raise ResponseError(f"{path / 'combine.csv'}: not a numeric matrix ({e})") from None
    blocks_file = path / "blocks.json"
    if blocks_file.is_file():
        try:
            raw = json.loads(blocks_file.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise ResponseError(f"{blocks_file}: not UTF-8 text (byte {e.start}: {e.reason})") from None
        except json.JSONDecodeError as e:
            raise ResponseError(f"{blocks_file}: invalid JSON ({e})") from None
        if not isinstance(raw, dict):
            raise ResponseError(f"{blocks_file}: expected an object {{name: [start, end], ...}}")
        spec = {k: v for k, v in raw.items() if not k.startswith("_")}
        for name, rng in spec.items():
            # bool is an int subclass, but [true, false] is no column range.
            if not (isinstance(rng, list) and len(rng) == 2
                    and all(isinstance(x, int) and not isinstance(x, bool) for x in rng)):
                raise ResponseError(f"{blocks_file}: block {name!r} must be [start, end] (two integers), got {rng!r}")
        if not spec:
            raise ResponseError(f"{blocks_file}: no benchmark blocks")
    else:
        spec = {"all": [0, values.shape[1]]}
    if block is not None:
        if block not in spec:
            raise ResponseError(f"{path}: no benchmark block {block!r} (blocks: {', '.join(spec)})")
        spec = {block: spec[block]}
    cols, ids, groups = [], [], []
    for name, (start, end) in spec.items():
        if not (0 <= start < end <= values.shape[1]):
            raise ResponseError(f"{path}: block {name!r} range [{start}, {end}) outside {values.shape[1]} columns")
        cols.extend(range(start, end))
        ids += [f"{name}/{i}" for i in range(end - start)]
        groups += [name] * (end - start)
    models = [f"llm{r:02d}" for r in range(values.shape[0])]
    return ResponseMatrix(values[:, cols], models, ids, item_groups=groups,
                          name="psn_irt" + (f"#{block}" if block else ""))

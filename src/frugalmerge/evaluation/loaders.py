"""Benchmark loaders: jsonl / json / csv / tsv / Hugging Face ``datasets`` (local only), and the
native GSM8K (``#### n``) and MGSM (``question<TAB>answer``, no header) formats.

Formats are registered with :func:`register_format`; :func:`load_benchmark` picks one from the
path (suffix, file name, first line) unless ``format`` is given. Every error names the file and,
for line-based formats, the line.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from frugalmerge.evaluation.errors import BenchmarkFormatError, EvaluationError
from frugalmerge.evaluation.tasks import Benchmark, Item, TaskSpec, as_task

PROMPT_FIELDS = ("prompt", "question", "input", "query", "problem", "text")
ANSWER_FIELDS = ("answer", "answerkey", "target", "label", "output", "reference", "solution")
ID_FIELDS = ("id", "item_id", "idx", "uid", "qid")
LANGUAGE_FIELDS = ("language", "lang")
CHOICE_FIELDS = ("choices", "options")
LETTER_CHOICES = ("A", "B", "C", "D", "E", "F")

#: Default task of each native format (used when ``load_benchmark`` gets no ``task``).
GSM8K_TASK = TaskSpec(type="generative_numeric", prompt_template="Question: {prompt}\nAnswer:",
                      max_new_tokens=256, stop=("\n\n", "Question:"),
                      fewshot_answer_field="solution")


@dataclass(frozen=True)
class Record:
    """One raw row of a benchmark file and where it came from (for error messages)."""

    row: Mapping[str, Any]
    where: str


@dataclass(frozen=True)
class Format:
    """A registered benchmark format."""

    name: str
    reader: Callable[..., list[Item]]
    default_task: TaskSpec | None


FORMATS: dict[str, Format] = {}


def register_format(name: str, *, default_task: TaskSpec | None = None):
    """Decorator registering ``reader(path, *, name, language, fields) -> list[Item]``."""

    def decorator(reader):
        FORMATS[name] = Format(name=name, reader=reader, default_task=default_task)
        return reader

    return decorator


# --- row -> item ------------------------------------------------------------------------------

def _pick(row: Mapping[str, Any], explicit: str | None, candidates: tuple[str, ...]) -> str | None:
    if explicit is not None:
        return explicit if explicit in row else None
    lowered = {str(k).lower(): k for k in row}
    for cand in candidates:
        if cand in lowered:
            return lowered[cand]
    return None


def _choices(row: Mapping[str, Any], explicit: str | None, where: str) -> tuple[str, ...] | None:
    key = _pick(row, explicit, CHOICE_FIELDS)
    if key is not None and row[key] not in (None, ""):
        value = row[key]
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise BenchmarkFormatError(f"{where}: choices {value!r} are not a JSON list") from None
        if isinstance(value, Mapping) and "text" in value:  # HF style {"label": [...], "text": [...]}
            value = value["text"]
        if not isinstance(value, (list, tuple)):
            raise BenchmarkFormatError(f"{where}: choices must be a list, got {type(value).__name__}")
        return tuple(str(v) for v in value)
    letters = [row[k] for k in LETTER_CHOICES if k in row and row[k] not in (None, "")]
    return tuple(str(v) for v in letters) if len(letters) >= 2 else None


def row_to_item(record: Record, index: int, *, name: str, language: str | None,
                fields: Mapping[str, str | None]) -> Item:
    """Map one raw row to an :class:`Item` (field names guessed unless given in ``fields``)."""
    row, where = record.row, record.where
    if not isinstance(row, Mapping):
        raise BenchmarkFormatError(f"{where}: expected an object, got {type(row).__name__}")
    prompt_key = _pick(row, fields.get("prompt"), PROMPT_FIELDS)
    answer_key = _pick(row, fields.get("answer"), ANSWER_FIELDS)
    if prompt_key is None:
        raise BenchmarkFormatError(f"{where}: no prompt field (looked for "
                                   f"{fields.get('prompt') or ', '.join(PROMPT_FIELDS)}); "
                                   f"fields: {sorted(map(str, row))}")
    if answer_key is None:
        raise BenchmarkFormatError(f"{where}: no answer field (looked for "
                                   f"{fields.get('answer') or ', '.join(ANSWER_FIELDS)}); "
                                   f"fields: {sorted(map(str, row))}")
    id_key = _pick(row, fields.get("id"), ID_FIELDS)
    lang_key = _pick(row, fields.get("language"), LANGUAGE_FIELDS)
    for what in ("id", "choices"):
        # A named id or choices column that a row lacks gave generated ids / no choices silently.
        if fields.get(what) is not None and fields[what] not in row:
            raise BenchmarkFormatError(f"{where}: no {what} field {fields[what]!r}; fields: {sorted(map(str, row))}")
    choices = _choices(row, fields.get("choices"), where)
    used = {prompt_key, answer_key, id_key, lang_key, *CHOICE_FIELDS, *LETTER_CHOICES, "metadata"}
    metadata = dict(row["metadata"]) if isinstance(row.get("metadata"), Mapping) else {}
    metadata.update({str(k): v for k, v in row.items() if k not in used})
    item_id = row[id_key] if id_key is not None and row[id_key] not in (None, "") else (
        f"{name}-{index:04d}")
    answer = row[answer_key]
    if answer is None:
        raise BenchmarkFormatError(f"{where}: answer field {answer_key!r} is empty")
    return _make_item(
        where,
        id=item_id,
        prompt=row[prompt_key],
        answer=answer,
        language=(row[lang_key] if lang_key is not None and row[lang_key] else language) or "en",
        choices=choices,
        metadata=metadata,
    )


def _make_item(where: str, **fields: Any) -> Item:
    """An :class:`Item`, or one :class:`BenchmarkFormatError` line naming the row and the fields."""
    try:
        return Item(**fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BenchmarkFormatError(f"{where}: invalid item ({problems})") from None


# --- readers ----------------------------------------------------------------------------------

def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BenchmarkFormatError(f"{path}: not UTF-8 text ({exc})") from None
    except OSError as exc:
        raise BenchmarkFormatError(f"cannot read benchmark {path}: {exc}") from None


def _jsonl_records(path: Path) -> Iterator[Record]:
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BenchmarkFormatError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column "
                                       f"{exc.colno})") from None
        yield Record(row, f"{path}:{lineno}")


def _items(records, *, name, language, fields) -> list[Item]:
    return [row_to_item(rec, i, name=name, language=language, fields=fields)
            for i, rec in enumerate(records)]


@register_format("jsonl")
def read_jsonl(path: Path, *, name: str, language: str | None, fields) -> list[Item]:
    """One JSON object per line."""
    return _items(_jsonl_records(path), name=name, language=language, fields=fields)


@register_format("json")
def read_json(path: Path, *, name: str, language: str | None, fields) -> list[Item]:
    """A JSON list of objects, or an object with an ``items`` / ``data`` list."""
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise BenchmarkFormatError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if isinstance(data, Mapping):
        data = data.get("items", data.get("data"))
    if not isinstance(data, list):
        raise BenchmarkFormatError(f"{path}: expected a JSON list of items (or {{'items': [...]}})")
    records = (Record(row, f"{path}: item {i}") for i, row in enumerate(data))
    return _items(records, name=name, language=language, fields=fields)


def _delimited(path: Path, delimiter: str, *, name, language, fields) -> list[Item]:
    text = _read_text(path)
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    if not reader.fieldnames:
        raise BenchmarkFormatError(f"{path}: empty file (expected a header line)")
    records = []
    for row in reader:
        lineno = reader.line_num
        if None in row:
            raise BenchmarkFormatError(f"{path}:{lineno}: more fields than the header's "
                                       f"{len(reader.fieldnames)}")
        if any(v is None for v in row.values()):
            raise BenchmarkFormatError(f"{path}:{lineno}: fewer fields than the header's "
                                       f"{len(reader.fieldnames)}")
        records.append(Record(row, f"{path}:{lineno}"))
    return _items(records, name=name, language=language, fields=fields)


@register_format("csv")
def read_csv(path: Path, *, name: str, language: str | None, fields) -> list[Item]:
    """Comma-separated with a header line."""
    return _delimited(path, ",", name=name, language=language, fields=fields)


@register_format("tsv")
def read_tsv(path: Path, *, name: str, language: str | None, fields) -> list[Item]:
    """Tab-separated with a header line."""
    return _delimited(path, "\t", name=name, language=language, fields=fields)


def gsm8k_final_answer(solution: str) -> str | None:
    """The number after the last ``####`` of a GSM8K solution, without thousands separators."""
    match = re.search(r"####\s*(.+?)\s*$", solution.strip())
    if not match:
        return None
    return match.group(1).replace(",", "").replace("$", "").strip()


@register_format("gsm8k", default_task=GSM8K_TASK)
def read_gsm8k(path: Path, *, name: str, language: str | None, fields) -> list[Item]:
    """GSM8K jsonl (``question``, ``answer`` = solution ending in ``#### n``); the answer becomes
    ``n`` and the solution goes to ``metadata['solution']``."""
    items = []
    for i, rec in enumerate(_jsonl_records(path)):
        row = rec.row
        if not isinstance(row, Mapping) or "question" not in row or "answer" not in row:
            raise BenchmarkFormatError(f"{rec.where}: a GSM8K line needs 'question' and 'answer'")
        final = gsm8k_final_answer(str(row["answer"]))
        if final is None:
            raise BenchmarkFormatError(f"{rec.where}: GSM8K answer has no '#### n' final answer")
        if "id" in row and row["id"] is None:
            # str(None) would silently become the id "None" (and collide on the next null)
            raise BenchmarkFormatError(f"{rec.where}: 'id' is null (give a string or number, "
                                       "or leave the key out for a generated id)")
        # The raw id goes to Item, which keeps numbers as exact strings and rejects the rest
        # (empty, true/false, lists) with a message naming the line.
        items.append(_make_item(rec.where, id=row.get("id", f"{name}-{i:04d}"),
                                prompt=row["question"], answer=final, language=language or "en",
                                metadata={"solution": row["answer"]}))
    return items


@register_format("mgsm", default_task=GSM8K_TASK)
def read_mgsm(path: Path, *, name: str, language: str | None, fields) -> list[Item]:
    """MGSM tsv: ``question<TAB>answer`` per line, no header; language from ``mgsm_XX.tsv``."""
    if language is None:
        match = re.match(r"mgsm_([A-Za-z-]+)$", path.stem)
        language = match.group(1) if match else "en"
    items = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise BenchmarkFormatError(f"{path}:{lineno}: expected 'question<TAB>answer', found "
                                       f"{len(parts)} tab-separated fields")
        question, answer = parts[0].strip(), parts[1].strip().replace(",", "")
        if not question or not answer:
            raise BenchmarkFormatError(f"{path}:{lineno}: empty question or answer")
        items.append(Item(id=f"{name}-{len(items):04d}", prompt=question, answer=answer,
                          language=language, metadata={"line": lineno}))
    return items


def _hf_items(dataset, where: str, *, name, language, fields) -> list[Item]:
    records = (Record(row, f"{where}: row {i}") for i, row in enumerate(dataset))
    return _items(records, name=name, language=language, fields=fields)


@register_format("hf")
def read_hf(path: Path, *, name: str, language: str | None, fields, split: str | None = None):
    """A Hugging Face ``datasets`` folder (``save_to_disk``), or a parquet / arrow file read with
    ``datasets``; for a ``DatasetDict``, ``split`` (default ``test``, else the only split)."""
    import datasets

    try:
        if path.is_dir():
            data = datasets.load_from_disk(str(path))
        elif path.suffix == ".parquet":
            data = datasets.Dataset.from_parquet(str(path))
        elif path.suffix == ".arrow":
            data = datasets.Dataset.from_file(str(path))
        else:
            raise BenchmarkFormatError(f"{path}: not a datasets folder, .parquet or .arrow file")
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise BenchmarkFormatError(f"cannot load Hugging Face dataset {path}: {exc}") from None
    if isinstance(data, datasets.DatasetDict):
        splits = list(data)
        chosen = split or ("test" if "test" in data else (splits[0] if len(splits) == 1 else None))
        if chosen not in data:
            raise BenchmarkFormatError(f"{path}: dataset has splits {splits}; pass split=...")
        data = data[chosen]
    return _hf_items(data, str(path), name=name, language=language, fields=fields)


# --- detection and entry point ----------------------------------------------------------------

def _first_line(path: Path) -> str:
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    return line
    except (OSError, UnicodeDecodeError):
        return ""
    return ""


def detect_format(path: Path) -> str:
    """Guess the format of ``path`` from its suffix, name and first line."""
    if path.is_dir():
        return "hf"
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".arrow"):
        return "hf"
    if suffix in (".jsonl", ".ndjson"):
        line = _first_line(path)
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            return "jsonl"  # the reader reports the bad line
        if (isinstance(row, dict) and set(row) >= {"question", "answer"}
                and "####" in str(row["answer"]) and not any(k in row for k in PROMPT_FIELDS[:1])):
            return "gsm8k"
        return "jsonl"
    if suffix == ".json":
        return "json"
    if suffix == ".csv":
        return "csv"
    if suffix == ".tsv":
        if path.stem.lower().startswith("mgsm"):
            return "mgsm"
        header = [h.strip().lower() for h in _first_line(path).rstrip("\n").split("\t")]
        known = set(PROMPT_FIELDS + ANSWER_FIELDS + ID_FIELDS)
        return "tsv" if known & set(header) else "mgsm"
    raise BenchmarkFormatError(f"{path}: cannot tell the benchmark format from the suffix "
                               f"{suffix!r}; pass format= one of {sorted(FORMATS)}")


SPLIT_STEMS = frozenset({"train", "test", "validation", "valid", "dev", "search", "eval"})


def _default_name(path: Path) -> str:
    """The file stem, prefixed by the folder for split files (``gsm8k/test.jsonl`` -> ``gsm8k-test``)."""
    stem = path.stem if path.is_file() else path.name
    if stem.lower() in SPLIT_STEMS and path.parent.name:
        return f"{path.parent.name}-{stem}"
    return stem


def load_benchmark(
    path: str | Path,
    format: str | None = None,
    *,
    task: TaskSpec | str | Mapping[str, Any] | None = None,
    name: str | None = None,
    language: str | None = None,
    prompt_field: str | None = None,
    answer_field: str | None = None,
    id_field: str | None = None,
    choices_field: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    default_task: TaskSpec | str | Mapping[str, Any] | None = None,
) -> Benchmark:
    """Load a benchmark file or folder.

    ``format``: one of :data:`FORMATS` (``jsonl``, ``json``, ``csv``, ``tsv``, ``hf``, ``gsm8k``,
    ``mgsm``); guessed when None. ``task``: a :class:`TaskSpec`, a task type name or a settings
    dict; default: the format's own (GSM8K/MGSM: numeric generation), else ``multiple_choice``
    when the items have choices and ``generative_exact`` otherwise. A settings dict without
    ``type`` adjusts that default (``{"num_fewshot": 8}``), and so does one (or a type name)
    naming the default's own type; another type starts from that type's defaults.
    ``default_task``: replaces that default (e.g. a zoo's task for its split files). ``language``: default
    language of items without one. ``*_field``: column names when they are not the usual ones.
    ``split``: the split of a ``DatasetDict``. ``limit``: keep only the first items.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise BenchmarkFormatError(f"benchmark file {path} does not exist")
    fmt_name = format or detect_format(path)
    if fmt_name not in FORMATS:
        raise BenchmarkFormatError(f"unknown benchmark format {fmt_name!r}; known: {sorted(FORMATS)}")
    fmt = FORMATS[fmt_name]
    bench_name = name or _default_name(path)
    fields = {"prompt": prompt_field, "answer": answer_field, "id": id_field,
              "choices": choices_field}
    if fmt_name in ("gsm8k", "mgsm"):  # fixed layouts: column names or a split would be ignored
        given = [opt for opt, v in (("prompt_field", prompt_field), ("answer_field", answer_field),
                                    ("id_field", id_field), ("choices_field", choices_field), ("split", split))
                 if v is not None]
        if given:
            raise BenchmarkFormatError(f"{path}: the {fmt_name} format has a fixed layout; {given[0]} does not apply")
    elif split is not None and fmt_name != "hf":
        raise BenchmarkFormatError(f"{path}: split applies to Hugging Face datasets (format hf), not {fmt_name}")
    kwargs = {"split": split} if fmt_name == "hf" else {}
    items = fmt.reader(path, name=bench_name, language=language, fields=fields, **kwargs)
    if not items:
        raise BenchmarkFormatError(f"{path}: no items")
    # --limit keeps the first items but not a smaller few-shot pool: an item's prompt (its drawn
    # examples) is the same whatever the limit, as in lm-eval.
    pool = tuple(items) if limit is not None and limit < len(items) else None
    if limit is not None:
        items = items[:limit]
    if default_task is not None:
        default = as_task(dict(default_task) if isinstance(default_task, Mapping) else default_task)
    else:
        default = fmt.default_task or TaskSpec(
            type="multiple_choice" if all(it.choices for it in pool or items) else "generative_exact")
    if task is None:
        spec = default
    elif isinstance(task, Mapping) and task.get("type", default.type) == default.type:
        # Settings without a type, or naming the default's type, adjust the default task (e.g.
        # {"num_fewshot": 8} for GSM8K): naming the type must not drop MGSM's template and stops.
        spec = as_task({**default.model_dump(), **task})
    elif isinstance(task, str) and task == default.type:
        spec = default
    else:
        spec = as_task(dict(task) if isinstance(task, Mapping) else task)
    try:
        return Benchmark(name=bench_name, task=spec, items=tuple(items), fewshot_pool=pool)
    except EvaluationError as exc:
        raise BenchmarkFormatError(f"{path}: {exc}") from None

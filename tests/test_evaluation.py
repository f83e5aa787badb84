"""Evaluation stage without models: data model, loaders, extraction, language, splits, cache."""

from __future__ import annotations

import json
import pickle

import pytest

from frugalmerge.evaluation import (
    Benchmark,
    BenchmarkFormatError,
    EvalCache,
    EvaluationError,
    Item,
    LanguageRule,
    TaskSpec,
    detect_language,
    exact_match,
    load_benchmark,
    make_detector,
    numeric_match,
    parse_number,
    split_items,
)
from frugalmerge.evaluation.extract import EXTRACTORS
from frugalmerge.evaluation.language import passes_language_rule
from frugalmerge.evaluation.prompts import prompt_text, select_fewshot
from frugalmerge.evaluation.tasks import as_task


def _items(n: int, lang: str = "en") -> list[Item]:
    return [Item(id=f"i{k}", prompt=f"q{k}", answer=str(k), language=lang) for k in range(n)]


# --- data model -------------------------------------------------------------------------------

def test_taskspec_is_frozen_validated_and_hash_tracks_settings():
    spec = TaskSpec(type="teacher_forced_exact")
    with pytest.raises(Exception):
        spec.num_fewshot = 3  # frozen
    with pytest.raises(ValueError, match="unknown task type"):
        TaskSpec(type="nope")
    with pytest.raises(ValueError, match="generative"):
        TaskSpec(type="multiple_choice", language_rule=LanguageRule())
    assert spec.settings_hash() == TaskSpec.model_validate({"type": "teacher_forced_exact"}).settings_hash()
    assert spec.settings_hash() != TaskSpec(type="teacher_forced_exact", num_fewshot=1).settings_hash()


def test_benchmark_subset_resolve_and_errors():
    bench = Benchmark("b", "generative_exact", _items(5))
    sub = bench.subset(["i3", "i1"])
    assert sub.item_ids == ["i3", "i1"] and sub.pool == bench.items
    with pytest.raises(EvaluationError, match="'nope'"):
        bench.resolve(["i1", "nope"])
    with pytest.raises(EvaluationError, match="duplicate item id"):
        Benchmark("b", "generative_exact", _items(2) + _items(1))
    with pytest.raises(EvaluationError, match="two choices"):
        Benchmark("b", "multiple_choice", _items(1))


def test_fewshot_prompts_are_deterministic_and_exclude_the_item():
    bench = Benchmark("b", TaskSpec(type="generative_exact", num_fewshot=2,
                                    prompt_template="Q: {prompt}", target_delimiter=" A: ",
                                    fewshot_separator="\n"), _items(6))
    item = bench["i2"]
    shots = select_fewshot(bench, item)
    assert len(shots) == 2 and item not in shots
    assert select_fewshot(bench.subset(["i2"]), item) == shots  # same in any subset
    text = prompt_text(item, bench.task, shots, tokenizer=None, chat=False)
    assert text == f"Q: {shots[0].prompt} A: {shots[0].answer}\nQ: {shots[1].prompt} A: " \
                   f"{shots[1].answer}\nQ: q2"
    with pytest.raises(EvaluationError, match="5-shot"):
        select_fewshot(Benchmark("c", TaskSpec(type="generative_exact", num_fewshot=5), _items(3)),
                       _items(3)[0])


def test_limit_keeps_the_prompts_of_the_items_it_keeps(tmp_path):
    """--limit N used to cut the few-shot pool to the first N items too, so an item drew other
    examples at --limit 10 than in the full run (lm-eval's --limit never changes a prompt)."""
    path = tmp_path / "b.jsonl"
    path.write_text("".join(json.dumps({"id": f"i{j}", "prompt": f"q{j}", "answer": f"a{j}"}) + "\n" for j in range(60)))
    task = {"type": "generative_exact", "num_fewshot": 3}
    full = load_benchmark(path, task=task)
    for limit in (5, 10, 50):
        part = load_benchmark(path, task=task, limit=limit)
        assert part.item_ids == full.item_ids[:limit]
        assert all(select_fewshot(part, part[i]) == select_fewshot(full, full[i]) for i in part.item_ids)
    # 3-shot prompts on a 3-item limit still draw from the whole file
    assert len(select_fewshot(load_benchmark(path, task=task, limit=3), full["i0"])) == 3


def test_gsm8k_fewshot_shows_worked_solutions(shared_data):
    gsm = load_benchmark(shared_data / "gsm8k" / "test.jsonl")
    bench = gsm.with_task(gsm.task.model_copy(update={"num_fewshot": 2}))
    item = bench.items[5]
    shots = select_fewshot(bench, item)
    text = prompt_text(item, bench.task, shots, tokenizer=None, chat=False)
    assert text.count("Question: ") == 3 and text.count("#### ") == 2
    assert text.endswith(f"Question: {item.prompt}\nAnswer:")
    assert f"Answer: {shots[0].metadata['solution']}\n\nQuestion: " in text


def test_split_items_disjoint_sizes_and_seeded():
    items = _items(103)
    splits = split_items(items, (0.6, 0.2, 0.2), seed=7)
    ids = [set(it.id for it in splits[s]) for s in ("train", "search", "test")]
    assert sum(map(len, ids)) == 103 and len(set().union(*ids)) == 103
    assert [len(x) for x in ids] == [62, 21, 20]  # 61.8 -> 62, 20.6 -> 21, 20.6 -> 20
    assert split_items(items, (0.6, 0.2, 0.2), seed=7) == splits
    assert split_items(items, (0.6, 0.2, 0.2), seed=8) != splits
    part = split_items([it.id for it in items], (0.5, 0.1), seed=0, names=("a", "b"))
    assert len(part["a"]) == 52 and len(part["b"]) == 10 and not set(part["a"]) & set(part["b"])
    with pytest.raises(EvaluationError):
        split_items(items, (0.8, 0.4), names=("a", "b"))


# --- loaders ----------------------------------------------------------------------------------

def test_jsonl_loader_with_metadata_and_task(tmp_path):
    path = tmp_path / "math.jsonl"
    rows = [{"id": "a", "prompt": "2 + 2 =", "answer": "2 + 2 = 4", "language": "de",
             "metadata": {"op": "add"}, "difficulty": 3},
            {"question": "x", "answer": 7}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    bench = load_benchmark(path, task={"type": "teacher_forced_exact"})
    assert bench.name == "math" and bench.task.type == "teacher_forced_exact"
    a, b = bench.items
    assert (a.id, a.language, a.metadata) == ("a", "de", {"op": "add", "difficulty": 3})
    assert (b.id, b.prompt, b.answer, b.language) == ("math-0001", "x", "7", "en")


def test_csv_tsv_json_and_choices(tmp_path):
    (tmp_path / "mc.csv").write_text('question,A,B,C,answer\n"Sky, colour?",red,blue,green,blue\n'
                                     "Grass?,green,red,blue,0\n")
    bench = load_benchmark(tmp_path / "mc.csv")
    assert bench.task.type == "multiple_choice"
    assert bench.items[0].prompt == "Sky, colour?" and bench.items[0].choices == ("red", "blue", "green")
    (tmp_path / "t.tsv").write_text("id\tinput\ttarget\nx1\thello\tworld\n")
    assert load_benchmark(tmp_path / "t.tsv").items[0].answer == "world"
    (tmp_path / "j.json").write_text(json.dumps({"items": [
        {"id": 1, "prompt": "p", "answer": "a", "choices": ["a", "b"]}]}))
    item = load_benchmark(tmp_path / "j.json").items[0]
    assert item.id == "1" and item.choices == ("a", "b")


def test_arc_style_choices_and_letter_answers(tmp_path):
    from frugalmerge.evaluation.tasks import choice_index

    row = {"id": "arc1", "question": "Which is a gas?",
           "choices": {"text": ["iron", "oxygen", "wood"], "label": ["A", "B", "C"]},
           "answerKey": "B"}
    (tmp_path / "arc.jsonl").write_text(json.dumps(row) + "\n")
    bench = load_benchmark(tmp_path / "arc.jsonl")
    item = bench.items[0]
    assert bench.task.type == "multiple_choice" and item.choices == ("iron", "oxygen", "wood")
    assert choice_index(item) == 1
    assert choice_index(item.model_copy(update={"answer": "2"})) == 2
    assert choice_index(item.model_copy(update={"answer": "wood"})) == 2
    with pytest.raises(EvaluationError, match="neither one of its choices"):
        Benchmark("b", "multiple_choice", [item.model_copy(update={"answer": "Z"})])


def test_hf_datasets_folder_and_parquet(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({"question": ["q1", "q2"], "answer": ["1", "2"],
                                     "subject": ["s", "t"]})
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "hfdir"))
    bench = load_benchmark(tmp_path / "hfdir", task="generative_numeric")
    assert [it.prompt for it in bench] == ["q1", "q2"] and bench.items[1].metadata == {"subject": "t"}
    ds.to_parquet(str(tmp_path / "d.parquet"))
    assert load_benchmark(tmp_path / "d.parquet").items[0].answer == "1"


def test_real_gsm8k_and_mgsm(shared_data):
    gsm = load_benchmark(shared_data / "gsm8k" / "test.jsonl")
    assert len(gsm) == 1319 and gsm.name == "gsm8k-test" and gsm.task.type == "generative_numeric"
    assert gsm.items[0].answer == "18" and gsm.items[0].metadata["solution"].endswith("#### 18")
    assert all(parse_number(it.answer) is not None for it in gsm)  # thousands separators removed
    de = load_benchmark(shared_data / "mgsm" / "mgsm_de.tsv")
    assert len(de) == 250 and de.items[0].language == "de" and de.items[0].answer == "18"
    assert de.items[0].prompt.startswith("Janets Enten")
    eight = load_benchmark(shared_data / "mgsm" / "mgsm_de.tsv", task={"num_fewshot": 8})
    assert eight.task.num_fewshot == 8 and eight.task.prompt_template == gsm.task.prompt_template
    with pytest.raises(EvaluationError, match="invalid task settings"):
        load_benchmark(shared_data / "mgsm" / "mgsm_de.tsv", task={"num_fewshots": 8})
    zh = load_benchmark(shared_data / "mgsm" / "mgsm_zh.tsv", format="mgsm")
    assert zh.items[0].language == "zh" and [it.answer for it in zh] == [it.answer for it in de]


@pytest.mark.parametrize("name,content,fmt,pattern", [
    ("bad.jsonl", '{"prompt": "a", "answer": "b"}\n{"prompt": oops}\n', None, r"bad\.jsonl:2: invalid JSON"),
    ("miss.jsonl", '{"prompt": "a", "answer": "b"}\n{"prompt": "a"}\n', None, r"miss\.jsonl:2: no answer field"),
    ("rag.csv", "prompt,answer\na,b\nc,d,e\n", None, r"rag\.csv:3: more fields"),
    ("mgsm_xx.tsv", "q\t1\nq2 no tab\n", None, r"mgsm_xx\.tsv:2: expected 'question<TAB>answer'"),
    ("g.jsonl", '{"question": "q", "answer": "x #### 4"}\n{"question": "q", "answer": "none"}\n',
     "gsm8k", r"g\.jsonl:2: GSM8K answer has no"),
    ("gn.jsonl", '{"id": null, "question": "q", "answer": "x #### 4"}\n', "gsm8k",
     r"gn\.jsonl:1: 'id' is null"),
    ("ge.jsonl", '{"id": "", "question": "q", "answer": "x #### 4"}\n', "gsm8k",
     r"ge\.jsonl:1: invalid item \(id: "),
    ("gq.jsonl", '{"question": ["q"], "answer": "x #### 4"}\n', "gsm8k",
     r"gq\.jsonl:1: invalid item \(prompt: "),
    ("x.yaml", "a: 1\n", None, r"x\.yaml: cannot tell"),
    ("empty.jsonl", "\n", None, r"empty\.jsonl: no items"),
])
def test_bad_files_name_file_and_line(tmp_path, name, content, fmt, pattern):
    (tmp_path / name).write_text(content)
    with pytest.raises(BenchmarkFormatError, match=pattern):
        load_benchmark(tmp_path / name, format=fmt)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(BenchmarkFormatError, match="does not exist"):
        load_benchmark(tmp_path / "nope.jsonl")
    (tmp_path / "a.jsonl").write_text('{"prompt": "a", "answer": "b"}\n')
    with pytest.raises(BenchmarkFormatError, match="unknown benchmark format"):
        load_benchmark(tmp_path / "a.jsonl", format="xml")


# --- extraction -------------------------------------------------------------------------------

@pytest.mark.parametrize("text,lang,value", [
    ("She has 3 apples, then 5. The answer is 12.", "en", 12),
    ("#### 1,234", "en", 1234),
    ("Natalia sold 48/2 = 24 clips.\n#### 72", "en", 72),
    ("It costs $1,000.50 in total", "en", 1000.5),
    ("The temperature is −7 degrees", "en", -7),
    ("he owes -$15", "en", -15),
    ("Die Antwort lautet 70.000 Euro.", "de", 70000),
    ("Es sind 3,5 Liter.", "de", 3.5),
    ("La réponse est 1 250 euros", "fr", 1250),
    ("答案是 42。", "zh", 42),
    ("The answer is 18. Then 2 more questions follow.", "en", 18),
    ("value .5", "en", 0.5),
    ("pi is about 3.14159", "en", 3.14159),
    ("she paid $12,345.67 for it", "en", 12345.67),
    ("7 1/2 hours: 7.5", "en", 7.5),
    ("she buys 3 250", "en", 250),  # two numbers in English
    ("elle paie 3 250", "fr", 3250),  # thousands grouping in French
    ("the numbers 1,2,3", "en", 3),  # a list in English
    ("es sind 2,5", "de", 2.5),  # a decimal comma in German
])
def test_auto_extraction(text, lang, value):
    raw = EXTRACTORS["auto"](text, lang)
    assert parse_number(raw, lang) == pytest.approx(value)


def test_extraction_on_every_real_gsm8k_solution(shared_data):
    """The worked GSM8K solutions (with $, commas, negatives, <<calc>> annotations) all score
    correct against their own final answers; the last number before '####' usually does not."""
    gsm = load_benchmark(shared_data / "gsm8k" / "test.jsonl")
    assert all(numeric_match(it.metadata["solution"], it.answer) for it in gsm)
    assert all(not numeric_match(it.metadata["solution"], str(float(it.answer) + 1)) for it in gsm)
    prose = [it.metadata["solution"].rsplit("####", 1)[0] + f" The answer is {it.answer}."
             for it in gsm]
    assert all(numeric_match(p, it.answer, extractor="answer_is") for p, it in zip(prose, gsm))


@pytest.mark.parametrize("raw,value", [
    ("1,234.5", 1234.5), ("1.234,5", 1234.5), ("80.000", 80000), ("1,234", 1234),
    ("1.234.567", 1234567), ("3.5", 3.5), ("3,5", 3.5), ("0.300", 0.3), ("12.50", 12.5),
    ("-$1,000", -1000), ("1 250", 1250), ("1\u202f250,5", 1250.5), (".5", 0.5), ("abc", None),
])
def test_parse_number(raw, value):
    assert parse_number(raw) == (pytest.approx(value) if value is not None else None)


def test_extractors_and_numeric_match():
    assert EXTRACTORS["last_number"]("no numbers here", "en") is None
    assert EXTRACTORS["hash"]("3 then 4", "en") is None
    assert EXTRACTORS["last_number"]("1 2 3", "en") == "3"
    assert numeric_match("so 5 + 7 = 12", "12")
    assert numeric_match("The answer is 12.0", "12")
    assert not numeric_match("The answer is 13", "12")
    assert not numeric_match("twelve", "12")
    assert numeric_match("Antwort: 1.500", "1500", language="de")
    assert numeric_match("#### 70000", "70,000")
    assert not numeric_match("#### 1,450,001", "1450000")  # large integers: exact
    assert numeric_match("#### 0.30000000000000004", "0.3")


@pytest.mark.parametrize("text,complete", [
    ("The answer is 12", False), ("The answer is 12.", False), ("The answer is 12.5\n", False),
    ("The answer is 12.5.\n", True), ("The answer is 12. Next", True), ("#### 1,000", False),
    ("#### 1,000\nQ", True), ("so 12 apples.", False), ("Die Antwort ist 3,5 Liter", True),
    ("La réponse est 1 ", False), ("La réponse est 1 250 euros", True),
])
def test_answer_complete(text, complete):
    from frugalmerge.evaluation.extract import answer_complete

    assert answer_complete(text) is complete


def test_exact_match_normalisers():
    assert exact_match("  The Cat. ", "the cat")
    assert not exact_match("The Cat.", "the cat", "strict")
    assert exact_match("a  b\n c", "a b c", "whitespace")
    assert exact_match("«Oui»", "oui")


# --- language ---------------------------------------------------------------------------------

def test_builtin_detector_on_real_mgsm_questions(shared_data):
    langs = ["en", "de", "fr", "es", "ru", "zh", "ja", "th", "sw", "bn", "te"]
    for lang in langs:
        bench = load_benchmark(shared_data / "mgsm" / f"mgsm_{lang}.tsv")
        found = [detect_language(it.prompt)[0] for it in bench.items[:40]]
        assert sum(f == lang for f in found) >= 38, (lang, found)


def test_detector_on_embedded_sentences_and_rule():
    assert detect_language("The dog is in the garden and it is happy.")[0] == "en"
    assert detect_language("Der Hund ist im Garten und er ist glücklich.")[0] == "de"
    assert detect_language("Le chien est dans le jardin et il est content.")[0] == "fr"
    assert detect_language("El perro está en el jardín y es feliz.")[0] == "es"
    assert detect_language("12 + 3 = 15") == (None, 0.0)
    det = make_detector("builtin")
    assert passes_language_rule("Die Antwort ist 12, weil er drei hat.", "de", det)
    assert not passes_language_rule("The answer is 12 because he has three.", "de", det)
    assert passes_language_rule("12", "de", det)  # too short: undetermined passes by default
    assert not passes_language_rule("12", "de", det, undetermined="fail")


def test_ngram_detector_trained_from_items():
    texts = {"en": ["the cat sat on the mat", "she has three apples and two pears"],
             "xx": ["zor kel vim zor", "vimka zorel kelvim tak"]}
    det = make_detector("benchmark", texts)
    assert det.detect("the dog sat on the chair")[0] == "en"
    assert det.detect("kel zorvim tak")[0] == "xx"
    with pytest.raises(KeyError):
        make_detector("nope")


# --- cache ------------------------------------------------------------------------------------

def test_cache_counters_persistence_and_pickle(tmp_path):
    cache = EvalCache()
    assert cache.get("m", "i1", "s") is None
    cache.put("m", "i1", "s", 1.0)
    assert cache.get("m", "i1", "s") == 1.0 and cache.get("m", "i1", "t") is None
    assert cache.stats() == {"entries": 1, "hits": 1, "misses": 2}
    with pytest.raises(EvaluationError, match="needs a path"):
        cache.save()
    path = cache.save(tmp_path / "c" / "cache.json")
    again = EvalCache(path)
    assert len(again) == 1 and again.get("m", "i1", "s") == 1.0
    assert not list(path.parent.glob(".*tmp"))  # atomic write left no temporary file
    clone = pickle.loads(pickle.dumps(again))
    assert clone.scores_for("m") == {"i1": 1.0}
    path.write_text("{broken")
    with pytest.raises(EvaluationError, match="cannot read evaluation cache"):
        EvalCache(path)


def test_gsm8k_ids_keep_numbers_as_exact_strings(tmp_path):
    (tmp_path / "g.jsonl").write_text('{"id": 7, "question": "q", "answer": "x #### 4"}\n'
                                      '{"question": "r", "answer": "y #### 5"}\n')
    bench = load_benchmark(tmp_path / "g.jsonl", format="gsm8k")
    assert bench.item_ids == ["7", "g-0001"]


@pytest.mark.parametrize("settings,pattern", [
    ({"type": "generative_numeric", "extractor": "nope"}, r"extractor: unknown extractor 'nope'"),
    ({"type": "generative_exact", "normalizer": "nope"}, r"normalizer: unknown normalizer 'nope'"),
    ({"type": "generative_exact", "language_rule": {"detector": "nope"}},
     r"language_rule\.detector: unknown language detector 'nope'"),
    ({"type": "nope"}, r"type: unknown task type 'nope'"),
    ({"type": "generative_exact", "colour": 1}, r"colour: unknown setting"),
    ({"type": "generative_exact", "max_new_tokens": -1}, r"max_new_tokens: Input should be"),
    # a setting only another type reads changed nothing but the cache key
    ({"type": "teacher_forced_exact", "max_new_tokens": 64},
     r"max_new_tokens is read by generative_exact and generative_numeric, not by 'teacher_forced_exact'"),
    ({"type": "generative_exact", "append_eos": False}, r"append_eos is read by teacher_forced_exact, not by"),
    ({"type": "multiple_choice", "extractor": "hash"}, r"extractor is read by generative_numeric, not by"),
    ({"type": "generative_exact", "graded": True}, r"settings: graded scores exist"),
])
def test_task_settings_errors_are_one_line_and_come_before_any_work(settings, pattern):
    with pytest.raises(EvaluationError, match=pattern) as err:
        as_task(settings)
    message = str(err.value)
    assert "\n" not in message and "pydantic.dev" not in message and "Value error" not in message


def test_settings_without_type_do_not_echo_the_merged_default(tmp_path):
    (tmp_path / "g.jsonl").write_text('{"question": "q", "answer": "x #### 4"}\n')
    with pytest.raises(EvaluationError) as err:
        load_benchmark(tmp_path / "g.jsonl", task={"max_new_tokens": 0})
    assert str(err.value) == ("invalid task settings: max_new_tokens: Input should be greater "
                              "than or equal to 1")


def test_naming_the_default_type_keeps_the_formats_task(shared_data):
    """`--task generative_numeric` on MGSM (the docs' example) dropped the format's template, stops
    and worked few-shot answers, because naming the type started from that type's bare defaults."""
    path = shared_data / "mgsm" / "mgsm_de.tsv"
    default = load_benchmark(path).task
    assert load_benchmark(path, task="generative_numeric").task == default
    tuned = load_benchmark(path, task={"type": "generative_numeric", "max_new_tokens": 64}).task
    assert tuned == default.with_overrides({"max_new_tokens": 64})
    assert load_benchmark(path, task="generative_exact").task.prompt_template == "{prompt}"  # another type: fresh


def test_loader_options_a_format_would_ignore_are_refused(tmp_path, shared_data):
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(BenchmarkFormatError, match=r"b.jsonl:1: no id field 'qid'"):
        load_benchmark(path, id_field="qid")
    with pytest.raises(BenchmarkFormatError, match=r"no choices field 'opts'"):
        load_benchmark(path, choices_field="opts")
    with pytest.raises(BenchmarkFormatError, match="split applies to Hugging Face datasets"):
        load_benchmark(path, split="train")
    with pytest.raises(BenchmarkFormatError, match="the mgsm format has a fixed layout; prompt_field does not apply"):
        load_benchmark(shared_data / "mgsm" / "mgsm_de.tsv", prompt_field="frage")

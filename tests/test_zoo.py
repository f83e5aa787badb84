"""The demo zoo: generators, splits, deterministic smoke build, manifest, loaders, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from frugalmerge.zoo import ZooError, ensure_zoo, load_zoo
from frugalmerge.zoo.data import ExampleStream, Source, split_problems
from frugalmerge.zoo.languages import LANGUAGES, Problem, sample_problem, split_of, vocabulary


def _tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def smoke_zoo(tmp_path_factory) -> Path:
    # ensure_zoo builds a smoke zoo on demand (none is shipped)
    target = tmp_path_factory.mktemp("zoo") / "smoke"
    zoo = ensure_zoo("smoke", target)
    assert zoo.root == target.resolve()
    return target


def _problem(**overrides) -> Problem:
    fields = dict(op="+", a=7, b=5, distractor=9, name=0, name2=1, obj=0, obj2=0, have_tpl=0,
                  op_tpl=0, distract_tpl=0, distract_pos=2)
    fields.update(overrides)
    return Problem(**fields)


def test_problem_renders_the_same_structure_in_every_language():
    problem = _problem()
    assert problem.equation == "7 + 5 = 12"
    assert problem.render("en") == ("tom has 7 apples . he buys 5 more apples . anna has 9 birds . "
                                    "how many apples does tom have now ? =")
    assert problem.render("de") == ("tom hat 7 äpfel . er kauft 5 weitere äpfel . anna hat 9 vögel . "
                                    "wie viele äpfel hat tom jetzt ? =")
    assert problem.render("fr") == ("tom a 7 pommes . il achète 5 autres pommes . anna a 9 oiseaux . "
                                    "combien de pommes a tom maintenant ? =")
    assert _problem(op="-", a=7, b=5).equation == "7 - 5 = 2"


def test_sampled_problems_stay_in_range_and_distractor_differs():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        p = sample_problem(rng)
        assert 1 <= p.a <= 20 and 1 <= p.b <= 20 and 0 <= p.result <= 20
        assert p.distractor not in (p.a, p.b) and p.name != p.name2


def test_tokenizer_covers_every_word_and_splits_digits():
    from frugalmerge.zoo.tiny import build_word_tokenizer

    tok = build_word_tokenizer(vocabulary())
    rng = np.random.default_rng(1)
    for _ in range(200):
        p = sample_problem(rng)
        for lang in LANGUAGES:
            ids = tok(f"{p.render(lang)} {p.equation}")["input_ids"]
            assert tok.unk_token_id not in ids
    assert tok.convert_ids_to_tokens(tok("= 12")["input_ids"]) == ["<s>", "=", "1", "2"]


def test_split_problems_are_disjoint_and_deterministic():
    sets = {s: split_problems(s, 200, seed) for s, seed in (("train", 1), ("search", 2), ("test", 3))}
    keys = {s: {p.key for p in ps} for s, ps in sets.items()}
    assert all(len(k) == 200 for k in keys.values())
    assert not keys["train"] & keys["search"] and not keys["train"] & keys["test"]
    assert not keys["search"] & keys["test"]
    assert all(split_of(k) == s for s, ks in keys.items() for k in ks)
    assert [p.key for p in split_problems("test", 200, 3)] == [p.key for p in sets["test"]]


def test_reading_examples_mask_the_result_and_training_uses_train_problems_only():
    from frugalmerge.zoo.tiny import build_word_tokenizer

    tok = build_word_tokenizer(vocabulary())
    stream = ExampleStream([Source(kind="problem_eq", language="de", weight=1)], [], tok, seed=0)
    eq_id = tok.convert_tokens_to_ids("=")
    for _ in range(50):
        ids, weights = stream.next_example()
        last_eq = max(i for i, t in enumerate(ids) if t == eq_id)
        assert weights[0] == 0.0 and all(w == 1.0 for w in weights[1:last_eq + 1])
        assert all(w == 0.0 for w in weights[last_eq + 1:]) and ids[-1] == tok.eos_token_id
    full = ExampleStream([Source(kind="problem_full", language="en", weight=1)], [], tok, seed=0)
    _, weights = full.next_example()
    assert weights[1:] == [1.0] * (len(weights) - 1)
    # every problem a training stream draws belongs to the train split
    from frugalmerge.zoo.data import sample_train_problem

    rng = np.random.default_rng(5)
    assert all(split_of(sample_train_problem(rng).key) == "train" for _ in range(300))


def test_smoke_build_is_deterministic(smoke_zoo, tmp_path):
    from typer.testing import CliRunner

    from frugalmerge.cli import app

    # the second build goes through the CLI: same bytes as the API build
    again = tmp_path / "again"
    result = CliRunner().invoke(app, ["zoo", "build", "--size", "smoke", "--out", str(again)])
    assert result.exit_code == 0, result.output
    first, second = _tree_hashes(smoke_zoo), _tree_hashes(again)
    assert any(name.endswith("model.safetensors") for name in first)
    assert first == second


def test_manifest_loads_with_absolute_paths_and_disjoint_splits(smoke_zoo):
    zoo = load_zoo(smoke_zoo)
    assert zoo.size == "smoke" and zoo.base == "base"
    assert set(zoo.models) == {"base", "math_en", "lang_de", "lang_fr"}
    assert all(p.is_absolute() and (p / "model.safetensors").is_file() for p in zoo.models.values())
    assert set(zoo.benchmarks) == {f"{k}_{lang}" for k in ("math", "read") for lang in LANGUAGES}
    assert zoo.showcases["cross_domain"].objectives == ["math_de"]
    assert zoo.showcases["cross_domain"].models == ["math_en", "lang_de"]
    assert set(zoo.showcases["multilingual"].objectives) == {"read_en", "read_de", "read_fr"}
    assert zoo.benchmarks["read_de"].task == {"type": "teacher_forced_exact", "append_eos": False}
    for name, entry in zoo.benchmarks.items():
        structures, ids = {}, set()
        for split in ("train", "search", "test"):
            rows = [json.loads(line) for line in zoo.split_path(name, split).read_text().splitlines()]
            assert all(r["language"] == entry.language for r in rows)
            structures[split] = {r["metadata"]["structure"] for r in rows}
            assert len(structures[split]) == len(rows)
            ids |= {r["id"] for r in rows}
        assert not structures["train"] & structures["search"]
        assert not structures["train"] & structures["test"]
        assert not structures["search"] & structures["test"]


def test_benchmarks_load_and_score_through_the_evaluation_engine(smoke_zoo):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from frugalmerge.evaluation import evaluate, load_benchmark

    zoo = load_zoo(smoke_zoo)
    path = zoo.split_path("math_de", "test")
    bench = load_benchmark(path, task=zoo.benchmarks["math_de"].task)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [item.id for item in bench.items] == [r["id"] for r in rows]
    assert bench.items[0].answer == rows[0]["answer"] and bench.items[0].language == "de"
    assert bench.task.type == "teacher_forced_exact" and bench.task.append_eos
    model = AutoModelForCausalLM.from_pretrained(zoo.model_path("math_en"))
    tokenizer = AutoTokenizer.from_pretrained(zoo.model_path("math_en"))
    scores = evaluate(model, tokenizer, bench, [r["id"] for r in rows[:5]])
    assert list(scores) == [r["id"] for r in rows[:5]]
    assert all(v in (0.0, 1.0) for v in scores.values())


def test_ensure_zoo_reuses_an_existing_zoo_and_checks_its_size(smoke_zoo):
    assert ensure_zoo("smoke", smoke_zoo).root == smoke_zoo.resolve()
    with pytest.raises(ZooError, match="holds a 'smoke' zoo"):
        ensure_zoo("full", smoke_zoo)
    with pytest.raises(ZooError, match="unknown zoo size"):
        ensure_zoo("huge")


def test_load_zoo_errors_name_the_culprit(tmp_path, smoke_zoo):
    with pytest.raises(ZooError, match="no zoo manifest"):
        load_zoo(tmp_path)
    (tmp_path / "zoo.json").write_text("{not json")
    with pytest.raises(ZooError, match="cannot read zoo manifest"):
        load_zoo(tmp_path)
    (tmp_path / "zoo.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ZooError, match="cannot read zoo manifest"):
        load_zoo(tmp_path)
    raw = json.loads((smoke_zoo / "zoo.json").read_text())
    raw["showcases"]["cross_domain"]["models"].append("ghost")
    broken = tmp_path / "broken"
    broken.mkdir()
    for sub in ("models", "benchmarks"):
        (broken / sub).symlink_to(smoke_zoo / sub)
    (broken / "zoo.json").write_text(json.dumps(raw))
    with pytest.raises(ZooError, match="ghost"):
        load_zoo(broken)


def test_cli_build_refuses_unknown_size_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from frugalmerge.cli import app

    result = CliRunner().invoke(app, ["zoo", "build", "--size", "huge", "--out", str(tmp_path / "z")])
    assert result.exit_code == 1
    assert "unknown zoo size 'huge'" in result.output
    assert not (tmp_path / "z").exists()
    (tmp_path / "z").mkdir()
    result = CliRunner().invoke(app, ["zoo", "build", "--size", "smoke", "--out", str(tmp_path / "z")])
    assert result.exit_code == 1 and "already exists" in result.output

"""``frugalmerge evaluate`` and the response-matrix writer."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from frugalmerge.cli import app
from frugalmerge.evaluation import EvaluationError
from frugalmerge.evaluation.responses import write_responses_csv


def test_write_responses_csv_layout(tmp_path):
    path = write_responses_csv(tmp_path / "r.csv", {"a": {"i1": 1.0, "i2": 0.0},
                                                    "b": {"i2": 0.5}})
    rows = list(csv.reader(path.open()))
    assert rows == [["model", "i1", "i2"], ["a", "1", "0"], ["b", "", "0.5"]]
    with pytest.raises(EvaluationError):
        write_responses_csv(tmp_path / "x.csv", {})


def test_evaluate_command_end_to_end(tiny_models, tmp_path):
    bench = tmp_path / "b.jsonl"
    bench.write_text("".join(json.dumps({"id": f"q{i}", "prompt": "what is the cat",
                                         "answer": "the dog" if i % 2 else "cat"}) + "\n"
                             for i in range(6)))
    result = CliRunner().invoke(app, [
        "evaluate", str(bench), str(tiny_models["base"]), str(tiny_models["model_a"]),
        "--task", "teacher_forced_exact", "--responses", str(tmp_path / "r.csv"),
        "--json", str(tmp_path / "r.json"), "--cache", str(tmp_path / "cache.json")])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader((tmp_path / "r.csv").open()))
    assert rows[0] == ["model", *(f"q{i}" for i in range(6))]
    assert [r[0] for r in rows[1:]] == ["base", "model_a"]
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["task"]["type"] == "teacher_forced_exact"
    assert set(payload["models"]["base"]["scores"]) == {f"q{i}" for i in range(6)}
    assert len(json.loads((tmp_path / "cache.json").read_text())["entries"]) == 12


def test_evaluate_command_errors_are_one_line(tiny_models, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["evaluate", str(tmp_path / "nope.jsonl"),
                                  str(tiny_models["base"])])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    bench = tmp_path / "b.jsonl"
    bench.write_text('{"prompt": "a", "answer": "b"}\n')
    bad_task = runner.invoke(app, ["evaluate", str(bench), str(tiny_models["base"]),
                                   "--task", "nonsense"])
    assert bad_task.exit_code == 1 and "unknown task type" in bad_task.output
    not_model = runner.invoke(app, ["evaluate", str(bench), str(tmp_path)])
    assert not_model.exit_code == 1 and "no config.json" in not_model.output


# --- bad input: one line, exit 1, nothing written, before any model is evaluated ---------------

def _bench(tmp_path, n: int = 4):
    bench = tmp_path / "b.jsonl"
    bench.write_text("".join(json.dumps({"id": f"q{i}", "prompt": "what is the cat",
                                         "answer": "cat"}) + "\n" for i in range(n)))
    return bench


def _fails_in_one_line(args, *needles):
    result = CliRunner().invoke(app, ["evaluate", *map(str, args)])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert str(needle) in lines[0], lines[0]
    return lines[0]


def _broken_copy(src, dst, kind):
    import shutil

    shutil.copytree(src, dst)
    if kind == "corrupt":
        data = (dst / "model.safetensors").read_bytes()
        (dst / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif kind == "no_tokenizer":
        for f in dst.glob("tokenizer*"):
            f.unlink()
    elif kind == "no_weights":
        (dst / "model.safetensors").unlink()
    elif kind == "bad_config":
        (dst / "config.json").write_text('{"model_type": "llama",')
    elif kind == "config_not_object":
        (dst / "config.json").write_text("[1, 2]")
    elif kind == "unknown_model_type":
        (dst / "config.json").write_text('{"model_type": "no-such-architecture"}')
    return dst


@pytest.mark.parametrize("kind,needle", [("corrupt", "weights"), ("no_tokenizer", "tokenizer"),
                                         ("no_weights", "no weights"),
                                         ("bad_config", "config.json"),
                                         ("config_not_object", "not a JSON object"),
                                         ("unknown_model_type", "config")])
def test_a_bad_model_folder_is_found_before_any_model_is_evaluated(tiny_models, tmp_path, kind,
                                                                   needle):
    bad = _broken_copy(tiny_models["model_a"], tmp_path / f"bad_{kind}", kind)
    cache = tmp_path / "cache.json"
    _fails_in_one_line([_bench(tmp_path), tiny_models["base"], bad, "--cache", cache,
                        "--json", tmp_path / "s.json"], bad, needle)
    assert not cache.exists() and not (tmp_path / "s.json").exists()


def test_a_model_failing_to_load_keeps_the_cache_of_the_models_before(tiny_models, tmp_path,
                                                                      monkeypatch):
    from frugalmerge.evaluation import cli
    from frugalmerge.evaluation.errors import EvaluationError

    real, calls = cli._load_model, []

    def second_fails(path, dtype):
        calls.append(path)
        if len(calls) == 2:
            raise EvaluationError(f"model {path}: cannot load it (simulated)")
        return real(path, dtype)

    monkeypatch.setattr(cli, "_load_model", second_fails)
    cache = tmp_path / "cache.json"
    result = CliRunner().invoke(app, ["evaluate", str(_bench(tmp_path)), str(tiny_models["base"]),
                                      str(tiny_models["model_a"]), "--cache", str(cache),
                                      "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 1 and "simulated" in result.output
    assert len(json.loads(cache.read_text())["entries"]) == 4  # the first model's four items
    assert not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("option", ["--json", "--responses", "--cache"])
def test_unwritable_output_paths_fail_before_loading(tiny_models, tmp_path, option):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    others = {"--json": "s.json", "--responses": "r.csv", "--cache": "c.json"}
    rest = [a for o, f in others.items() if o != option for a in (o, tmp_path / f)]
    for target, needle in ((tmp_path / "adir", "existing directory"),
                           (tmp_path / "afile" / "x.out", "is a file")):
        _fails_in_one_line([_bench(tmp_path), tiny_models["base"], option, target, *rest],
                           option, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile", "b.jsonl"]


def test_outputs_never_replace_inputs_or_foreign_files(tiny_models, tmp_path):
    bench = _bench(tmp_path)
    before = bench.read_text()
    base = tiny_models["base"]
    _fails_in_one_line([bench, base, "--json", bench], "is the benchmark")
    _fails_in_one_line([bench, base, "--responses", bench], "is the benchmark")
    _fails_in_one_line([bench, base, "--cache", bench], "is the benchmark")
    _fails_in_one_line([bench, base, "--json", tmp_path / "o", "--responses", tmp_path / "o"],
                       "is also the")
    notes = tmp_path / "notes.json"
    notes.write_text('{"todo": ["keep me"]}')
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("name,value\na,1\n")
    config = base / "config.json"
    config_text = config.read_text()
    _fails_in_one_line([bench, base, "--json", notes], notes, "another path")
    _fails_in_one_line([bench, base, "--json", config], "another path")
    _fails_in_one_line([bench, base, "--responses", sheet], sheet, "another path")
    assert bench.read_text() == before and config.read_text() == config_text
    assert notes.read_text() == '{"todo": ["keep me"]}' and sheet.read_text() == "name,value\na,1\n"


def test_outputs_of_an_earlier_run_are_replaced(tiny_models, tmp_path):
    args = ["evaluate", str(_bench(tmp_path)), str(tiny_models["base"]),
            "--json", str(tmp_path / "s.json"), "--responses", str(tmp_path / "r.csv")]
    (tmp_path / "r.csv").write_text("")  # empty: nothing to lose
    for _ in range(2):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    assert set(json.loads((tmp_path / "s.json").read_text())) == {"benchmark", "task", "models"}


def test_model_names_are_unique_and_the_same_folder_twice_is_an_error(tiny_models, tmp_path):
    from frugalmerge.evaluation.cli import _unique_names

    for sub in ("a/x/m", "b/x/m", "c/y/m", "d/z"):
        (tmp_path / sub).mkdir(parents=True)
    paths = [tmp_path / "a/x/m", tmp_path / "b/x/m", tmp_path / "c/y/m", tmp_path / "d/z"]
    assert _unique_names(paths) == ["a/x/m", "b/x/m", "y/m", "z"]
    assert _unique_names([tmp_path / "a/x/m", tmp_path / "c/y/m"]) == ["x/m", "y/m"]
    _fails_in_one_line([_bench(tmp_path), tiny_models["base"], tiny_models["base"]],
                       "given twice")
    _fails_in_one_line([_bench(tmp_path), tiny_models["base"],
                        tiny_models["base"].parent / "." / tiny_models["base"].name],
                       "given twice")


def test_task_errors_are_one_clear_line(tiny_models, tmp_path):
    bench, base = _bench(tmp_path), tiny_models["base"]
    line = _fails_in_one_line([bench, base, "--task", '{"type": "generative_exact",'], "--task",
                              "invalid JSON")
    assert "Expecting" in line
    for task, needle in [('{"type": "nope"}', "type: unknown task type 'nope'"),
                         ('{"type": "generative_exact", "colour": 1}', "colour: unknown setting"),
                         ('{"max_new_tokens": -1}', "max_new_tokens:"),
                         ('{"graded": true}', "graded scores exist"),
                         ('{"num_fewshots": 2}', "num_fewshots: unknown setting"),
                         ('{"normalizer": "nope"}', "unknown normalizer 'nope'"),
                         ('{"type": "generative_numeric", "extractor": "nope"}',
                          "unknown extractor 'nope'")]:
        line = _fails_in_one_line([bench, base, "--task", task], needle)
        assert "pydantic" not in line and "prompt_template" not in line and len(line) < 200


def test_a_zoo_split_is_scored_with_the_zoos_task(tmp_path):
    """A split file inside a zoo gets the task zoo.json gives its benchmark: read_de's
    `append_eos: false` made lang_de score 0.000 without a hand-written --task (0.987 with it)."""
    from frugalmerge.zoo import prebuilt_zoo_dir

    zoo = prebuilt_zoo_dir("full")
    if zoo is None:
        pytest.skip("this checkout ships no prebuilt zoo")
    split, model = zoo / "benchmarks" / "read_de" / "test.jsonl", zoo / "models" / "lang_de"

    def run(*extra):
        res = CliRunner().invoke(app, ["evaluate", str(split), str(model), "--limit", "40", "--json",
                                       str(tmp_path / "s.json"), *extra])
        assert res.exit_code == 0, res.output
        return json.loads((tmp_path / "s.json").read_text())

    plain = run()["models"]["lang_de"]
    assert plain["accuracy"] >= 0.9  # the zoo's task, not generative_exact
    # settings adjust the zoo's task; the explicit zoo task gives the same scores
    assert run("--task", '{"num_fewshot": 0}')["models"]["lang_de"] == plain
    assert run("--task", '{"type": "teacher_forced_exact", "append_eos": false}')["models"]["lang_de"] == plain
    # naming the same type keeps append_eos: false; the bare type's default (true) would fail every item
    assert run("--task", "teacher_forced_exact")["models"]["lang_de"] == plain

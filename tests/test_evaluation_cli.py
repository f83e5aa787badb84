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

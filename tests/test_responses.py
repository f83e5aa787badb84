"""Response matrices and their loaders: round trips, real-data layouts, bad inputs -> clear errors."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from frugalmerge.estimators.errors import ResponseError, UnknownNameError
from frugalmerge.estimators.responses import ResponseMatrix, load_responses


def small_matrix(target: bool = True) -> ResponseMatrix:
    values = np.array([[1, 0, 1, np.nan], [0, 0, 1, 1], [1, 1, 1, 0.5]], dtype=float)
    return ResponseMatrix(values, ["a", "b", "c"], ["q1", "q2", "q3", "q4"],
                          target=np.array([0.6, 0.4, 0.9]) if target else None)


def test_csv_round_trip_keeps_missing_and_target(tmp_path):
    r = small_matrix()
    r.to_csv(tmp_path / "r.csv", target_col="full")
    back = load_responses(tmp_path / "r.csv", target="full")
    assert back.model_ids == r.model_ids and back.item_ids == r.item_ids
    np.testing.assert_array_equal(np.isnan(back.values), np.isnan(r.values))
    np.testing.assert_allclose(np.nan_to_num(back.values), np.nan_to_num(r.values))
    np.testing.assert_allclose(back.target, r.target)
    assert back.sha256() == r.sha256()
    # Without --target the target column would be an item: out of the way only when named.
    assert "full" in load_responses(tmp_path / "r.csv").item_ids


def test_full_scores_default_is_item_mean():
    r = small_matrix(target=False)
    np.testing.assert_allclose(r.full_scores(), [2 / 3, 0.5, 3.5 / 4])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model,q1\n", "no model rows"),
        ("name,q1\na,1\n", "first column must be 'model'"),
        ("model,q1,q1\na,1,0\n", "duplicate item id 'q1'"),
        ("model,q1\na,1\na,0\n", "duplicate model id 'a'"),
        ("model,q1\na,1.5\n", "outside [0, 1]"),
        ("model,q1\na,nan\n", "NaN"),
        ("model,q1\na,yes\n", "not a number"),
        ("model,q1,q2\na,,\n", "has no responses"),
        ("", "empty file"),
    ],
)
def test_bad_csv_gives_one_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ResponseError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_responses(path)


def test_bad_target_and_empty_matrix(tmp_path):
    (tmp_path / "t.csv").write_text("model,q1,full\na,1,\n")
    with pytest.raises(ResponseError, match="target column 'full' has an empty value"):
        load_responses(tmp_path / "t.csv", target="full")
    with pytest.raises(ResponseError, match="target 85.0 of model 'a' is outside"):
        ResponseMatrix(np.ones((1, 2)), ["a"], ["x", "y"], target=[85.0])
    with pytest.raises(ResponseError, match="empty response matrix"):
        ResponseMatrix(np.ones((0, 3)), [], ["x", "y", "z"])
    with pytest.raises(UnknownNameError, match="unknown response file type"):
        (tmp_path / "r.xlsx").write_text("x")
        load_responses(tmp_path / "r.xlsx")


def test_npz_generic_and_metabench_layouts(tmp_path):
    r = small_matrix()
    np.savez(tmp_path / "g.npz", values=r.values, model_ids=np.array(r.model_ids), item_ids=np.array(r.item_ids),
             target=r.target)
    back = load_responses(tmp_path / "g.npz")
    assert back.sha256() == r.sha256()
    np.savez(tmp_path / "m.npz", X_train=np.array([[1, 0], [0, 0]], dtype=np.int8), item_ids=np.array(["7", "9"]),
             train_models=np.array(["x", "y"]), all_models=np.array(["y", "z", "x"]),
             all_full_score=np.array([25.0, 50.0, 75.0]), all_set=np.array(["train", "test", "train"]))
    meta = load_responses(tmp_path / "m.npz")
    np.testing.assert_allclose(meta.target, [0.75, 0.25])  # matched by model name, /100


def test_pyirt_jsonl(tmp_path):
    lines = [{"subject_id": "a", "responses": {"q1": 1, "q2": 0}, "acc": 0.5},
             {"subject_id": "b", "responses": {"q2": 1}, "acc": 1.0}]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = load_responses(tmp_path / "r.jsonl", target="acc")
    assert r.item_ids == ("q1", "q2") and np.isnan(r.values[1, 0]) and r.values[1, 1] == 1.0
    np.testing.assert_allclose(r.target, [0.5, 1.0])
    (tmp_path / "bad.jsonl").write_text('{"subject_id": "a"}\n')
    with pytest.raises(ResponseError, match="bad.jsonl:1"):
        load_responses(tmp_path / "bad.jsonl")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_lb_pickle_restricted_unpickler(tmp_path):
    data = {"models": ["m1", "m2"], "data": {"t1": {"correctness": np.array([[1.0, 0.0], [0.5, 1.0], [0.0, 0.0]])},
                                             "t2": {"correctness": np.array([[1.0, 1.0]])}}}
    with open(tmp_path / "lb.pickle", "wb") as f:
        pickle.dump(data, f)
    r = load_responses(tmp_path / "lb.pickle")
    assert r.model_ids == ("m1", "m2") and r.item_ids == ("t1/0", "t1/1", "t1/2", "t2/0")
    np.testing.assert_allclose(r.values[0], [1.0, 0.5, 0.0, 1.0])
    assert r.item_groups == ("t1", "t1", "t1", "t2")
    only = load_responses(f"{tmp_path / 'lb.pickle'}#t2")
    assert only.item_ids == ("t2/0",)
    with open(tmp_path / "evil.pickle", "wb") as f:
        pickle.dump({"models": Evil(), "data": {}}, f)
    with pytest.raises(ResponseError, match="refusing to load builtins.print"):
        load_responses(tmp_path / "evil.pickle")


def test_psn_folder_blocks(tmp_path):
    d = tmp_path / "psn"
    d.mkdir()
    np.savetxt(d / "combine.csv", np.array([[1, 0, 1, 1, 0], [0, 0, 1, 0, 1]], dtype=float), delimiter=",")
    (d / "blocks.json").write_text(json.dumps({"_note": "x", "A": [0, 2], "B": [2, 5]}))
    r = load_responses(d)
    assert r.n_models == 2 and r.item_ids[:3] == ("A/0", "A/1", "B/0")
    b = load_responses(d, block="B")
    np.testing.assert_allclose(b.values, [[1, 1, 0], [1, 0, 1]])
    with pytest.raises(ResponseError, match="no benchmark block 'C'"):
        load_responses(d, block="C")


def test_parquet_when_available(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"model": ["a", "b"], "q1": [1.0, None], "q2": [0.0, 1.0], "full": [0.4, 0.6]})
    pq.write_table(table, tmp_path / "r.parquet")
    r = load_responses(tmp_path / "r.parquet", target="full")
    assert r.item_ids == ("q1", "q2") and np.isnan(r.values[1, 0])
    np.testing.assert_allclose(r.target, [0.4, 0.6])


def test_real_data_layouts(shared_data):
    arc = load_responses(shared_data / "metabench_reduced" / "arc.npz")
    assert arc.values.shape == (4280, 100) and arc.target is not None and 0 < arc.target.mean() < 1
    mmlu = load_responses(shared_data / "metabench_reduced" / "mmlu.npz")
    assert mmlu.item_groups is not None and "high_school_mathematics" in mmlu.item_groups
    lb = load_responses(shared_data / "minilongbench")
    assert lb.values.shape == (40, 4750)
    gsm = load_responses(shared_data / "psn_irt_opencompass", block="GSM8K")
    assert gsm.values.shape == (12, 1319)



def _write_jsonl(path: Path, rec: dict) -> Path:
    path.write_text(json.dumps(rec) + "\n")
    return path


def _write_pickle(path: Path, obj: object) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


def _write_parquet(path: Path, columns: dict | None) -> Path:
    """A parquet file of ``columns``, or (None) junk bytes behind the parquet magic."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    if columns is None:
        path.write_bytes(b"PAR1 junk")
    else:
        pq.write_table(pa.table(columns), path)
    return path


def _write_psn(path: Path, blocks: str, combine: str = "1,0,1\n0,1,1\n") -> Path:
    path.mkdir()
    (path / "combine.csv").write_text(combine)
    (path / "blocks.json").write_text(blocks)
    return path


def _write_npz(path: Path, bare: bool = False, **arrays: np.ndarray) -> Path:
    """An .npz of ``arrays``; ``bare``: a single .npy array saved under the .npz name."""
    with open(path, "wb") as f:
        if bare:
            np.save(f, np.ones(2))
        else:
            np.savez(f, **arrays)
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _answers(value: object) -> dict:
    return {"subject_id": "a", "responses": {"q1": value}}


_IDS = {"model_ids": np.array(["m"]), "item_ids": np.array(["q1", "q2"])}

# case -> (builder of the bad file under tmp_path, --target, regex the ResponseError must match)
BAD_FILES: dict[str, tuple[Callable[[Path], Path], str | None, str]] = {
    "jsonl-response-string": (lambda d: _write_jsonl(d / "r.jsonl", _answers("yes")), None,
                              r"r\.jsonl:1: response to item 'q1' is not a number: \"yes\""),
    "jsonl-response-null": (lambda d: _write_jsonl(d / "r.jsonl", _answers(None)), None,
                            r"r\.jsonl:1: response to item 'q1' is not a number: null"),
    "jsonl-response-list": (lambda d: _write_jsonl(d / "r.jsonl", _answers([1])), None,
                            r"r\.jsonl:1: response to item 'q1' is not a number: \[1\]"),
    "jsonl-target-string": (lambda d: _write_jsonl(d / "r.jsonl", {**_answers(1), "acc": "high"}), "acc",
                            r"r\.jsonl:1: target field 'acc' is not a number: \"high\""),
    "jsonl-not-utf8": (lambda d: _write_bytes(d / "r.jsonl", b'{"subject_id": "\xff", "responses": {"q1": 1}}\n'),
                       None, r"r\.jsonl: not UTF-8 text"),
    "parquet-string-column": (lambda d: _write_parquet(d / "r.parquet", {"model": ["a"], "q1": ["x"]}), None,
                              r"r\.parquet: row 0, column 'q1': not a number: 'x'"),
    "parquet-list-column": (lambda d: _write_parquet(d / "r.parquet", {"model": ["a"], "q1": [[1.0]]}), None,
                            r"r\.parquet: row 0, column 'q1': not a number"),
    "parquet-corrupt": (lambda d: _write_parquet(d / "r.parquet", None), None,
                        r"r\.parquet: not a readable parquet file"),
    "parquet-duplicate-model": (lambda d: _write_parquet(d / "dup.parquet", {"model": ["a", "a"], "q1": [1.0, 0.0]}),
                                None, r"dup: duplicate model id 'a'"),
    "pickle-models-int": (lambda d: _write_pickle(d / "lb.pickle", {"models": 5,
                                                                   "data": {"t": {"correctness": [[1]]}}}),
                          None, r"lb\.pickle: 'models' must be a list"),
    "pickle-string-correctness": (lambda d: _write_pickle(d / "lb.pickle", {"models": ["m"],
                                                                           "data": {"t": {"correctness": [["yes"]]}}}),
                                  None, r"lb\.pickle: task 't' correctness is not a numeric array"),
    "pickle-empty-data": (lambda d: _write_pickle(d / "lb.pickle", {"models": ["m"], "data": {}}), None,
                          r"lb\.pickle: 'data' has no tasks"),
    "psn-invalid-json": (lambda d: _write_psn(d / "psn", "{not json"), None,
                         r"psn[/\\]blocks\.json: invalid JSON"),
    "psn-block-not-range": (lambda d: _write_psn(d / "psn", '{"a": 5}'), None,
                            r"psn[/\\]blocks\.json: block 'a' must be \[start, end\]"),
    "psn-blocks-not-object": (lambda d: _write_psn(d / "psn", "[0, 3]"), None,
                              r"psn[/\\]blocks\.json: expected an object"),
    "psn-combine-not-numeric": (lambda d: _write_psn(d / "psn", '{"a": [0, 2]}', combine="1,x\n"), None,
                                r"psn[/\\]combine\.csv: not a numeric matrix"),
    "npz-object-values": (lambda d: _write_npz(d / "r.npz", values=np.array([[1, "a"]], dtype=object), **_IDS),
                          None, r"r\.npz: array 'values' is not readable"),
    "npz-string-values": (lambda d: _write_npz(d / "r.npz", values=np.array([["1", "x"]]), **_IDS), None,
                          r"r\.npz: array 'values' is not numeric"),
    "npz-bare-npy": (lambda d: _write_npz(d / "r.npz", bare=True), None, r"r\.npz: a single \.npy array"),
    "npz-duplicate-item": (lambda d: _write_npz(d / "dup.npz", values=np.ones((1, 2)), model_ids=np.array(["m"]),
                                                item_ids=np.array(["q1", "q1"])), None,
                           r"dup: duplicate item id 'q1'"),
    "csv-blank-first-line": (lambda d: _write_bytes(d / "r.csv", b"\nmodel,q1\na,1\n"), None,
                             r"r\.csv: first line is blank"),
    "csv-not-utf8": (lambda d: _write_bytes(d / "r.csv", "model,q1\ncaf\u00e9,1\n".encode("latin-1")), None,
                     r"r\.csv: not UTF-8 text \(byte 12"),
    "csv-duplicate-model": (lambda d: _write_bytes(d / "dup.csv", b"model,q1\na,1\na,0\n"), None,
                            r"dup\.csv: duplicate model id 'a'"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_gives_one_clear_error_naming_it(tmp_path, case):
    build, target, message = BAD_FILES[case]
    path = build(tmp_path)
    with pytest.raises(ResponseError, match=message) as info:
        load_responses(path, target=target)
    assert type(info.value) is ResponseError  # not a raw ValueError/TypeError that merely matches
    # No chained raw traceback: either nothing was being handled, or it was suppressed (raise ... from None).
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_a_target_column_is_never_silently_an_item(tmp_path):
    """ResponseMatrix.to_csv writes its targets as a 'target' column: read back without --target,
    the scores became one more item; now that is one error saying what to pass."""
    m = ResponseMatrix(np.array([[1.0, 0.0], [0.0, 1.0]]), ("a", "b"), ("q1", "q2"), target=np.array([0.7, 0.4]))
    m.to_csv(tmp_path / "r.csv")
    with pytest.raises(ResponseError, match="column 'target' would be read as an item; pass --target target"):
        load_responses(tmp_path / "r.csv")
    back = load_responses(tmp_path / "r.csv", "target")
    assert back.item_ids == ("q1", "q2") and back.target.tolist() == [0.7, 0.4]

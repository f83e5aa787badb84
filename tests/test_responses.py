"""Response matrices and their loaders: round trips, real-data layouts, bad inputs -> clear errors."""

from __future__ import annotations

import json
import pickle

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

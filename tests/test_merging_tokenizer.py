"""``tokenizer_source: union`` (and base without base_model) of the CLI merge, hand-checked rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from frugalmerge.cli import app
from merging_helpers import EMB, HEAD, tensors, with_extra_words

runner = CliRunner()


def merge(tmp: Path, text: str, out: Path):
    (tmp / "r.yml").write_text(text)
    return runner.invoke(app, ["merge", str(tmp / "r.yml"), "--out", str(out)])


def test_union_linear_appends_new_tokens_and_fills_rows(tiny_models, tmp_path):
    from transformers import AutoTokenizer

    m = tiny_models
    b = with_extra_words(m["model_b"], tmp_path / "b", {"zebra": 7.0, "quokka": 9.0})
    c = with_extra_words(m["model_c"], tmp_path / "c", {"quokka": 1.0, "walrus": 3.0})
    text = (f"merge_method: linear\ndtype: float32\ntokenizer_source: union\nmodels:\n"
            f"  - model: {m['model_a']}\n    parameters: {{weight: 0.5}}\n"
            f"  - model: {b}\n    parameters: {{weight: 0.25}}\n"
            f"  - model: {c}\n    parameters: {{weight: 0.25}}\n")
    res = merge(tmp_path, text, tmp_path / "o")
    assert res.exit_code == 0, res.output
    out = tmp_path / "o"
    a_tok = AutoTokenizer.from_pretrained(str(m["model_a"]))
    tok = AutoTokenizer.from_pretrained(str(out))
    n = len(a_tok.get_vocab())
    vocab = tok.get_vocab()
    # new tokens appended after the first model's (the base's) vocabulary, by model then id
    assert [vocab["zebra"], vocab["quokka"], vocab["walrus"]] == [n, n + 1, n + 2]
    assert tok.tokenize("zebra walrus") == ["zebra", "walrus"]
    assert json.loads((out / "config.json").read_text())["vocab_size"] == n + 3
    got = tensors(out)
    ta, tb, tc = tensors(m["model_a"]), tensors(b), tensors(c)
    for name in (EMB, HEAD):
        assert got[name].shape[0] == n + 3
        shared = 0.5 * ta[name] + 0.25 * tb[name][:n] + 0.25 * tc[name][:n]
        torch.testing.assert_close(got[name][:n], shared, rtol=0, atol=1e-6)
        # zebra / walrus: one model has them, every model gets that row; quokka: no base row -> mean(9, 1)
        assert torch.allclose(got[name][n], torch.full_like(got[name][n], 7.0))
        assert torch.allclose(got[name][n + 1], torch.full_like(got[name][n], 5.0))
        assert torch.allclose(got[name][n + 2], torch.full_like(got[name][n], 3.0))
    others = [k for k in got if k not in (EMB, HEAD)]
    for k in others:
        torch.testing.assert_close(got[k], 0.5 * ta[k] + 0.25 * tb[k] + 0.25 * tc[k], rtol=0, atol=1e-6)


def test_union_ties_takes_base_rows_for_tokens_the_base_has(tiny_models, tmp_path):
    m = tiny_models
    b = with_extra_words(m["model_b"], tmp_path / "b", {"zebra": 7.0})
    text = (f"merge_method: ties\nbase_model: {m['base']}\ndtype: float32\ntokenizer_source: union\nmodels:\n"
            f"  - model: {m['model_a']}\n    parameters: {{weight: 0.5, density: 1.0}}\n"
            f"  - model: {b}\n    parameters: {{weight: 0.5, density: 1.0}}\n")
    res = merge(tmp_path, text, tmp_path / "o")
    assert res.exit_code == 0, res.output
    got = tensors(tmp_path / "o")
    n = tensors(m["base"])[EMB].shape[0]
    for name in (EMB, HEAD):
        # every model (base included) gets zebra = 7, so every delta is 0 and the merge is 7
        assert got[name].shape[0] == n + 1
        assert torch.allclose(got[name][n], torch.full_like(got[name][n], 7.0))


def test_tokenizer_source_base_without_base_model_uses_the_first_model(tiny_models, tmp_path):
    m = tiny_models
    b = with_extra_words(m["model_b"], tmp_path / "b", {"zebra": 7.0})
    text = (f"merge_method: linear\ndtype: float32\ntokenizer_source: base\nmodels:\n"
            f"  - model: {m['model_a']}\n    parameters: {{weight: 0.5}}\n"
            f"  - model: {b}\n    parameters: {{weight: 0.5}}\n")
    res = merge(tmp_path, text, tmp_path / "o")
    assert res.exit_code == 0, res.output
    got, ta, tb = tensors(tmp_path / "o"), tensors(m["model_a"]), tensors(b)
    n = ta[EMB].shape[0]
    assert got[EMB].shape[0] == n
    torch.testing.assert_close(got[EMB], 0.5 * ta[EMB] + 0.5 * tb[EMB][:n], rtol=0, atol=1e-6)


def test_extend_word_vocab_appends_rows_and_refuses_known_words(tiny_models, tmp_path):
    from frugalmerge.zoo.tiny import extend_word_vocab

    src = tiny_models["model_a"]
    before = tensors(src)
    n, hidden = before[EMB].shape
    row = torch.arange(hidden, dtype=torch.float32)
    out = extend_word_vocab(src, tmp_path / "x", {"zebra": 2.0, "quokka": row})
    got = tensors(out)
    for name in (EMB, HEAD):
        torch.testing.assert_close(got[name][:n], before[name], rtol=0, atol=0)
        torch.testing.assert_close(got[name][n:], torch.stack([torch.full((hidden,), 2.0), row]), rtol=0, atol=0)
    vocab = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
    assert (vocab["zebra"], vocab["quokka"]) == (n, n + 1)
    assert json.loads((out / "config.json").read_text())["vocab_size"] == n + 2
    with pytest.raises(ValueError, match="'zebra' is already in"):
        extend_word_vocab(out, tmp_path / "y", {"zebra": 1.0})
    assert not (tmp_path / "y").exists() and not list(tmp_path.glob(".y*"))  # nothing written

"""``--max-device-memory`` of the streaming merge: batches that fit, identical results, clear errors."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from frugalmerge.cli import app
from frugalmerge.merging.errors import DeviceMemoryError
from frugalmerge.merging.execute import DeviceUsage, run_merge
from frugalmerge.merging.recipe import MergeRecipe
from merging_helpers import tensors

runner = CliRunner()


def dare_recipe(m) -> MergeRecipe:
    # dare_ties draws random masks: identical outputs prove the budget does not change the RNG stream.
    return MergeRecipe.model_validate({
        "merge_method": "dare_ties", "base_model": str(m["base"]), "dtype": "float32",
        "models": [{"model": str(m[k]), "parameters": {"weight": 0.4, "density": 0.6}}
                   for k in ("model_a", "model_b", "model_c")],
    })


def test_every_budget_gives_bit_identical_weights_and_respects_the_peak(tiny_models, tmp_path):
    recipe = dare_recipe(tiny_models)
    free = DeviceUsage(None)
    run_merge(recipe, tmp_path / "free", seed=5, progress=False, usage=free)
    reference = tensors(tmp_path / "free")
    largest = free.peak_bytes
    total = sum(free.batch_bytes)
    assert len(free.batches) == sum(len(b) for b in free.batches)  # one tensor per batch without a budget
    for budget in (largest, largest + largest // 2, 3 * largest, total):
        usage = DeviceUsage(None)
        out = tmp_path / f"b{budget}"
        run_merge(recipe, out, seed=5, progress=False, max_device_memory=budget, usage=usage)
        assert usage.peak_bytes <= budget
        assert [n for b in usage.batches for n in b] == [n for b in free.batches for n in b]
        got = tensors(out)
        assert got.keys() == reference.keys()
        for name, t in reference.items():
            assert torch.equal(got[name], t), (budget, name)
    # The whole model's operands fit in one batch; the smallest budget needs the most batches.
    whole = DeviceUsage(None)
    run_merge(recipe, tmp_path / "whole", seed=5, progress=False, max_device_memory=total, usage=whole)
    tight = DeviceUsage(None)
    run_merge(recipe, tmp_path / "tight", seed=5, progress=False, max_device_memory=largest, usage=tight)
    assert len(whole.batches) == 1 < len(tight.batches) < len(free.batches)


def test_job_bytes_are_operands_plus_output(tiny_models, tmp_path):
    # A float32 [n] tensor with a base and 3 models: reference + 3 stacked deltas + the output = 5n floats.
    usage = DeviceUsage(None)
    run_merge(dare_recipe(tiny_models), tmp_path / "o", progress=False, usage=usage)
    shapes = {k: v.numel() for k, v in tensors(tiny_models["base"]).items()}
    for names, nbytes in zip(usage.batches, usage.batch_bytes):
        assert nbytes == 5 * 4 * shapes[names[0]]


def test_a_tensor_larger_than_the_budget_is_one_clear_error(tiny_models, tmp_path):
    recipe = dare_recipe(tiny_models)
    usage = DeviceUsage(None)
    run_merge(recipe, tmp_path / "o", progress=False, usage=usage)
    with pytest.raises(DeviceMemoryError, match=r"tensor \S+\.weight needs \d+ bytes .* --max-device-memory is \d+ bytes"):
        run_merge(recipe, tmp_path / "small", progress=False, max_device_memory=usage.peak_bytes - 1)
    assert not (tmp_path / "small").exists()


def test_cli_prints_the_plan_and_rejects_tiny_budgets(tiny_models, tmp_path):
    m = tiny_models
    recipe = tmp_path / "r.yml"
    recipe.write_text(dare_recipe(m).to_yaml())
    res = runner.invoke(app, ["merge", str(recipe), "--out", str(tmp_path / "o"), "--max-device-memory", "1MiB"])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("device plan:"))
    assert "budget 1.00 MiB" in line and "batches" in line
    peak = float(line.split("peak ")[1].split(" ")[0])
    unit = line.split("peak ")[1].split(" ")[1]
    assert peak * {"KiB": 2**10, "MiB": 2**20, "B": 1}[unit] <= 2**20
    res = runner.invoke(app, ["merge", str(recipe), "--out", str(tmp_path / "x"), "--max-device-memory", "1KB"])
    assert res.exit_code != 0
    err = [x for x in res.output.splitlines() if x.startswith("error:")]
    assert len(err) == 1 and "needs" in err[0] and "--max-device-memory" in err[0]
    assert not (tmp_path / "x").exists()

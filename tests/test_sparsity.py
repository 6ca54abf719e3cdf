import dataclasses
import json
import os

import numpy as np
import pytest

from experiments import sparsity


def _strict_json(path):
  def refuse(constant):
    raise ValueError(f"non-standard JSON constant {constant}")
  with open(path) as f:
    return json.load(f, parse_constant=refuse)


def test_smoke_run_prunes_deploys_and_reports(smoke_stage):
  config, results, tmp_path = smoke_stage("sparsity")  # the smoke config, with the tour's settings
  saved = _strict_json(tmp_path / "results.json")
  assert sorted(saved["runs"]) == sorted(config.settings)
  for setting, r in saved["runs"].items():
    for split in ("train", "val", "test"):
      assert len(r["trained"][split]["accuracy"]) == len(config.seeds)
    assert r["trained"]["gap"]["train_test"] == pytest.approx(
        np.subtract(r["trained"]["train"]["accuracy"], r["trained"]["test"]["accuracy"]).tolist())
    # Every round hits its sparsity exactly, in every seed, after fine-tuning too.
    assert [x["sparsity"] for x in r["iterative"]] == list(config.prune_sparsities)
    for x in r["iterative"]:
      for weights in x["weights"]:
        assert weights["overall"] == pytest.approx(x["sparsity"], abs=1e-3)
        assert set(weights["layers"]) == {"Dense_0/kernel", "Dense_1/kernel", "Dense_2/kernel"}
    d = r["deployment"]
    assert d["max_abs_logit_difference"] < 1e-3  # CSR and dense compute the same logits
    assert d["sparse_compressed_bytes"] < d["dense_bytes"]
    assert d["nonzero_weights"] == round((1 - config.target_sparsity) * (784 * 32 + 32 * 16 + 160))
    s = r["structured"]
    assert s["widths"] == [8, 4] and s["params"] == 784 * 8 + 8 + 8 * 4 + 4 + 4 * 10 + 10
    assert s["flops"] == 2 * (784 * 8 + 8 * 4 + 4 * 10)
    assert all(rate > 0 for rates in s["examples_per_second"].values() for rate in rates.values())
  assert set(saved["targets"]) == set(config.settings)
  # Fine-tuning and the narrowed model train on from the trained model's step, for their steps.
  for setting in config.settings:
    fits = tmp_path / "fits" / setting
    steps = {name: _strict_json(fits / name / "results.json")["step"]
             for name in ("dense", "narrow", *(f"pruned_{s:g}" for s in config.prune_sparsities))}
    assert steps["dense"] == config.steps
    assert steps["narrow"] == config.steps + config.structured_steps
    rounds = range(1, len(config.prune_sparsities) + 1)
    assert [steps[f"pruned_{s:g}"] for s in config.prune_sparsities] == [
        config.steps + i * config.fine_tune_steps for i in rounds]
  report = (tmp_path / "results.md").read_text()
  assert "| l1 | 90% |" in report and "## Targets (Han et al. 2015)" in report
  assert [os.path.basename(p) for p in results["plots"]] == ["accuracy_vs_sparsity.png"]
  assert (tmp_path / "plots" / "accuracy_vs_sparsity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_config_is_refused_before_training(tmp_path):
  smoke = sparsity.smoke_config()
  with pytest.raises(ValueError, match="unknown settings \\['dropout'\\]"):
    sparsity.run(dataclasses.replace(smoke, settings=("dropout",)), str(tmp_path))
  with pytest.raises(ValueError, match="target_sparsity 0.8 must be one of"):
    sparsity.run(dataclasses.replace(smoke, target_sparsity=0.8), str(tmp_path))
  with pytest.raises(ValueError, match="prune_sparsities must rise"):
    sparsity.run(dataclasses.replace(smoke, prune_sparsities=(0.9, 0.5)), str(tmp_path))
  with pytest.raises(ValueError, match="structured_widths"):
    sparsity.run(dataclasses.replace(smoke, structured_widths=(64, 4)), str(tmp_path))
  assert not os.listdir(tmp_path)  # nothing written

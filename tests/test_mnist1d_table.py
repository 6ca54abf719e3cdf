import dataclasses
import json

import numpy as np

from experiments import mnist1d_table


def test_smoke_table_runs_end_to_end(tmp_path):
  config = dataclasses.replace(mnist1d_table.smoke_config(), models=("linear", "cnn_mnist1d"))
  results = mnist1d_table.run(config, str(tmp_path))
  runs = results["runs"]["mnist1d"]
  assert runs["linear"]["num_params"] == 410 and runs["cnn_mnist1d"]["num_params"] == 5210
  for run in runs.values():
    test = run["final"]["test"]["accuracy"]
    assert len(test["values"]) == 2 and test["mean"] == np.mean(test["values"])
    assert run["steps"] == [20, 40] and run["seconds_per_seed"] > 0
  assert json.load(open(tmp_path / "results.json"))["runs"]["mnist1d"]["linear"]["num_params"] == 410
  table = (tmp_path / "results.md").read_text()
  assert "| mnist1d | cnn_mnist1d | 5,210 |" in table and "94% / 92.3%" in table
  assert (tmp_path / "plots" / "test_accuracy_mnist1d.png").stat().st_size > 10_000


def test_sequential_seeds_give_the_same_models_as_vmapped(tmp_path):
  config = dataclasses.replace(mnist1d_table.smoke_config(), models=("linear",))
  vmapped = mnist1d_table.run(config, str(tmp_path / "v"))["runs"]["mnist1d"]["linear"]
  sequential = mnist1d_table.run(dataclasses.replace(config, seed_mode="sequential"),
                                 str(tmp_path / "s"))["runs"]["mnist1d"]["linear"]
  np.testing.assert_allclose(vmapped["final"]["test"]["accuracy"]["values"],
                             sequential["final"]["test"]["accuracy"]["values"], atol=2e-3)

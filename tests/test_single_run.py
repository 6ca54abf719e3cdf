"""experiments.single_run: whole processes raced, the second run served by the first's caches."""

import dataclasses

import pytest

from dl_jax.settings import ConfigError
from experiments import single_run


def test_a_second_run_compiles_nothing_and_gives_the_first_runs_figures(tmp_path):
  config = single_run.smoke_config()
  results = single_run.run(config, str(tmp_path))
  figures = results["runs"]["linear"]["0"]
  cold, warm = figures["cold"], figures["warm"]
  assert cold["compilation_cache"]["misses"] > 0  # empty caches: every program compiled
  assert warm["compilation_cache"]["misses"] == 0 and warm["compilation_cache"]["hits"] > 0
  assert warm["test_accuracy"] == cold["test_accuracy"]
  assert cold["seconds"] > 0 and "training steps" in cold["phases"]
  assert "peer" not in figures  # no --torch_python: dl_jax's runs only
  table = (tmp_path / "results.md").read_text()
  assert table.splitlines()[2].startswith("| linear | — |")


def test_a_peer_interpreter_that_does_not_exist_is_refused_before_anything_runs(tmp_path):
  config = dataclasses.replace(single_run.smoke_config(), torch_python=str(tmp_path / "nope"))
  with pytest.raises(ConfigError, match="is not an executable file"):
    single_run.run(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()

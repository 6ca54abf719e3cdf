import dataclasses
import platform
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl_jax.data import load_dataset
from dl_jax.environment import cpu_model
from dl_jax.train.calls import scanned
from dl_jax.train.seeds import stacked_eval_step, stacked_train_step
from experiments import mnist1d_table


def test_smoke_table_runs_end_to_end(tmp_path):
  config = dataclasses.replace(mnist1d_table.smoke_config(), models=("linear", "cnn_mnist1d"))
  results = mnist1d_table.EXPERIMENT.execute(config, str(tmp_path))
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
  vmapped = mnist1d_table.EXPERIMENT.execute(config, str(tmp_path / "v"))["runs"]["mnist1d"]["linear"]
  sequential = mnist1d_table.EXPERIMENT.execute(dataclasses.replace(config, seed_mode="sequential"),
                                 str(tmp_path / "s"))["runs"]["mnist1d"]["linear"]
  np.testing.assert_allclose(vmapped["final"]["test"]["accuracy"]["values"],
                             sequential["final"]["test"]["accuracy"]["values"], atol=2e-3)


def test_two_seed_groups_give_the_same_table_as_one(tmp_path):
  config = dataclasses.replace(mnist1d_table.smoke_config(), models=("linear",), num_seeds=4)
  runs = [mnist1d_table.EXPERIMENT.execute(dataclasses.replace(config, seed_groups=groups),
                            str(tmp_path / str(groups)))["runs"]["mnist1d"]["linear"]
          for groups in (1, 2)]
  assert runs[0]["steps"] == runs[1]["steps"]
  np.testing.assert_allclose(runs[0]["curves"]["test"]["accuracy"],
                             runs[1]["curves"]["test"]["accuracy"], atol=2e-3)


def test_shuffled_data_reuses_the_compiled_programs(tmp_path):
  config = dataclasses.replace(mnist1d_table.smoke_config(), models=("linear",))
  datasets = [load_dataset(name, 0.0, val_seed=0) for name in ("mnist1d", "mnist1d_shuffled")]
  programs = mnist1d_table.make_programs("linear", datasets[0], config)
  runs = [mnist1d_table.train_model(programs, dataset, config, str(tmp_path / dataset.name))
          for dataset in datasets]
  # fit's programs for stacked seeds: one multi-step call, one evaluation, for both datasets
  assert scanned(stacked_train_step(programs.train_step))._cache_size() == 1
  assert stacked_eval_step(programs.eval_step)._cache_size() == 1
  assert runs[0]["final"]["test"]["accuracy"] != runs[1]["final"]["test"]["accuracy"]


def test_reused_programs_are_marked_in_the_table(tmp_path):
  config = dataclasses.replace(mnist1d_table.smoke_config(), models=("linear",),
                               datasets=("mnist1d", "mnist1d_shuffled"))
  results = mnist1d_table.EXPERIMENT.execute(config, str(tmp_path))
  assert [r["linear"]["includes_compilation"] for r in results["runs"].values()] == [True, False]
  table = mnist1d_table.markdown_table(results).splitlines()
  first, second, blank, measured_on = table[2:]
  assert "*" not in first and first.endswith("|") and second.count("*") == 2
  assert blank == "" and measured_on.startswith(f"Python {platform.python_version()}, jax ")
  assert f"cores of {cpu_model()} (" in measured_on


def test_flattened_optimizer_updates_like_adam():
  params = {"kernel": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2), "bias": jnp.arange(2.0)}
  grads = jax.tree_util.tree_map(lambda p: jnp.sin(3 * p) + 0.1, params)
  ours = mnist1d_table.make_optimizer("linear", mnist1d_table.TableConfig())
  adam = optax.adam(1e-2)
  states = ours.init(params), adam.init(params)
  for _ in range(3):
    (mine, ours_state), (theirs, adam_state) = (
        tx.update(grads, state, params) for tx, state in zip((ours, adam), states))
    states = ours_state, adam_state
    chex.assert_trees_all_close(mine, theirs, rtol=1e-6, atol=1e-9)


def test_a_rerun_resumes_every_seed_group_and_marks_its_seconds(tmp_path):
  config = dataclasses.replace(mnist1d_table.smoke_config(), models=("linear",))
  first = mnist1d_table.EXPERIMENT.execute(config, str(tmp_path))
  again = mnist1d_table.EXPERIMENT.execute(config, str(tmp_path))
  run, rerun = first["runs"]["mnist1d"]["linear"], again["runs"]["mnist1d"]["linear"]
  assert run["resumed_from_steps"] == [] and rerun["resumed_from_steps"] == [40, 40]
  assert rerun["curves"] == run["curves"] and rerun["final"] == run["final"]
  assert "†" in mnist1d_table.markdown_table(again).splitlines()[2]
  assert "†" not in mnist1d_table.markdown_table(first).splitlines()[2]

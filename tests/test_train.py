import dataclasses
import json
import os
import re
import signal
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl_jax.errors import UserError
from dl_jax.models import MLP
from dl_jax.train import (Checkpointer, FitConfig, NonFiniteError, classification_loss,
                          classification_metrics, create_train_state, evaluate, fit,
                          make_eval_step, make_train_step, step_rngs)
from dl_jax.train.calls import MAX_CALL_BYTES, Periodic, call_sizes, scanned, steps_per_call
from experiments import train as train_experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup(dataset, lr=1e-2, dropout=0.0, optimizer=None, seed=0):
  model = MLP(widths=(32,), num_outputs=dataset.num_classes, dropout_rate=dropout)
  tx = optimizer or optax.adam(lr)
  state = create_train_state(model, tx, dataset.train.gather([0])["x"], seed)
  return (state, make_train_step(classification_loss(model)),
          make_eval_step(classification_metrics(model)))


def test_one_step_changes_every_parameter(blob_dataset):
  state, train_step, _ = _setup(blob_dataset, dropout=0.3)
  before = jax.tree_util.tree_map(np.array, state.params)
  state, metrics = train_step(state, blob_dataset.train.gather(np.arange(32)))
  changed = jax.tree_util.tree_map(lambda a, b: not np.array_equal(a, b), before, state.params)
  assert all(jax.tree_util.tree_leaves(changed))
  assert int(state.step) == 1
  assert {"loss", "accuracy", "grad_norm", "param_norm"} <= set(metrics)


def test_loss_falls_on_a_small_dataset(blob_dataset, tmp_path):
  state, train_step, eval_step = _setup(blob_dataset)
  before = evaluate(eval_step, state, blob_dataset.train, 64)
  _, results = fit(state, train_step, eval_step, blob_dataset,
                   FitConfig(num_steps=100, batch_size=32, eval_every=50, log_every=25),
                   str(tmp_path))
  assert results["train"]["loss"] < 0.3 * before["loss"]
  assert results["test"]["accuracy"] > 0.9
  # the loop's time reading batches is counted, and is part of the training time
  assert 0 < results["data_seconds"] < results["train_seconds"]
  assert results["data_share"] == pytest.approx(results["data_seconds"] / results["train_seconds"],
                                                rel=1e-2)


def test_step_keys_are_fresh_every_step_and_stream():
  root = jax.random.PRNGKey(0)
  keys = [step_rngs(root, jnp.asarray(s), ("dropout", "attack")) for s in range(3)]
  flat = [tuple(np.asarray(k[name]).tolist()) for k in keys for name in ("dropout", "attack")]
  assert len(set(flat)) == len(flat)
  np.testing.assert_array_equal(step_rngs(root, jnp.asarray(2), ("dropout",))["dropout"],
                                keys[2]["dropout"])


def test_dropout_masks_differ_between_steps(blob_dataset):
  # the same batch and parameters, two different steps: the dropout masks must differ
  state, train_step, _ = _setup(blob_dataset, dropout=0.5, optimizer=optax.sgd(0.0))
  batch = blob_dataset.train.gather(np.arange(32))
  state, first = train_step(state, batch)
  state, second = train_step(state, batch)
  assert float(first["loss"]) != float(second["loss"])


def test_evaluate_pads_the_last_batch_exactly(blob_dataset):
  state, _, eval_step = _setup(blob_dataset)
  whole = evaluate(eval_step, state, blob_dataset.test, 60)
  ragged = evaluate(eval_step, state, blob_dataset.test, 25)  # 25 + 25 + 10 (padded)
  assert whole["accuracy"] == pytest.approx(ragged["accuracy"])
  assert whole["loss"] == pytest.approx(ragged["loss"], rel=1e-5)


def test_mismatched_batch_gets_a_sentence(blob_dataset):
  state, train_step, _ = _setup(blob_dataset)
  batch = blob_dataset.train.gather(np.arange(8))
  with pytest.raises(ValueError, match="a batch of 8 inputs came with labels of shape \\(7,\\)"):
    train_step(state, {"x": batch["x"], "y": batch["y"][:7]})


@pytest.mark.parametrize("every, saved", [((5, 3), 9), ((10, 10), 10)])  # 1 and 10 steps a call
def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(blob_dataset, tmp_path,
                                                                      every, saved):
  exploding = optax.sgd(optax.piecewise_constant_schedule(0.01, {10: 1e32}))  # blows up at step 11
  state, train_step, eval_step = _setup(blob_dataset, optimizer=exploding)
  config = FitConfig(num_steps=50, batch_size=16, log_every=every[0], checkpoint_every=every[1],
                     eval_every=10)
  with pytest.raises(NonFiniteError, match=r"non-finite loss or gradient at step (\d+)") as info:
    fit(state, train_step, eval_step, blob_dataset, config, str(tmp_path))
  bad_step = int(re.search(r"at step (\d+)", str(info.value)).group(1))
  checkpoints = Checkpointer(str(tmp_path / "checkpoints"))
  assert bad_step == 11 and checkpoints.latest_step() == saved
  restored, record = checkpoints.restore(_setup(blob_dataset, optimizer=exploding)[0])
  checkpoints.close()
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(restored.params))
  assert record["position"][1] > 0


def test_calls_end_on_every_logging_evaluation_and_checkpoint_step():
  assert call_sizes(0, 45, 10) == [10, 10, 10, 10, 5]
  assert call_sizes(15, 45, 10) == [5, 10, 10, 5]  # a run resumed off the grid realigns
  assert call_sizes(45, 45, 10) == []


def test_steps_per_call_divides_the_intervals_within_its_caps(blob_dataset):
  config = FitConfig(num_steps=6000, batch_size=10, log_every=100, eval_every=250,
                     checkpoint_every=1000)
  assert steps_per_call(config, 1000) == 50
  assert steps_per_call(dataclasses.replace(config, max_steps_per_call=30), 1000) == 25
  assert steps_per_call(config, 1000, hooks=[print]) == 1
  batch_bytes = MAX_CALL_BYTES // 7  # 7 batches fit in a call, not 10
  assert steps_per_call(config, batch_bytes) == 5
  assert steps_per_call(config, batch_bytes // 4, models=4) == 5  # 4 stacked models' batches


def test_a_state_already_past_num_steps_is_refused_not_silently_kept(blob_dataset, tmp_path):
  state, train_step, eval_step = _setup(blob_dataset)
  for _ in range(5):
    state, _ = train_step(state, blob_dataset.train.gather(np.arange(16)))
  config = FitConfig(num_steps=5, batch_size=16)
  with pytest.raises(UserError, match="at step 5, and num_steps \\(5\\) counts from step 0"):
    fit(state, train_step, eval_step, blob_dataset, config, str(tmp_path / "a"))
  _, results = fit(state, train_step, eval_step, blob_dataset,
                   dataclasses.replace(config, num_steps=8), str(tmp_path / "b"))
  assert results["step"] == 8 and results["first_call_steps"] == 3


def test_a_one_step_call_runs_the_step_itself_without_a_loop(blob_dataset):
  state, train_step, _ = _setup(blob_dataset)
  twin = jax.tree_util.tree_map(jnp.copy, state)
  batch = blob_dataset.train.gather(np.arange(16))
  called, metrics = scanned(train_step)(state, jax.tree_util.tree_map(lambda b: b[None], batch))
  direct, direct_metrics = train_step(twin, batch)
  chex.assert_trees_all_equal(called.params, direct.params)
  assert np.shape(metrics["loss"]) == (1,) and float(metrics["loss"][0]) == float(
      direct_metrics["loss"])
  programs = {size: scanned(train_step).lower(direct, jax.tree_util.tree_map(
      lambda b: np.stack([b] * size), batch)).as_text() for size in (1, 2)}
  assert "while" not in programs[1] and "while" in programs[2]


def test_a_periodic_hook_sees_its_steps_while_steps_run_many_per_call(blob_dataset, tmp_path):
  state, train_step, eval_step = _setup(blob_dataset)
  seen = []
  config = FitConfig(num_steps=45, batch_size=16, log_every=10, eval_every=20,
                     checkpoint_every=20)
  _, results = fit(state, train_step, eval_step, blob_dataset, config, str(tmp_path),
                   hooks=[Periodic(15, lambda step, s: seen.append((step, int(s.step))))])
  assert seen == [(15, 15), (30, 30), (45, 45)]
  assert results["first_call_steps"] == 5  # gcd(10, 20, 20, 15): not one step per call
  assert steps_per_call(config, 1000, hooks=[Periodic(15, print), print]) == 1


def test_several_steps_per_call_train_as_one_step_per_call_does(blob_dataset, tmp_path):
  runs = {}
  for per_call in (1, 10):
    state, train_step, eval_step = _setup(blob_dataset, dropout=0.3)
    config = FitConfig(num_steps=45, batch_size=16, log_every=10, eval_every=20,
                       checkpoint_every=20, max_steps_per_call=per_call)
    final, results = fit(state, train_step, eval_step, blob_dataset, config,
                         str(tmp_path / str(per_call)))
    with open(tmp_path / str(per_call) / "metrics.jsonl") as f:
      runs[per_call] = final, results, [json.loads(line) for line in f]
  (one, _, one_log), (ten, ten_results, ten_log) = runs[1], runs[10]
  assert int(ten.step) == int(one.step) == 45 and ten_results["first_call_steps"] == 10
  chex.assert_trees_all_close(ten.params, one.params, rtol=1e-5, atol=1e-6)
  assert [line["step"] for line in ten_log] == [line["step"] for line in one_log]
  for a, b in zip(ten_log, one_log):
    assert a.keys() == b.keys()
    for key in a.keys() - {"steps_per_sec", "train_seconds"}:
      assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key


def test_early_stopping_selects_the_best_validation_step(tmp_path):
  config = dataclasses.replace(train_experiment.smoke_config(), dataset="digits", steps=400,
                               eval_every=10, patience=2, learning_rate=0.05)
  results = train_experiment.run(config, str(tmp_path))
  best = max((json.loads(line) for line in open(tmp_path / "metrics.jsonl")
              if "val/accuracy" in line), key=lambda r: (r["val/accuracy"], -r["step"]))
  assert results["stopped_early"] and results["step"] < 400
  assert results["selected_step"] == best["step"]
  assert results["val"]["accuracy"] == pytest.approx(best["val/accuracy"])


def test_same_seed_gives_bit_identical_parameters(tmp_path):
  config = dataclasses.replace(train_experiment.smoke_config(), dropout=0.2)
  a = train_experiment.run(config, str(tmp_path / "a"))
  b = train_experiment.run(config, str(tmp_path / "b"))
  c = train_experiment.run(dataclasses.replace(config, seed=1), str(tmp_path / "c"))
  assert a["params_fingerprint"] == b["params_fingerprint"] != c["params_fingerprint"]
  assert a["test"] == b["test"]


_CHILD = """
import dataclasses, os, signal, sys
from experiments import train
config = dataclasses.replace(train.smoke_config(), steps=300, checkpoint_every=50, eval_every=50,
                             dropout=0.2)
kill_at = int(sys.argv[2])
def kill(step, state):
  if step == kill_at:
    os.kill(os.getpid(), signal.SIGKILL)
train.run(config, sys.argv[1], hooks=[kill])
"""


def _child(workdir, kill_at):
  return subprocess.run([sys.executable, "-c", _CHILD, str(workdir), str(kill_at)], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


def test_killed_and_resumed_run_is_bit_identical(tmp_path):
  killed = _child(tmp_path / "resumed", kill_at=177)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert not (tmp_path / "resumed" / "results.json").exists()
  finished = _child(tmp_path / "resumed", kill_at=-1)
  assert finished.returncode == 0, finished.stderr[-2000:]
  straight = _child(tmp_path / "straight", kill_at=-1)
  assert straight.returncode == 0, straight.stderr[-2000:]
  resumed = json.load(open(tmp_path / "resumed" / "results.json"))
  reference = json.load(open(tmp_path / "straight" / "results.json"))
  assert resumed["resumed_from_step"] in (100, 150)
  assert resumed["params_fingerprint"] == reference["params_fingerprint"]
  assert resumed["test"] == reference["test"]
  steps = [json.loads(line)["step"] for line in open(tmp_path / "resumed" / "metrics.jsonl")]
  reference_steps = [json.loads(line)["step"] for line in open(tmp_path / "straight" / "metrics.jsonl")]
  assert steps == reference_steps  # lines logged after the checkpoint were not written twice


def test_a_run_killed_before_its_first_checkpoint_logs_each_step_once(blob_dataset, tmp_path):
  (tmp_path / "metrics.jsonl").write_text('{"step": 25, "train/loss": 1.0}\n{"step": 50, "tr')
  state, train_step, eval_step = _setup(blob_dataset)
  fit(state, train_step, eval_step, blob_dataset,
      FitConfig(num_steps=50, batch_size=32, eval_every=50, log_every=25), str(tmp_path))
  steps = [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")]
  assert steps == [25, 50, 50]  # train lines at 25 and 50, the evaluation at 50: no leftovers

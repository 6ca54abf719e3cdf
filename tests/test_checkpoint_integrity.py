"""Checkpoints carry a digest of their state: damage is caught on restore, and the run falls back."""

import collections
import concurrent.futures
import dataclasses
import os
import shutil
import signal

import jax.numpy as jnp
import optax
import pytest

from dl_jax.train import checkpoint as checkpoint_module
from dl_jax.train.checkpoint import Checkpointer, CheckpointError, interrupts_deferred
from dl_jax.train.state import TrainState, tree_digest
from experiments import hostile_inputs, train


def _state(value: float) -> TrainState:
  params = {"w": jnp.full((4, 3), value)}
  return TrainState.create(apply_fn=None, params=params, tx=optax.sgd(0.1), key=jnp.zeros(2, jnp.uint32),
                           model_state={})


def test_a_bit_flipped_in_the_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
  checkpoints = Checkpointer(str(tmp_path / "c"))
  checkpoints.save(1, _state(1.0), {"position": [1, 0]})
  checkpoints.save(2, _state(2.0), {"position": [2, 0]})
  checkpoints.close()
  hostile_inputs.flip_bit_in_array(str(tmp_path / "c" / "2"), ("params", "w"))
  again = Checkpointer(str(tmp_path / "c"))
  state, record = again.restore(_state(0.0))
  assert float(state.params["w"][0, 0]) == 1.0 and record == {"position": [1, 0]}
  assert os.listdir(tmp_path / "c.damaged") == ["2"] and again.latest_step() == 1
  again.save(2, _state(2.0), {"position": [2, 0]})  # the step can be saved again
  again.close()


def test_no_intact_checkpoint_is_an_error_naming_each(tmp_path):
  checkpoints = Checkpointer(str(tmp_path / "c"))
  checkpoints.save(1, _state(1.0), {})
  checkpoints.close()
  shutil.rmtree(tmp_path / "c" / "1" / "state")
  with pytest.raises(CheckpointError, match="no intact checkpoint in .*step 1: unreadable"):
    Checkpointer(str(tmp_path / "c")).restore(_state(0.0))


def test_a_save_that_cannot_fit_is_refused_at_its_step_and_keeps_the_earlier_ones(tmp_path,
                                                                                   monkeypatch):
  checkpoints = Checkpointer(str(tmp_path / "c"))
  checkpoints.save(1, _state(1.0), {})
  usage = collections.namedtuple("usage", "total used free")
  monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda path: usage(10, 10, 1000))
  with pytest.raises(CheckpointError, match="step 2 .* failed \\(0.0 MiB free on the disk.*"
                                            "checkpoints of steps \\[1\\] are kept"):
    checkpoints.save(2, _state(2.0), {})
  checkpoints.close()
  state, _ = Checkpointer(str(tmp_path / "c")).restore(_state(0.0))
  assert float(state.params["w"][0, 0]) == 1.0


def test_the_digest_sees_every_bit_and_ignores_the_integer_type_of_the_step():
  state = _state(1.0)
  assert tree_digest(state) == tree_digest(state.replace(step=jnp.int64(0)))
  flipped = state.params["w"].at[1, 2].set(jnp.nextafter(1.0, 2.0))
  assert tree_digest(state) != tree_digest(state.replace(params={"w": flipped}))


def test_resuming_past_a_damaged_checkpoint_gives_the_undamaged_runs_parameters(tmp_path):
  config = dataclasses.replace(train.smoke_config(), dataset="mnist1d")
  clean = train.run(config, str(tmp_path / "clean"))
  hostile_inputs.flip_bit_in_array(str(tmp_path / "clean" / "checkpoints" / "60"),
                                   ("params", "Dense_0", "kernel"))
  resumed = train.run(config, str(tmp_path / "clean"))
  assert resumed["resumed_from_step"] == 40
  assert resumed["params_fingerprint"] == clean["params_fingerprint"]


def test_ctrl_c_during_a_save_interrupts_once_the_checkpoint_is_written(tmp_path):
  checkpoints = Checkpointer(str(tmp_path / "c"))
  checkpoints.save(1, _state(1.0), {"position": [1, 0]})
  with pytest.raises(KeyboardInterrupt):
    with interrupts_deferred():
      os.kill(os.getpid(), signal.SIGINT)  # lands while the block runs: held back
      checkpoints.save(2, _state(2.0), {"position": [2, 0]})
      checkpoints.close()
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
  restored, record = Checkpointer(str(tmp_path / "c")).restore(_state(0.0))
  assert record["position"] == [2, 0] and float(restored.params["w"][0, 0]) == 2.0


def test_saves_from_threads_at_once_can_all_be_restored(tmp_path):
  # without the lock on saves off the main thread, orbax's background saves collided here
  def save_and_restore(name):
    checkpoints = Checkpointer(str(tmp_path / name))
    for step in range(1, 4):
      checkpoints.save(step, _state(float(step)), {"position": [step, 0]})
    checkpoints.close()
    return Checkpointer(str(tmp_path / name)).restore(_state(0.0))

  with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
    restored = list(pool.map(save_and_restore, ["a", "b", "c"]))
  for state, record in restored:
    assert record == {"position": [3, 0]} and float(state.params["w"][0, 0]) == 3.0


def test_a_checkpoint_path_orbax_could_not_read_back_is_refused_before_saving(tmp_path):
  with pytest.raises(CheckpointError, match=r"without brackets"):
    Checkpointer(str(tmp_path / "seeds[0, 1]" / "checkpoints"))
  assert not (tmp_path / "seeds[0, 1]").exists()

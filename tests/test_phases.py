"""Where a run's time goes: every phase counted once, and the phases add up to the run."""

import time

import optax

from dl_jax.models import MLP
from dl_jax.phases import Phases, seconds_since_process_start
from dl_jax.train import (FitConfig, classification_loss, classification_metrics,
                          create_train_state, fit, make_eval_step, make_train_step)

LOOP_PHASES = {"checkpointing", "checkpoint restore", "compile + first call", "waiting for batches",
               "training steps", "logging", "evaluation during training", "final evaluation"}


def test_repeated_phases_add_up_and_the_table_shows_the_total():
  phases = Phases()
  phases.add("a", 1.0)
  with phases("b"):
    time.sleep(0.01)
  phases.add("a", 2.0)
  assert list(phases.seconds) == ["a", "b"] and phases.seconds["a"] == 3.0
  assert 0.01 <= phases.seconds["b"] < 1.0
  table = phases.table()
  assert "a:    3.00 s" in table and table.splitlines()[-1].strip().startswith("total:")


def test_process_age_is_read_from_the_system():
  age = seconds_since_process_start()
  assert age is not None and 0 < age < 24 * 3600


def test_fit_accounts_every_phase_once_within_its_wall_time(blob_dataset, tmp_path):
  model = MLP(widths=(32,), num_outputs=blob_dataset.num_classes)
  state = create_train_state(model, optax.adam(1e-2), blob_dataset.train.gather([0])["x"], 0)
  phases = Phases()
  phases.add("before fit", 0.5)
  start = time.perf_counter()
  _, results = fit(state, make_train_step(classification_loss(model)),
                   make_eval_step(classification_metrics(model)), blob_dataset,
                   FitConfig(num_steps=60, batch_size=32, eval_every=20, log_every=10,
                             checkpoint_every=30), str(tmp_path), phases=phases)
  wall = time.perf_counter() - start
  recorded = results["phases"]
  assert set(recorded) == LOOP_PHASES | {"before fit"} and recorded["before fit"] == 0.5
  assert all(seconds >= 0 for seconds in recorded.values())
  assert sum(recorded.values()) - 0.5 <= wall  # nothing counted twice
  assert recorded["compile + first call"] == results["first_call_seconds"]

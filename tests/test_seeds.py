import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl_jax.models import MLP
from dl_jax.train import NonFiniteError
from dl_jax.train import (classification_loss, classification_metrics, create_train_state,
                          evaluate, make_eval_step, make_train_step)
from dl_jax.train.seeds import (SeedBatches, create_seed_states, fit_seeds,
                                make_seeds_eval_step, make_seeds_train_step, map_seed_groups,
                                split_seeds, unstack_state, with_hyperparameter)
from dl_jax.train.state import init_train_state
from dl_jax.data import BatchIterator


def test_vmapped_seeds_match_separate_runs(blob_dataset):
  model = MLP(widths=(16,), num_outputs=3, dropout_rate=0.2)
  tx = optax.adam(1e-2)
  example = blob_dataset.train.gather([0])["x"]
  seeds = [0, 1, 2]
  stacked = create_seed_states(model, tx, example, seeds)
  step = make_seeds_train_step(classification_loss(model))
  batches = SeedBatches(blob_dataset.train, 32, seeds)
  for _ in range(20):
    stacked, _ = step(stacked, next(batches))

  single_step = make_train_step(classification_loss(model))
  for index, seed in enumerate(seeds):
    state = create_train_state(model, tx, example, seed)
    iterator = BatchIterator(blob_dataset.train, 32, seed)
    for _ in range(20):
      state, _ = single_step(state, next(iterator))
    mine = unstack_state(stacked, index).params
    chex.assert_trees_all_close(mine, state.params, rtol=2e-5, atol=2e-6)
  first, second = (unstack_state(stacked, i).params for i in (0, 1))
  assert not np.allclose(first["Dense_0"]["kernel"], second["Dense_0"]["kernel"])


def test_fit_seeds_reports_per_seed_curves(blob_dataset):
  model = MLP(widths=(16,), num_outputs=3)
  seeds = [0, 1]
  states = create_seed_states(model, optax.adam(1e-2), blob_dataset.train.gather([0])["x"], seeds)
  eval_step = make_seeds_eval_step(classification_metrics(model))
  states, curves, seconds = fit_seeds(states, make_seeds_train_step(classification_loss(model)),
                                      eval_step, blob_dataset, seeds, num_steps=30, batch_size=16,
                                      eval_every=10)
  assert curves["step"] == [10, 20, 30] and seconds > 0
  assert 0 < curves["train_seconds"][0] < curves["train_seconds"][-1] < seconds
  assert np.array(curves["test"]["accuracy"]).shape == (3, 2)
  single = make_eval_step(classification_metrics(model))
  alone = evaluate(single, unstack_state(states, 1), blob_dataset.test, 1000)
  assert curves["test"]["accuracy"][-1][1] == alone["accuracy"]


def test_scanned_steps_and_device_resident_data_match_one_step_per_call(blob_dataset):
  model = MLP(widths=(16,), num_outputs=3, dropout_rate=0.2)
  example = blob_dataset.train.gather([0])["x"]
  results = {}
  for steps_per_call, resident in [(1, False), (5, False), (1, True), (5, True)]:
    states = create_seed_states(model, optax.adam(1e-2), example, [0, 1])
    step = make_seeds_train_step(classification_loss(model), steps_per_call=steps_per_call,
                                 resident_data=resident)
    eval_step = make_seeds_eval_step(classification_metrics(model))
    states, curves, _ = fit_seeds(states, step, eval_step, blob_dataset, [0, 1], num_steps=20,
                                  batch_size=16, eval_every=10, steps_per_call=steps_per_call,
                                  resident_data=resident)
    results[steps_per_call, resident] = states.params
  chex.assert_trees_all_close(*results.values(), rtol=1e-5, atol=1e-6)
  # gathering on the device gives the very batches the host would have sent
  chex.assert_trees_all_equal(results[1, False], results[1, True])


def test_seed_batches_positions_index_the_batches(blob_dataset):
  full = SeedBatches(blob_dataset.train, 8, [0, 3], steps=4)
  positions = SeedBatches(blob_dataset.train, 8, [0, 3], steps=4, positions_only=True)
  for _ in range(3):
    batch, rows = next(full), next(positions)
    assert rows.shape == (4, 2, 8) and rows.dtype == np.int32
    np.testing.assert_array_equal(batch["x"], blob_dataset.train.materialize()["x"][rows])


def test_fit_seeds_stops_on_a_non_finite_loss_and_names_the_seed(blob_dataset):
  model = MLP(widths=(16,), num_outputs=3)
  seeds = [0, 1]
  example = blob_dataset.train.gather([0])["x"]
  states = create_seed_states(model, optax.sgd(optax.piecewise_constant_schedule(0.01, {5: 1e32})),
                              example, seeds)
  with pytest.raises(NonFiniteError, match=r"by step 10 for seeds \[0, 1\]"):
    fit_seeds(states, make_seeds_train_step(classification_loss(model)),
              make_seeds_eval_step(classification_metrics(model)), blob_dataset, seeds,
              num_steps=20, batch_size=16, eval_every=10)


def test_a_learning_rate_sweep_in_one_program_matches_separate_runs(blob_dataset):
  model = MLP(widths=(16,), num_outputs=3)
  example = blob_dataset.train.gather([0])["x"]
  rates = [1e-3, 3e-2]
  tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.0)
  states = with_hyperparameter(create_seed_states(model, tx, example, [0, 0]), "learning_rate",
                               rates)
  step = make_seeds_train_step(classification_loss(model))
  batches = SeedBatches(blob_dataset.train, 16, [0, 0])
  for _ in range(10):
    states, _ = step(states, next(batches))
  for i, rate in enumerate(rates):
    alone = create_train_state(model, optax.adam(rate), example, 0)
    single = make_train_step(classification_loss(model))
    plain = SeedBatches(blob_dataset.train, 16, [0])
    for _ in range(10):
      alone, _ = single(alone, jax.tree_util.tree_map(lambda a: a[0], next(plain)))
    chex.assert_trees_all_close(unstack_state(states, i).params, alone.params, rtol=1e-4,
                                atol=1e-5)
  with pytest.raises(ValueError, match="no injected hyperparameter 'momentum'"):
    with_hyperparameter(states, "momentum", [0.9, 0.9])
  with pytest.raises(ValueError, match="one value per stacked model"):
    with_hyperparameter(states, "learning_rate", [0.1, 0.2, 0.3])


def test_compiled_initialization_matches_the_eager_one(blob_dataset):
  # both compile without LLVM optimizations: values may differ from eager ones in the last bit only
  model, tx = MLP(widths=(16,), num_outputs=3), optax.adam(1e-2)
  example = blob_dataset.train.gather([0])["x"]
  stacked = create_seed_states(model, tx, example, [0, 4])
  for index, seed in enumerate([0, 4]):
    eager = init_train_state(model, tx, jnp.asarray(example), jax.random.PRNGKey(seed))
    single = create_train_state(model, tx, example, seed)
    for compiled in (unstack_state(stacked, index), single):
      chex.assert_trees_all_close(compiled.params, eager.params, rtol=1e-6, atol=1e-7)
    assert int(single.step) == 0 and single.tx is tx


def test_split_seeds_makes_contiguous_near_equal_groups():
  assert split_seeds(range(10), 2) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
  assert type(split_seeds([7], 1)[0][0]) is int  # plain ints, not numpy scalars
  assert split_seeds([3, 4, 5, 6, 7], 2) == [[3, 4, 5], [6, 7]]
  with pytest.raises(ValueError, match="cannot split 2 seeds into 3 groups"):
    split_seeds([0, 1], 3)


def test_seed_groups_trained_at_once_match_groups_trained_one_after_another(blob_dataset):
  model = MLP(widths=(16,), num_outputs=3, dropout_rate=0.2)
  example = blob_dataset.train.gather([0])["x"]
  step = make_seeds_train_step(classification_loss(model), steps_per_call=5, resident_data=True)
  eval_step = make_seeds_eval_step(classification_metrics(model))

  def train(group):
    states = create_seed_states(model, optax.adam(1e-2), example, group)
    states, curves, _ = fit_seeds(states, step, eval_step, blob_dataset, group, num_steps=40,
                                  batch_size=16, eval_every=20, steps_per_call=5,
                                  resident_data=True)
    return states.params, curves["test"]

  groups = split_seeds(range(6), 2)
  at_once, one_by_one = (map_seed_groups(train, groups, workers) for workers in (2, 1))
  for (params, test), (params_alone, test_alone) in zip(at_once, one_by_one):
    chex.assert_trees_all_equal(params, params_alone)
    assert test == test_alone
  assert at_once[0][1] != at_once[1][1]

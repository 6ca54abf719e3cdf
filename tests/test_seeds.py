import threading

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl_jax.models import MLP
from dl_jax.train import (FitConfig, NonFiniteError, classification_loss, classification_metrics,
                          create_train_state, fit, make_eval_step, make_train_step)
from dl_jax.train.fit import SeedsError
from dl_jax.train.seeds import (SeedBatches, create_seed_states, make_seeds_train_step,
                                map_seed_groups, split_seeds, unstack_state, with_hyperparameter)
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


def test_seed_batches_stack_each_seeds_own_batches(blob_dataset):
  stacked = SeedBatches(blob_dataset.train, 8, [0, 3])
  alone = [BatchIterator(blob_dataset.train, 8, seed) for seed in (0, 3)]
  for _ in range(3):
    batch = next(stacked)
    assert batch["x"].shape == (2, 8, *blob_dataset.input_shape)
    for index, iterator in enumerate(alone):
      np.testing.assert_array_equal(batch["x"][index], next(iterator)["x"])


def _fit_seeds(directory, dataset, seeds, num_steps=30, dropout_rate=0.0, tx=None, watch=None,
               **options):
  model = MLP(widths=(16,), num_outputs=3, dropout_rate=dropout_rate)
  states = create_seed_states(model, tx or optax.adam(1e-2), dataset.train.gather([0])["x"], seeds)
  config = FitConfig(num_steps=num_steps, batch_size=16, **{
      "eval_every": 10, "log_every": 10, "checkpoint_every": 10, **options})
  return fit(states, make_train_step(classification_loss(model)),
             make_eval_step(classification_metrics(model)), dataset, config, str(directory),
             seeds=seeds, watch=watch)


def test_fit_with_stacked_seeds_matches_each_seed_trained_alone(blob_dataset, tmp_path):
  seeds = [0, 3]
  states, results = _fit_seeds(tmp_path / "stacked", blob_dataset, seeds, dropout_rate=0.2,
                               test_curve=True)
  assert results["seeds"] == seeds and results["step"] == 30
  assert np.shape(results["test"]["accuracy"]) == (2,)
  curves = results["curves"]
  assert curves["step"] == [10, 20, 30] and np.shape(curves["test"]["accuracy"]) == (3, 2)
  assert 0 < curves["train_seconds"][0] < curves["train_seconds"][-1]
  model = MLP(widths=(16,), num_outputs=3, dropout_rate=0.2)
  for index, seed in enumerate(seeds):  # fit alone, with the seed's batch order
    alone, figures = fit(create_train_state(model, optax.adam(1e-2),
                                            blob_dataset.train.gather([0])["x"], seed),
                         make_train_step(classification_loss(model)),
                         make_eval_step(classification_metrics(model)), blob_dataset,
                         FitConfig(num_steps=30, batch_size=16, seed=seed, eval_every=10,
                                   log_every=10, checkpoint_every=10),
                         str(tmp_path / f"alone{seed}"))
    chex.assert_trees_all_close(unstack_state(states, index).params, alone.params, rtol=2e-5,
                                atol=2e-6)
    assert results["test"]["accuracy"][index] == pytest.approx(figures["test"]["accuracy"],
                                                               abs=1e-6)
    assert results["gap"]["train_test_accuracy"][index] == pytest.approx(
        figures["gap"]["train_test_accuracy"], abs=1e-6)
  assert results["num_params"] == figures["num_params"]


def test_fit_with_stacked_seeds_resumes_to_the_uninterrupted_result(blob_dataset, tmp_path):
  whole, _ = _fit_seeds(tmp_path / "whole", blob_dataset, [0, 1], num_steps=40)
  _fit_seeds(tmp_path / "cut", blob_dataset, [0, 1], num_steps=20)
  resumed, results = _fit_seeds(tmp_path / "cut", blob_dataset, [0, 1], num_steps=40)
  assert results["resumed_from_step"] == 20
  chex.assert_trees_all_equal(resumed.params, whole.params)  # per-seed batch positions restored
  assert results["curves"]["step"] == [10, 20, 30, 40]


def test_fit_with_stacked_seeds_stops_on_a_non_finite_loss_and_names_the_seed(blob_dataset,
                                                                               tmp_path):
  tx = optax.sgd(optax.piecewise_constant_schedule(0.01, {5: 1e32}))
  with pytest.raises(NonFiniteError, match=r"at step 6 for seeds \[0, 1\]"):
    _fit_seeds(tmp_path, blob_dataset, [0, 1], num_steps=20, tx=tx)


def test_a_watch_logs_its_figures_at_every_evaluation_per_seed(blob_dataset, tmp_path):
  states, results = _fit_seeds(tmp_path, blob_dataset, [0, 1], num_steps=25,
                               watch=lambda state: {"param_norm": jax.vmap(optax.tree.norm)(
                                   state.params), "step": state.step})
  watched = results["curves"]["watch"]
  assert results["curves"]["step"] == [10, 20, 25] and watched["step"] == [[10, 10], [20, 20],
                                                                            [25, 25]]
  final = np.asarray(jax.vmap(optax.tree.norm)(states.params))
  np.testing.assert_allclose(watched["param_norm"][-1], final, rtol=1e-6)
  assert watched["param_norm"][0] != watched["param_norm"][-1]


def test_without_checkpoints_a_rerun_trains_again_to_the_same_result(blob_dataset, tmp_path):
  first, _ = _fit_seeds(tmp_path, blob_dataset, [0, 1], checkpoint_every=0)
  assert not any((tmp_path / "checkpoints").iterdir())
  again, results = _fit_seeds(tmp_path, blob_dataset, [0, 1], checkpoint_every=0)
  assert results["resumed_from_step"] is None and results["curves"]["step"] == [10, 20, 30]
  chex.assert_trees_all_equal(again.params, first.params)
  tx = optax.sgd(optax.piecewise_constant_schedule(0.01, {5: 1e32}))
  with pytest.raises(NonFiniteError, match="at step 6 .* No checkpoint was written"):
    _fit_seeds(tmp_path / "nan", blob_dataset, [0, 1], tx=tx, checkpoint_every=0)


def test_fit_refuses_stacked_seeds_it_cannot_train(blob_dataset, tmp_path):
  with pytest.raises(SeedsError, match="patience"):
    _fit_seeds(tmp_path / "a", blob_dataset, [0, 1], patience=2)
  model = MLP(widths=(16,), num_outputs=3)
  single = create_train_state(model, optax.adam(1e-2), blob_dataset.train.gather([0])["x"], 0)
  with pytest.raises(SeedsError, match="2 seeds but a state of step shape"):
    fit(single, make_train_step(classification_loss(model)),
        make_eval_step(classification_metrics(model)), blob_dataset,
        FitConfig(num_steps=10, batch_size=16), str(tmp_path / "b"), seeds=[0, 1])


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


def test_seed_groups_trained_at_once_match_groups_trained_one_after_another(blob_dataset,
                                                                             tmp_path):
  def train(group):
    states, results = _fit_seeds(tmp_path / f"seeds{group[0]}-{threading.get_ident()}", blob_dataset,
                                 group, num_steps=40, dropout_rate=0.2)
    return states.params, results["test"]

  groups = split_seeds(range(6), 2)
  at_once, one_by_one = (map_seed_groups(train, groups, workers) for workers in (2, 1))
  for (params, test), (params_alone, test_alone) in zip(at_once, one_by_one):
    chex.assert_trees_all_equal(params, params_alone)
    assert test == test_alone
  assert at_once[0][1] != at_once[1][1]

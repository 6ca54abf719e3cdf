"""DropConnect, dropout variants and the max-norm projection."""

import flax.errors
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl_jax.constraints import max_norm, max_unit_norms, project_max_norm
from dl_jax.models.dropconnect import DropConnectDense
from dl_jax.models.dropout import GaussianDropout, make_dropout
from dl_jax.models.mlp import MLP
from dl_jax.train import classification_loss, create_train_state
from dl_jax.train.rng import step_rngs
from dl_jax.train.step import train_step_fn

KEY = jax.random.PRNGKey(0)


def test_inference_output_is_the_expectation_of_the_training_output():
  layer = DropConnectDense(features=3, rate=0.5)
  x = jax.random.normal(KEY, (2, 6))
  variables = layer.init(KEY, x, deterministic=True)
  inference = layer.apply(variables, x, deterministic=True)
  keys = jax.random.split(jax.random.PRNGKey(1), 20000)
  samples = jax.vmap(lambda k: layer.apply(variables, x, deterministic=False,
                                           rngs={"dropconnect": k}))(keys)
  mean, stderr = samples.mean(0), samples.std(0) / np.sqrt(len(keys))
  assert float(jnp.min(samples.std(0))) > 0.1  # the masks really vary
  np.testing.assert_array_less(jnp.abs(mean - inference), 4 * stderr + 1e-6)


def _mask(step: int, root=KEY):
  """The kernel mask DropConnectDense draws at training step `step` (an identity input reads
  the scaled, masked kernel straight out; all its entries are non-zero)."""
  layer = DropConnectDense(features=50, rate=0.5)
  variables = layer.init(KEY, jnp.eye(40), deterministic=True)
  rngs = step_rngs(root, jnp.asarray(step), ("dropconnect",))
  return np.asarray(layer.apply(variables, jnp.eye(40), deterministic=False, rngs=rngs) != 0)


def test_every_step_draws_a_new_mask_and_the_same_step_replays_it():
  assert not np.array_equal(_mask(0), _mask(1))
  np.testing.assert_array_equal(_mask(1), _mask(1))
  assert not np.array_equal(_mask(1), _mask(1, root=jax.random.PRNGKey(7)))
  assert 0.45 < _mask(3).mean() < 0.55  # 2000 weights, half kept


def test_consecutive_train_steps_use_different_masks_and_a_replay_is_identical():
  # No parameter change (lr 0) and the same batch: only the masks can make the losses differ.
  model = MLP(widths=(16, 16), num_outputs=3, dropconnect_rate=0.5)
  batch = {"x": jax.random.normal(KEY, (8, 5)), "y": jnp.arange(8) % 3}
  state = create_train_state(model, optax.sgd(0.0), batch["x"], seed=0)
  step = jax.jit(train_step_fn(classification_loss(model), ("dropconnect",)))
  state1, first = step(state, batch)
  _, second = step(state1, batch)
  _, replay = step(state, batch)
  assert float(first["loss"]) != float(second["loss"])
  assert float(first["loss"]) == float(replay["loss"])


@pytest.mark.parametrize("rngs", [None, {"params": KEY}, {"dropout": KEY}])
def test_training_mode_without_its_key_raises(rngs):
  x = jnp.ones((2, 4))
  layer = DropConnectDense(features=3)
  variables = layer.init(KEY, x, deterministic=True)
  with pytest.raises(flax.errors.InvalidRngError, match="'dropconnect' key"):
    layer.apply(variables, x, deterministic=False, rngs=rngs)
  model = MLP(widths=(4, 4), num_outputs=2, dropconnect_rate=0.5)
  with pytest.raises(flax.errors.InvalidRngError, match="'dropconnect' key"):
    model.apply(model.init(KEY, x), x, train=True, rngs=rngs)


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian"])
def test_dropout_in_training_mode_needs_the_dropout_stream_itself(kind):
  # flax's make_rng would silently fall back to a 'params' key; the MLP refuses.
  model = MLP(widths=(4,), num_outputs=2, dropout_rate=0.5, dropout_kind=kind)
  x = jnp.ones((2, 3))
  with pytest.raises(flax.errors.InvalidRngError, match="'dropout' key"):
    model.apply(model.init(KEY, x), x, train=True, rngs={"params": KEY})


def test_gaussian_dropout_has_mean_one_and_variance_rate_over_keep():
  rate, x = 0.3, jnp.ones(400_000)
  out = GaussianDropout(rate).apply({}, x, deterministic=False, rngs={"dropout": KEY})
  assert float(out.mean()) == pytest.approx(1.0, abs=0.005)
  assert float(out.var()) == pytest.approx(rate / (1 - rate), rel=0.01)
  np.testing.assert_array_equal(GaussianDropout(rate).apply({}, x, deterministic=True), x)


def test_dropout_variants_reject_unknown_kinds_and_bad_rates():
  with pytest.raises(ValueError, match="unknown dropout kind 'uniform'.*'gaussian'"):
    make_dropout("uniform", 0.5, deterministic=False)
  with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
    make_dropout("gaussian", 1.0, deterministic=False)
  with pytest.raises(ValueError, match=r"DropConnect rate must be in \[0, 1\)"):
    DropConnectDense(3, rate=-0.1).init(KEY, jnp.ones((1, 2)))


def test_dropconnect_mlp_has_the_plain_mlp_parameters_and_evaluates_alike():
  x = jax.random.normal(KEY, (3, 7))
  plain, dropped = (MLP(widths=(8, 8), num_outputs=4, dropconnect_rate=r) for r in (0.0, 0.5))
  variables = plain.init(KEY, x)
  assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(
      dropped.init(KEY, x))
  assert sorted(variables["params"]) == ["Dense_0", "Dense_1", "Dense_2"]
  np.testing.assert_array_equal(plain.apply(variables, x), dropped.apply(variables, x))
  trained = dropped.apply(variables, x, train=True, rngs={"dropconnect": KEY})
  assert not np.allclose(trained, plain.apply(variables, x))


def test_max_norm_projection_on_known_kernels():
  # Column norms 5 and 1: the first is scaled to norm 2, the second is left alone; biases too.
  params = {"Dense_0": {"kernel": jnp.array([[3.0, 0.0], [4.0, 1.0]]),
                        "bias": jnp.array([9.0, 9.0])},
            "Conv_0": {"kernel": jnp.full((2, 2, 1, 1), 2.0)}}  # one unit, norm 4
  projected = project_max_norm(params, 2.0)
  np.testing.assert_allclose(projected["Dense_0"]["kernel"], [[1.2, 0.0], [1.6, 1.0]], rtol=1e-6)
  np.testing.assert_array_equal(projected["Dense_0"]["bias"], [9.0, 9.0])
  np.testing.assert_allclose(projected["Conv_0"]["kernel"], jnp.full((2, 2, 1, 1), 1.0))
  norms = max_unit_norms(projected)
  assert float(norms["['Dense_0']['kernel']"]) == pytest.approx(2.0)


def test_max_norm_as_the_last_optax_transformation_keeps_every_unit_within_the_bound():
  params = {"Dense_0": {"kernel": jnp.array([[1.0, 0.1], [0.0, 0.1]]), "bias": jnp.zeros(2)}}
  grads = {"Dense_0": {"kernel": -jnp.array([[5.0, 0.0], [5.0, 0.0]]), "bias": -jnp.ones(2)}}
  tx = optax.chain(optax.sgd(1.0), max_norm(3.0))
  updates, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_allclose(new["Dense_0"]["kernel"][:, 0], 3.0 * np.array([6, 5]) / np.sqrt(61),
                             rtol=1e-5)
  np.testing.assert_allclose(new["Dense_0"]["kernel"][:, 1], [0.1, 0.1], rtol=1e-6)
  np.testing.assert_allclose(new["Dense_0"]["bias"], [1.0, 1.0])
  with pytest.raises(ValueError, match="must be > 0"):
    max_norm(0.0)
  with pytest.raises(ValueError, match="needs the parameters"):
    max_norm(1.0).update(grads, optax.EmptyState())


def test_the_model_registry_passes_the_dropout_options_to_the_mlp():
  from dl_jax.models import make_model

  model = make_model("mlp", 3, widths=[8], activation="relu", dropout_rate=0.3, residual=False,
                     dropout_kind="gaussian", dropconnect_rate=0.5)
  assert (model.dropout_kind, model.dropconnect_rate, model.widths) == ("gaussian", 0.5, (8,))

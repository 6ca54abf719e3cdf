import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl_jax.models.mlp import MLP
from dl_jax.pruning import (freeze_pruned, iterative_pruning, magnitude_masks,
                            magnitude_prune, prune_state)
from dl_jax.sparse_inference import (dense_forward, mlp_layers, model_sizes, sparse_forward,
                                     to_csr)
from dl_jax.sparsity import weight_sparsity
from dl_jax.structured_pruning import mlp_flops, narrow_mlp, top_units, unit_scores
from dl_jax.train import classification_loss, count_params, create_train_state, make_train_step
from dl_jax.train.classification import apply_model
from dl_jax.train.seeds import make_seeds_train_step, stack_states, unstack_state

MODEL = MLP(widths=(40, 20), num_outputs=3)


def _params(seed=0):
  return MODEL.init(jax.random.PRNGKey(seed), jnp.zeros((1, 12)))["params"]


def _batch(seed=1, n=32):
  x = jax.random.normal(jax.random.PRNGKey(seed), (n, 12))
  return {"x": x, "y": jnp.arange(n) % 3}


def test_masks_hit_the_requested_sparsity_globally_and_per_layer_and_spare_biases():
  params = _params()
  stats = weight_sparsity(magnitude_prune(params, 0.9))
  assert stats["zeros"] == round(0.9 * stats["size"])  # 12*40 + 40*20 + 20*3 = 1340 kernels
  for name, fraction in weight_sparsity(magnitude_prune(params, 0.75, "layer"))["layers"].items():
    assert fraction == pytest.approx(0.75, abs=1 / 60), name  # exact up to rounding per layer
  masks = magnitude_masks(params, 0.9)
  assert all(bool(jnp.all(masks[layer]["bias"])) for layer in masks)
  kept = jnp.concatenate([jnp.abs(params[l]["kernel"])[masks[l]["kernel"]] for l in params])
  dropped = jnp.concatenate([jnp.abs(params[l]["kernel"])[~masks[l]["kernel"]] for l in params])
  assert float(dropped.max()) <= float(kept.min())  # the smallest magnitudes went
  with pytest.raises(ValueError, match="sparsity must be in"):
    magnitude_masks(params, 1.0)
  with pytest.raises(ValueError, match="unknown pruning scope 'row'"):
    magnitude_masks(params, 0.5, "row")


def test_rising_sparsity_never_revives_a_weight_and_vmap_matches_one_model():
  params = _params()
  half = magnitude_prune(params, 0.5)
  more = magnitude_masks(half, 0.8)
  for layer in params:
    assert not bool(jnp.any(more[layer]["kernel"] & (half[layer]["kernel"] == 0)))
  stacked = stack_states([_params(0), _params(1)])
  pruned = jax.vmap(lambda p: magnitude_prune(p, 0.7))(stacked)
  alone = magnitude_prune(_params(1), 0.7)
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         jax.tree_util.tree_map(lambda a: a[1], pruned), alone)


@pytest.mark.parametrize("inner", [optax.adam(1e-2), optax.adamw(1e-2, weight_decay=0.1)])
def test_pruned_weights_stay_exactly_zero_through_fine_tuning(inner):
  batch = _batch()
  state = create_train_state(MODEL, inner, batch["x"], seed=0)
  pruned = prune_state(state, 0.8, freeze_pruned(inner))
  before = jax.device_get(pruned.params)  # a host copy: the train step donates `pruned`
  zeros = jax.tree_util.tree_map(lambda p: p == 0, before)
  step = make_train_step(classification_loss(MODEL))
  tuned = pruned
  for _ in range(5):
    tuned, _ = step(tuned, batch)
  moved = []
  for layer in before:
    kernel, was_zero = tuned.params[layer]["kernel"], zeros[layer]["kernel"]
    np.testing.assert_array_equal(kernel[was_zero], 0.0)
    moved.append(kernel[~was_zero] != before[layer]["kernel"][~was_zero])
  assert float(jnp.mean(jnp.concatenate(moved))) > 0.25  # kept weights train (bar dead units')
  assert weight_sparsity(tuned.params)["zeros"] == weight_sparsity(before)["zeros"]
  mu = tuned.opt_state.inner[0].mu  # Adam's first moment: never fed a pruned weight's gradient
  for layer in before:
    np.testing.assert_array_equal(mu[layer]["kernel"][zeros[layer]["kernel"]], 0.0)
  # Without the wrapper the same steps revive pruned weights: the test above can fail.
  plain = state.replace(params=before, opt_state=inner.init(before))
  for _ in range(5):
    plain, _ = step(plain, batch)
  assert weight_sparsity(plain.params)["zeros"] < weight_sparsity(before)["zeros"] // 2


def test_iterative_pruning_of_stacked_seeds_reaches_each_sparsity():
  batch = _batch()
  tx = optax.adam(1e-2)
  stacked = stack_states([create_train_state(MODEL, tx, batch["x"], seed=s) for s in (0, 1)])
  step = make_seeds_train_step(classification_loss(MODEL))
  two = {k: jnp.stack([v, v]) for k, v in batch.items()}

  def fine_tune(state):
    for _ in range(3):
      state, _ = step(state, two)
    return state

  reached = []
  for sparsity, state in iterative_pruning(stacked, (0.5, 0.9), freeze_pruned(optax.adam(1e-2)),
                                           fine_tune, stacked=True):
    reached.append([weight_sparsity(unstack_state(state, i).params)["overall"] for i in (0, 1)])
  np.testing.assert_allclose(reached, [[0.5, 0.5], [0.9, 0.9]], atol=1e-3)
  with pytest.raises(ValueError, match="rising sparsities"):
    next(iterative_pruning(stacked, (0.9, 0.5), freeze_pruned(optax.adam(1e-2)), fine_tune,
                           stacked=True))


def test_structured_pruning_emits_a_narrow_dense_mlp_with_the_same_outputs():
  params, x = _params(), _batch()["x"]
  _, _, sown = apply_model(MODEL, params, {}, x, False, intermediates=True)
  scores = unit_scores(params, "activation", jax.tree_util.tree_leaves(sown))
  keep = top_units(scores, (10, 5))
  narrow, small = narrow_mlp(MODEL, params, keep)
  assert narrow.widths == (10, 5)
  assert count_params(small) == (12 * 10 + 10) + (10 * 5 + 5) + (5 * 3 + 3)
  assert mlp_flops(12, (10, 5), 3) == 2 * (120 + 50 + 15)
  # The narrow model computes what the full one computes with the removed units' outgoing weights
  # cut, and its first hidden layer is the full model's kept units exactly.
  cut = jax.tree_util.tree_map(lambda a: a, params)
  for layer, index in (("Dense_1", keep[0]), ("Dense_2", keep[1])):
    rows = np.zeros(params[layer]["kernel"].shape[0], bool)
    rows[index] = True
    cut[layer] = {**params[layer], "kernel": jnp.where(rows[:, None], params[layer]["kernel"], 0)}
  np.testing.assert_allclose(narrow.apply({"params": small}, x),
                             MODEL.apply({"params": cut}, x), rtol=1e-5, atol=1e-6)
  _, _, narrow_sown = apply_model(narrow, small, {}, x, False, intermediates=True)
  np.testing.assert_allclose(jax.tree_util.tree_leaves(narrow_sown)[0],
                             jax.tree_util.tree_leaves(sown)[0][:, keep[0]], rtol=1e-5, atol=1e-6)
  # Units that are silent on every input (bias far below zero) go without changing any output.
  dead = {**params, "Dense_0": {**params["Dense_0"],
                                "bias": params["Dense_0"]["bias"].at[30:].set(-1e3)}}
  keep_alive = [np.arange(30), np.arange(20)]
  narrow_alive, alive = narrow_mlp(MODEL, dead, keep_alive)
  np.testing.assert_allclose(narrow_alive.apply({"params": alive}, x),
                             MODEL.apply({"params": dead}, x), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="cannot keep 50 of a layer's 40 units"):
    top_units(scores, (50, 5))
  with pytest.raises(ValueError, match="unknown unit score 'gradient'"):
    unit_scores(params, "gradient")


def test_sparse_and_dense_inference_agree_and_sparse_files_are_smaller():
  params, x = magnitude_prune(_params(), 0.95), np.asarray(_batch()["x"])
  layers = mlp_layers(params)
  expected = np.asarray(MODEL.apply({"params": params}, x))
  np.testing.assert_allclose(dense_forward(layers, x), expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(sparse_forward(to_csr(layers), x), expected, rtol=1e-5, atol=1e-5)
  assert sum(c.nnz for c, _ in to_csr(layers)) == weight_sparsity(params)["size"] - \
      weight_sparsity(params)["zeros"]
  # A layer of LeNet-300-100's size at 95% sparsity: CSR is ~10x smaller than the raw dense file
  # (though deflate squeezes the zeros of a dense file nearly as well: see the experiment).
  big = {"Dense_0": {"kernel": jax.random.normal(jax.random.PRNGKey(0), (300, 100)),
                     "bias": jnp.zeros(100)}}
  sizes = model_sizes(mlp_layers(magnitude_prune(big, 0.95)))
  assert 8 * sizes["sparse_compressed_bytes"] < sizes["dense_bytes"]
  assert sizes["dense_compressed_bytes"] < sizes["dense_bytes"]

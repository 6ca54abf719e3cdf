import dataclasses
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl_jax.data import load_dataset
from dl_jax.data.pairs import (ClassIndex, PairBatches, per_class_subset, sample_episodes,
                               sample_pairs, sample_triplets)
from dl_jax.metric_losses import contrastive_loss, triplet_loss
from dl_jax.models.mlp import MLP
from dl_jax.models.siamese import PairEncoder, SharedTrunk
from dl_jax.train import FitConfig, count_params, create_train_state, fit, make_train_step
from dl_jax.train.metric_learning import pair_loss
from dl_jax.train.seeds import make_seeds_init, unstack_state
from dl_jax.train.step import train_step_fn
from dl_jax.verification import best_threshold, one_shot_accuracy, verification_accuracy
from experiments import siamese

X = jax.random.normal(jax.random.PRNGKey(1), (4, 6))
X_OTHER = jax.random.normal(jax.random.PRNGKey(2), (4, 6))


def _encoder():
  return MLP(widths=(5,), num_outputs=3)


def _nudge(params, path):
  """params with 0.1 added to the first kernel under the sub-tree `path`."""
  def bump(tree, keys):
    if not keys:
      return {**tree, "Dense_0": {**tree["Dense_0"], "kernel": tree["Dense_0"]["kernel"] + 0.1}}
    return {**tree, keys[0]: bump(tree[keys[0]], keys[1:])}
  return bump(params, path)


# ---- parameter sharing -------------------------------------------------------------------------

def test_shared_pair_encoder_is_one_parameter_set_used_by_both_branches():
  model = PairEncoder(_encoder(), shared=True)
  params = model.init(jax.random.PRNGKey(0), X, X_OTHER)["params"]
  alone = _encoder().init(jax.random.PRNGKey(0), X)["params"]
  assert list(params) == ["encoder"]
  assert count_params(params) == count_params(alone) == 6 * 5 + 5 + 5 * 3 + 3
  z_a, z_b = model.apply({"params": params}, X, X)
  np.testing.assert_array_equal(z_a, z_b)  # one function: identical inputs, identical embeddings
  # Perturbing the one set moves both branches, and they stay one function.
  nudged = _nudge(params, ["encoder"])
  n_a, n_b = model.apply({"params": nudged}, X, X)
  assert not np.allclose(n_a, z_a) and not np.allclose(n_b, z_b)
  np.testing.assert_array_equal(n_a, n_b)
  # The gradient of a loss on branch b alone reaches the same (only) arrays branch a reads.
  grads = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, X, X_OTHER)[1]))(params)
  assert float(jnp.abs(grads["encoder"]["Dense_0"]["kernel"]).sum()) > 0


def test_unshared_pair_encoder_has_two_independent_parameter_sets():
  model = PairEncoder(_encoder(), shared=False)
  params = model.init(jax.random.PRNGKey(0), X, X)["params"]
  assert sorted(params) == ["branches_a", "branches_b"]
  assert count_params(params) == 2 * count_params(params["branches_a"])
  assert not np.allclose(params["branches_a"]["Dense_0"]["kernel"],
                         params["branches_b"]["Dense_0"]["kernel"])  # initialized independently
  z_a, z_b = model.apply({"params": params}, X, X)
  n_a, n_b = model.apply({"params": _nudge(params, ["branches_a"])}, X, X)
  assert not np.allclose(n_a, z_a)
  np.testing.assert_array_equal(n_b, z_b)  # branch b does not read branch a's parameters


def test_pair_encoder_rejects_mismatched_inputs_and_unknown_branches():
  model = PairEncoder(_encoder())
  params = model.init(jax.random.PRNGKey(0), X, X)
  with pytest.raises(ValueError, match="same shape"):
    model.apply(params, X, X[:2])
  with pytest.raises(ValueError, match="unknown branch 'c'"):
    model.apply(params, X, "c", method="embed")


def test_shared_trunk_has_one_trunk_for_all_heads():
  model = SharedTrunk(MLP(widths=(5,), num_outputs=4), {"digit": 10, "parity": 2})
  params = model.init(jax.random.PRNGKey(0), X)["params"]
  assert sorted(params) == ["head_digit", "head_parity", "trunk"]
  trunk_count = count_params(params["trunk"])
  assert trunk_count == 6 * 5 + 5 + 5 * 4 + 4
  assert count_params(params) == trunk_count + (4 * 10 + 10) + (4 * 2 + 2)
  out = model.apply({"params": params}, X)
  assert out["digit"].shape == (4, 10) and out["parity"].shape == (4, 2)
  nudged = model.apply({"params": _nudge(params, ["trunk"])}, X)
  assert all(not np.allclose(nudged[k], out[k]) for k in out)  # the trunk feeds every head
  grads = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, X)["digit"]))(params)
  assert float(jnp.abs(grads["head_parity"]["kernel"]).sum()) == 0  # heads are separate
  assert float(jnp.abs(grads["trunk"]["Dense_0"]["kernel"]).sum()) > 0
  with pytest.raises(ValueError, match="at least one head"):
    SharedTrunk(MLP(widths=(5,), num_outputs=4), {}).init(jax.random.PRNGKey(0), X)


# ---- losses ------------------------------------------------------------------------------------

def test_contrastive_loss_values_and_gradients():
  a, b = jnp.array([[0.0, 0.0]] * 3), jnp.array([[3.0, 4.0]] * 3)  # distance 5
  same = jnp.array([True, False, False])
  np.testing.assert_allclose(contrastive_loss(a, b, same, margin=6.0), [12.5, 0.5, 0.5])
  np.testing.assert_allclose(contrastive_loss(a, b, same, margin=1.0), [12.5, 0.0, 0.0])
  grads = jax.grad(lambda a: jnp.sum(contrastive_loss(a, b, same, margin=6.0)))(a)
  # same: d(d^2/2)/da = a - b; different: d((m-d)^2/2)/da = -(m-d)(a-b)/d = (0.6, 0.8).
  np.testing.assert_allclose(grads, [[-3.0, -4.0], [0.6, 0.8], [0.6, 0.8]], rtol=1e-6)
  # A different-class pair at distance 0: loss m^2/2, and a finite (zero) gradient, not NaN.
  zero_grad = jax.grad(lambda a: jnp.sum(contrastive_loss(a, a, jnp.array([False]))))(a[:1])
  np.testing.assert_array_equal(zero_grad, [[0.0, 0.0]])
  np.testing.assert_allclose(contrastive_loss(a[:1], a[:1], jnp.array([0])), [0.5], rtol=1e-5)


def test_triplet_loss_values_and_gradients():
  anchor, positive = jnp.array([[0.0, 0.0]]), jnp.array([[1.0, 0.0]])
  negative = jnp.array([[0.0, 2.0]])  # |a-p|^2 = 1, |a-n|^2 = 4
  np.testing.assert_allclose(triplet_loss(anchor, positive, negative, margin=1.0), [0.0])
  np.testing.assert_allclose(triplet_loss(anchor, positive, negative, margin=5.0), [2.0])
  grad = jax.grad(lambda a: jnp.sum(triplet_loss(a, positive, negative, margin=5.0)))(anchor)
  np.testing.assert_allclose(grad, [[-2.0, 4.0]])  # 2(a-p) - 2(a-n) = 2(n-p)
  inactive = jax.grad(lambda a: jnp.sum(triplet_loss(a, positive, negative, 1.0)))(anchor)
  np.testing.assert_array_equal(inactive, [[0.0, 0.0]])  # satisfied triplets teach nothing


@pytest.mark.parametrize("loss, kind", [("contrastive", "pairs"), ("triplet", "triplets")])
def test_pair_loss_trains_a_shared_encoder(loss, kind):
  split = load_dataset("mnist").test
  batch = PairBatches(split, 32, seed=0, classes=(0, 1, 2), kind=kind).batch(0)
  model = PairEncoder(MLP(widths=(16,), num_outputs=4))
  state = create_train_state(model, optax.adam(1e-2), (batch["x_a"], batch["x_a"]), seed=0)
  step = make_train_step(pair_loss(model, loss, margin=1.0))
  losses = []
  for _ in range(20):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.5 * losses[0]
  assert float(metrics["different_distance"]) > float(metrics["same_distance"])


def test_fit_on_pair_batches_resumes_to_the_uninterrupted_result(tmp_path):
  # fit reads PairBatches as its batch source (each seed its own stream) and checkpoints where
  # each stream stands: 12 steps, or 6 then a rerun to 12, give identical encoders.
  dataset = load_dataset("mnist", 0.0)
  model = PairEncoder(MLP(widths=(16,), num_outputs=4))
  example = dataset.train.gather([0])["x"]

  def train(steps, workdir):
    states = make_seeds_init(model, optax.adam(1e-2), (example, example))([0, 1])
    return fit(states, train_step_fn(pair_loss(model)), None, dataset,
               FitConfig(num_steps=steps, batch_size=16, eval_every=6, log_every=3,
                         checkpoint_every=6), str(workdir), seeds=[0, 1],
               batches=lambda seed, at: PairBatches(dataset.train, 16, seed, (0, 1, 2),
                                                    position=at))

  whole, results = train(12, tmp_path / "whole")
  train(6, tmp_path / "cut")
  resumed, again = train(12, tmp_path / "cut")
  assert again["resumed_from_step"] == 6 and "test" not in again  # no eval_step: no figures
  chex.assert_trees_all_equal(resumed.params, whole.params)
  assert results["train_curves"]["step"] == [3, 6, 9, 12]
  assert np.shape(results["train_curves"]["loss"]) == (4, 2)
  seed0, seed1 = (unstack_state(whole, i).params for i in (0, 1))
  assert not np.array_equal(*(jax.tree_util.tree_leaves(p)[0] for p in (seed0, seed1)))


def test_metric_losses_reject_bad_inputs():
  a = jnp.zeros((3, 2))
  with pytest.raises(ValueError, match="equal shapes"):
    contrastive_loss(a, jnp.zeros((3, 4)), jnp.ones(3, bool))
  with pytest.raises(ValueError, match="one flag per pair"):
    contrastive_loss(a, a, jnp.ones(2, bool))
  with pytest.raises(ValueError, match="margin must be positive"):
    triplet_loss(a, a, a, margin=0.0)
  with pytest.raises(ValueError, match="unknown metric loss 'hinge'"):
    pair_loss(PairEncoder(_encoder()), "hinge")


# ---- samplers ----------------------------------------------------------------------------------

LABELS = np.array([0, 1, 2, 3] * 10 + [4, 4, 5, 5, 6, 6])


def test_pairs_are_balanced_labelled_correctly_and_only_from_the_requested_classes():
  index = ClassIndex(LABELS, classes=(0, 1, 2, 3))
  pairs = sample_pairs(index, 1001, np.random.default_rng(0))
  assert pairs["same"].sum() == 500  # exactly half (rounded down) are same-class pairs
  la, lb = LABELS[pairs["a"]], LABELS[pairs["b"]]
  np.testing.assert_array_equal(la == lb, pairs["same"])
  assert np.all(pairs["a"] != pairs["b"])  # a same-class pair is two different examples
  assert set(la) | set(lb) == {0, 1, 2, 3}
  assert np.all(np.bincount(la, minlength=4) > 180)  # classes drawn uniformly: ~250 each
  assert 0.3 < np.mean(pairs["same"][:100]) < 0.7  # shuffled, not positives first


def test_samplers_are_deterministic_per_seed():
  index = ClassIndex(LABELS)
  draw = lambda seed: sample_pairs(index, 64, np.random.default_rng(seed))
  for key in ("a", "b", "same"):
    np.testing.assert_array_equal(draw(3)[key], draw(3)[key])
  assert not np.array_equal(draw(3)["a"], draw(4)["a"])
  split = load_dataset("mnist").test
  stream = PairBatches(split, 16, seed=7, classes=(0, 1, 2, 3, 4))
  again = PairBatches(split, 16, seed=7, classes=(0, 1, 2, 3, 4))
  np.testing.assert_array_equal(stream.batch(5)["x_a"], again.batch(5)["x_a"])  # resumable
  assert not np.array_equal(stream.batch(5)["x_a"], stream.batch(6)["x_a"])
  assert stream.batch(0)["same"].sum() == 8


def test_triplets_and_episodes():
  index = ClassIndex(LABELS)
  t = sample_triplets(index, 500, np.random.default_rng(0))
  assert np.all(LABELS[t["anchor"]] == LABELS[t["positive"]])
  assert np.all(t["anchor"] != t["positive"])
  assert np.all(LABELS[t["anchor"]] != LABELS[t["negative"]])
  index = ClassIndex(LABELS, classes=(0, 1, 2, 3))
  e = sample_episodes(index, 20, ways=3, queries=2, rng=np.random.default_rng(0))
  assert e["support"].shape == (20, 3) and e["query"].shape == (20, 6)
  support_classes = LABELS[e["support"]]
  assert all(len(set(row)) == 3 for row in support_classes)  # three different classes
  np.testing.assert_array_equal(LABELS[e["query"]],
                                np.take_along_axis(support_classes, e["query_label"], axis=1))
  assert not np.any(e["query"][:, :, None] == e["support"][:, None, :])  # a query is no support


def test_per_class_subset_takes_that_many_distinct_examples_of_each_class():
  index = ClassIndex(LABELS, classes=(0, 1, 2))
  keep = per_class_subset(index, 4, np.random.default_rng(0))
  np.testing.assert_array_equal(np.bincount(LABELS[keep]), [4, 4, 4])
  assert len(set(keep)) == 12
  np.testing.assert_array_equal(keep, per_class_subset(index, 4, np.random.default_rng(0)))
  with pytest.raises(ValueError, match="exceeds"):
    per_class_subset(index, 11, np.random.default_rng(0))


def test_samplers_reject_bad_requests():
  with pytest.raises(ValueError, match="at least 2 classes"):
    ClassIndex(LABELS, classes=(0,))
  with pytest.raises(ValueError, match="fewer than 2 examples"):
    ClassIndex(np.array([0, 0, 1]))
  with pytest.raises(ValueError, match="ways=5"):
    sample_episodes(ClassIndex(LABELS, (0, 1, 2)), 2, 5, 1, np.random.default_rng(0))
  with pytest.raises(ValueError, match="unknown kind"):
    PairBatches(load_dataset("mnist").test, 8, 0, kind="quads")


# ---- evaluation --------------------------------------------------------------------------------

def test_threshold_verification_and_one_shot_on_known_values():
  distances = np.array([0.1, 0.2, 0.3, 0.9, 1.0, 0.25])
  same = np.array([True, True, False, False, False, True])
  threshold = best_threshold(distances, same)
  assert threshold == pytest.approx(0.275)
  assert verification_accuracy(distances, same, threshold) == 1.0
  # Two classes at 0 and 10 on a line; queries at 1 (class 0) and 6 (class 1, nearer 10).
  embeddings = np.array([[0.0], [10.0], [1.0], [6.0]])
  episodes = {"support": np.array([[0, 1], [1, 0]]), "query": np.array([[2, 3], [2, 3]]),
              "query_label": np.array([[0, 1], [1, 0]])}
  np.testing.assert_array_equal(one_shot_accuracy(embeddings, embeddings, episodes), [1.0, 1.0])
  # Supports read from another array (branch b): class 1's support moved to 0.5 now takes the
  # query at 1 from class 0, in both episodes.
  moved = np.array([[0.0], [0.5], [1.0], [6.0]])
  np.testing.assert_array_equal(one_shot_accuracy(embeddings, moved, episodes), [0.5, 0.5])


# ---- the experiment ----------------------------------------------------------------------------

def test_equal_parameter_unshared_encoders_match_the_shared_total():
  shared = siamese.mlp_param_count(784, (256, 256), 32)
  widths = siamese.matched_widths(784, (256, 256), 32, shared // 2)
  assert widths[0] < 256
  assert abs(2 * siamese.mlp_param_count(784, widths, 32) - shared) < 0.01 * shared


def test_smoke_run_end_to_end(tmp_path):
  config = dataclasses.replace(siamese.smoke_config(), steps=10, log_every=5)
  results = siamese.EXPERIMENT.execute(config, str(tmp_path))
  with open(tmp_path / "results.json") as f:
    saved = json.load(f)
  variants = saved["variants"]
  assert list(variants) == ["pixels", *siamese.VARIANTS]
  shared, equal = variants["shared"]["num_params"], variants["unshared_equal_params"]["num_params"]
  assert variants["unshared_equal_width"]["num_params"] == 2 * shared
  assert abs(equal - shared) < 0.02 * shared
  for name, v in variants.items():
    for split in siamese.EVAL_SETS:
      for metric in siamese.METRICS:
        values = v[split][metric]["values"]
        assert len(values) == (1 if name == "pixels" else 2) and all(0 <= x <= 1 for x in values)
  # Raw pixels are a fixed model: their figures are the same numbers for every run.
  assert 0.4 < variants["pixels"]["test_unseen"]["one_shot"]["mean"] < 0.8
  assert variants["shared"]["curves"]["step"] == [5, 10]
  assert "| shared |" in (tmp_path / "results.md").read_text()
  for path in results["plots"]:
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  # Same config and seeds -> bit-identical figures (fresh workdir; the config must match).
  again = siamese.EXPERIMENT.execute(dataclasses.replace(config, variants=("shared",)), str(tmp_path / "again"))
  assert again["variants"]["shared"]["test_unseen"] == results["variants"]["shared"]["test_unseen"]

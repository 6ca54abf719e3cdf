import dataclasses
import json
import os

import chex
import flax
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

from dl_jax.data import Split, make_dataset
from dl_jax.gan import (Discriminator, Generator, class_coverage, classifier_outputs,
                        discriminator_metrics, frechet_distance, gaussian_stats, init_gan_state,
                        latent_noise, make_classifier_outputs, make_gan_step, step_keys)
from dl_jax.gan.augment import augment, cutout, cutout_corners, translate, translation_offsets
from dl_jax.gan.ema import ema_decay_at
from dl_jax.gan.losses import discriminator_loss, generator_loss
from dl_jax.gan.state import generate, generator_variables
from dl_jax.gan.step import r1_penalty
from dl_jax.lab.records import Records
from dl_jax.models.cnn import CNN
from dl_jax.train import FitConfig, create_train_state, fit, make_eval_step
from experiments import gan

LATENT = 8
SHAPE = (28, 28, 1)


class TinyGAN:
  """Small models, their jitted init and step: compiled once for the whole module."""

  generator = Generator(image_shape=SHAPE, channels=(8, 4))
  discriminator = Discriminator(channels=(4, 8), dropout_rate=0.3)
  init_fn = jax.jit(lambda root: init_gan_state(
      TinyGAN.generator, TinyGAN.discriminator, optax.adam(1e-3), optax.adam(1e-3), LATENT, SHAPE,
      root))
  step = make_gan_step(generator, discriminator, LATENT)
  step_no_average = make_gan_step(generator, discriminator, LATENT, ema_decay=0.0)
  step_augmented = make_gan_step(generator, discriminator, LATENT, augment=augment)

  @classmethod
  def init(cls, seed: int = 0):
    return cls.init_fn(jax.random.PRNGKey(seed))


def _real_batch(n: int = 8):
  return {"x": np.random.default_rng(0).uniform(size=(n, *SHAPE)).astype(np.float32),
          "y": np.zeros(n, np.int32)}


def test_models_map_latents_to_images_in_range_and_images_to_one_logit():
  generator, discriminator, state = TinyGAN.generator, TinyGAN.discriminator, TinyGAN.init()
  z = latent_noise(jax.random.PRNGKey(1), 5, LATENT)
  images = generator.apply({"params": state.generator.params, **state.generator.model_state}, z)
  assert images.shape == (5, *SHAPE)
  assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
  logits = discriminator.apply({"params": state.discriminator.params}, images)
  assert logits.shape == (5,)


def test_bad_shapes_and_missing_dropout_key_raise():
  discriminator, state = TinyGAN.discriminator, TinyGAN.init()
  with pytest.raises(ValueError, match="multiples of 4"):
    Generator(image_shape=(30, 30, 1)).init(jax.random.PRNGKey(0), jnp.zeros((1, LATENT)))
  with pytest.raises(ValueError, match=r"\[batch, height, width, channels\]"):
    discriminator.apply({"params": state.discriminator.params}, jnp.zeros((2, 28, 28)))
  with pytest.raises(flax.errors.InvalidRngError):  # training-mode dropout without a key
    discriminator.apply({"params": state.discriminator.params}, jnp.zeros((2, *SHAPE)),
                        train=True)


def test_non_saturating_losses_match_their_definitions():
  real, fake = jnp.array([2.0, -1.0]), jnp.array([0.5, -3.0])
  d = jax.nn.sigmoid
  np.testing.assert_allclose(discriminator_loss(real, fake),
                             -jnp.log(d(real)) - jnp.log(1 - d(fake)), rtol=1e-5)
  np.testing.assert_allclose(generator_loss(fake), -jnp.log(d(fake)), rtol=1e-5)
  # Non-saturating: a confidently rejected fake (logit -20) still gets a gradient of ~-1.
  assert float(jax.grad(lambda f: generator_loss(f[None])[0])(-20.0)) == pytest.approx(-1.0)


def test_gan_step_updates_both_players_and_batch_statistics():
  state = TinyGAN.init()
  before = jax.device_get(state)
  after, metrics = TinyGAN.step(state, _real_batch())
  assert int(after.step) == 1
  for name, old, new in (("generator", before.generator, after.generator),
                         ("discriminator", before.discriminator, after.discriminator)):
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(old.params),
                            jax.tree_util.tree_leaves(new.params)):
      assert not np.array_equal(a, b), f"{name} parameter {jax.tree_util.keystr(path)} unchanged"
    assert int(new.step) == 1  # each player's optimizer took one step
  stats_before = jax.tree_util.tree_leaves(before.generator.model_state)
  stats_after = jax.tree_util.tree_leaves(after.generator.model_state)
  assert stats_before and all(not np.array_equal(a, b) for a, b in zip(stats_before, stats_after))
  assert {"d_loss", "g_loss", "d_real", "d_fake", "d_grad_norm", "g_grad_norm"} <= set(metrics)
  assert all(np.isfinite(float(v)) for v in metrics.values())


def test_generator_average_follows_the_ema_rule_with_warm_up():
  assert float(ema_decay_at(0, 0.999)) == pytest.approx(0.1)  # forgets the initial weights
  assert float(ema_decay_at(90, 0.999)) == pytest.approx(0.91)
  assert float(ema_decay_at(20_000, 0.999)) == pytest.approx(0.999)
  state = TinyGAN.init().replace(step=jnp.asarray(40, jnp.int32))
  before = jax.device_get(state.generator_ema)
  after, _ = TinyGAN.step(state, _real_batch())
  decay = 41 / 50  # (1 + step) / (10 + step) at step 40, below 0.999
  expected = jax.tree_util.tree_map(lambda a, n: decay * a + (1 - decay) * n, before,
                                    jax.device_get(generator_variables(after.generator)))
  chex.assert_trees_all_close(after.generator_ema, expected, rtol=1e-5, atol=1e-7)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(before),
                          jax.tree_util.tree_leaves(after.generator_ema)):
    assert not np.array_equal(a, b), f"average {jax.tree_util.keystr(path)} did not move"
  # Decay 0: the average is exactly the last weights and batch statistics.
  zero, _ = TinyGAN.step_no_average(TinyGAN.init(), _real_batch())
  chex.assert_trees_all_equal(zero.generator_ema, generator_variables(zero.generator))


def test_samples_come_from_the_weight_average_unless_asked_otherwise():
  state = TinyGAN.init()
  for _ in range(3):
    state, _ = TinyGAN.step(state, _real_batch())
  z = latent_noise(jax.random.PRNGKey(2), 4, LATENT)
  generator = TinyGAN.generator
  averaged = generator.apply(state.generator_ema, z)
  last = generator.apply(generator_variables(state.generator), z)
  assert not np.allclose(averaged, last)
  np.testing.assert_array_equal(generate(generator, state, z), averaged)
  np.testing.assert_array_equal(generate(generator, state, z, averaged=False), last)
  # The experiment's jitted sampler (grids and the judged samples) defaults to the average too.
  config = dataclasses.replace(gan.smoke_config(), latent_dim=LATENT,
                               generator_channels=generator.channels,
                               discriminator_channels=TinyGAN.discriminator.channels)
  split = Split(np.zeros((4, *SHAPE), np.float32), np.zeros(4, np.int32))
  dataset = make_dataset("tiny", "test", split, split, num_classes=1)
  sample = gan.make_parts(config, dataset).sample
  np.testing.assert_allclose(sample(state, z), averaged, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(sample(state, z, averaged=False), last, rtol=1e-5, atol=1e-6)


def test_rng_streams_are_distinct_and_fresh_every_step():
  root = jax.random.PRNGKey(0)
  keys = [np.asarray(key).tobytes()
          for step in range(4) for key in step_keys(root, jnp.asarray(step)).values()]
  assert len(set(keys)) == len(keys) == 20  # 5 uses x 4 steps, no key shared or reused

  # The same state at another step draws other latents and masks: a different update.
  at_0, _ = TinyGAN.step(TinyGAN.init(), _real_batch())
  at_5, _ = TinyGAN.step(TinyGAN.init().replace(step=jnp.asarray(5, jnp.int32)), _real_batch())
  assert not np.array_equal(at_0.generator.params["Dense_0"]["kernel"],
                            at_5.generator.params["Dense_0"]["kernel"])


def test_same_seed_gives_bit_identical_states_and_another_seed_does_not():
  def two_steps(seed):
    state = TinyGAN.init(seed)
    for _ in range(2):
      state, _ = TinyGAN.step(state, _real_batch())
    return jax.device_get(state.params)

  chex.assert_trees_all_equal(two_steps(0), two_steps(0))
  assert not np.array_equal(two_steps(0)["generator"]["Dense_0"]["kernel"],
                            two_steps(1)["generator"]["Dense_0"]["kernel"])


def test_gan_state_checkpoints_and_resumes_bit_identically(tmp_path):
  # fit() checkpoints a GANState like a TrainState: 2 steps, then resumed to 4, ends where an
  # uninterrupted 4-step run ends.
  x = np.random.default_rng(0).uniform(size=(32, *SHAPE)).astype(np.float32)
  dataset = make_dataset("tiny", "test", Split(x, np.zeros(32, np.int32)),
                         Split(x[:8], np.zeros(8, np.int32)), num_classes=1)
  eval_step = make_eval_step(discriminator_metrics(TinyGAN.discriminator))

  def train(steps, workdir):
    config = FitConfig(num_steps=steps, batch_size=8, eval_every=steps, log_every=1,
                       checkpoint_every=1)
    return fit(TinyGAN.init(), TinyGAN.step, eval_step, dataset, config, str(workdir))

  train(2, tmp_path / "resumed")
  resumed_state, resumed = train(4, tmp_path / "resumed")
  straight_state, straight = train(4, tmp_path / "straight")
  assert resumed["resumed_from_step"] == 2
  assert resumed["params_fingerprint"] == straight["params_fingerprint"]
  chex.assert_trees_all_equal(resumed_state.generator_ema, straight_state.generator_ema)


def test_frechet_distance_of_a_gaussian_with_itself_is_zero():
  features = np.random.default_rng(0).normal(size=(500, 6)) @ np.diag([1, 2, 3, 0.5, 1, 4])
  stats = gaussian_stats(features)
  assert frechet_distance(stats, stats) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_known_values():
  # 1-D: N(0, 1) vs N(1, 4): (0 - 1)^2 + 1 + 4 - 2 * sqrt(1 * 4) = 2.
  one = (np.zeros(1), np.eye(1)), (np.ones(1), 4 * np.eye(1))
  assert frechet_distance(*one) == pytest.approx(2.0)
  # Diagonal: |mu_a - mu_b|^2 + sum (sd_a - sd_b)^2 = (1 + 4) + ((1 - 3)^2 + (2 - 2)^2) = 9.
  diag = (np.array([0.0, 0.0]), np.diag([1.0, 4.0])), (np.array([1.0, 2.0]), np.diag([9.0, 4.0]))
  assert frechet_distance(*diag) == pytest.approx(9.0)
  # Non-commuting covariances: the textbook formula with a general matrix square root.
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
  cov_a, cov_b, mu_a, mu_b = a @ a.T, b @ b.T, rng.normal(size=4), rng.normal(size=4)
  expected = (np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b)
              - 2 * np.trace(scipy.linalg.sqrtm(cov_a @ cov_b)).real)
  assert frechet_distance((mu_a, cov_a), (mu_b, cov_b)) == pytest.approx(expected, rel=1e-6)
  with pytest.raises(ValueError, match="different spaces"):
    frechet_distance((np.zeros(2), np.eye(2)), (np.zeros(3), np.eye(3)))
  with pytest.raises(ValueError, match="n >= 2"):
    gaussian_stats(np.zeros((1, 3)))


def test_class_coverage_counts_predicted_classes():
  probabilities = np.array([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.2, 0.8, 0.0], [0.7, 0.3, 0.0]])
  coverage = class_coverage(probabilities, min_fraction=0.05)
  assert coverage["fractions"] == [0.75, 0.25, 0.0]
  assert coverage["classes_generated"] == 2 and coverage["min_fraction"] == 0.0
  assert not coverage["all_classes_above_min"]
  assert coverage["mean_confidence"] == pytest.approx((0.9 + 0.6 + 0.8 + 0.7) / 4)


def test_classifier_features_are_the_input_of_its_output_layer():
  model = CNN(num_outputs=10, channels=(4,), kernel_sizes=(3,), pool="avg", widths=(12,))
  images = np.random.default_rng(0).uniform(size=(7, *SHAPE)).astype(np.float32)
  state = create_train_state(model, optax.sgd(0.1), images[:1], seed=0)
  probabilities, features = classifier_outputs(make_classifier_outputs(model), state.params,
                                               state.model_state, images, batch_size=4)
  assert probabilities.shape == (7, 10) and features.shape == (7, 12)
  head = state.params["MLP_0"]["Dense_1"]
  np.testing.assert_allclose(jax.nn.softmax(features @ head["kernel"] + head["bias"]),
                             probabilities, rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match="at least one hidden layer"):
    bare = CNN(num_outputs=10, channels=(4,), kernel_sizes=(3,))
    bare_state = create_train_state(bare, optax.sgd(0.1), images[:1], seed=0)
    classifier_outputs(make_classifier_outputs(bare), bare_state.params, bare_state.model_state,
                       images)


def test_bad_config_is_refused_before_training(tmp_path):
  with pytest.raises(ValueError, match="generator_channels needs 2 entries"):
    gan.run(dataclasses.replace(gan.smoke_config(), generator_channels=(8, 4, 2)), str(tmp_path))
  with pytest.raises(ValueError, match="at least one seed"):
    gan.run(dataclasses.replace(gan.smoke_config(), seeds=()), str(tmp_path))
  with pytest.raises(ValueError, match="r1_every >= 1"):
    gan.run(dataclasses.replace(gan.smoke_config(), r1_every=0), str(tmp_path))
  with pytest.raises(ValueError, match="r1_weight must be >= 0"):
    gan.run(dataclasses.replace(gan.smoke_config(), r1_weight=-1.0), str(tmp_path))
  assert not os.listdir(tmp_path)  # nothing written


def _strict_json(path):
  def refuse(constant):
    raise ValueError(f"non-standard JSON constant {constant}")
  with open(path) as f:
    return json.load(f, parse_constant=refuse)


def test_smoke_run_writes_results_reports_plots_and_checkpoints(smoke_stage):
  config, results, tmp_path = smoke_stage("gan")
  assert config == gan.smoke_config()
  saved = _strict_json(tmp_path / "results.json")
  assert [r["seed"] for r in saved["runs"]] == list(config.seeds)
  ref = saved["reference"]
  # even a judge trained for seconds tells digits from noise: real training digits lie far closer
  # to the test digits in its feature space than uniform noise does
  assert 0 <= 10 * ref["frechet_train_test"] < ref["frechet_noise_test"]
  for r in saved["runs"]:
    assert len(r["coverage"]["fractions"]) == 10
    assert sum(r["coverage"]["fractions"]) == pytest.approx(1.0)
    assert {"train", "val", "test", "gap"} <= set(r["discriminator"])
  # the records the tour judges hold the same per-seed figures as the run's own results
  records = Records(gan.records(saved, "smoke"))
  assert records.where(metric="ratio_to_floor").values() == pytest.approx(
      [r["ratio_to_floor"] for r in saved["runs"]])
  for split in ("train", "val", "test"):
    assert 0 <= saved["classifier"][split]["accuracy"] <= 1
  assert "| mean ± std |" in (tmp_path / "results.md").read_text()
  for path in results["plots"]:
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  for seed in config.seeds:
    grids = sorted(os.listdir(tmp_path / "plots" / f"samples_seed{seed}"))
    assert grids == ["step_000003.png", "step_000006.png"]
    assert sorted(os.listdir(tmp_path / f"seed_{seed}" / "checkpoints")) == ["3", "6"]
    assert (tmp_path / f"seed_{seed}" / "metrics.jsonl").exists()
  assert os.listdir(tmp_path / "classifier" / "checkpoints") == [str(config.classifier_steps)]


# ---- differentiable augmentation (DiffAugment) ---------------------------------------------------

def _digits(n: int = 6, shape=(12, 10, 2)):
  """Positive pixels everywhere, so a zero in the output can only come from padding or cutout."""
  return jnp.asarray(np.random.default_rng(3).uniform(0.1, 1.0, size=(n, *shape)), jnp.float32)


def test_translation_moves_each_image_by_its_drawn_offset_and_pads_with_zeros():
  images, key = _digits(), jax.random.PRNGKey(4)
  shifted = np.asarray(translate(key, images, fraction=0.25))
  offsets = np.asarray(translation_offsets(key, 6, (3, 3)))  # round(0.25 * 12), round(0.25 * 10)
  assert len({tuple(o) for o in offsets}) > 1  # per-image draws
  for image, out, (dy, dx) in zip(np.asarray(images), shifted, offsets):
    expected = np.zeros_like(image)
    height, width = image.shape[:2]
    expected[max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
        image[max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    np.testing.assert_array_equal(out, expected)
  np.testing.assert_array_equal(translate(key, images, fraction=0.0), images)


def test_cutout_zeroes_exactly_one_square_per_image_and_nothing_else():
  images, key = _digits(), jax.random.PRNGKey(5)
  out = np.asarray(cutout(key, images, fraction=0.5))  # a 6 x 5 square
  corners = np.asarray(cutout_corners(key, 6, (12, 10), (6, 5)))
  assert len({tuple(c) for c in corners}) > 1
  for image, result, (top, left) in zip(np.asarray(images), out, corners):
    assert 0 <= top <= 6 and 0 <= left <= 5  # wholly inside the image
    expected = image.copy()
    expected[top:top + 6, left:left + 5] = 0.0
    np.testing.assert_array_equal(result, expected)
    assert np.count_nonzero(result == 0) == 6 * 5 * image.shape[-1]


def test_augmentation_is_reproducible_per_key_and_differs_across_keys_and_images():
  images = jnp.broadcast_to(_digits(1), (16, 12, 10, 2))  # 16 copies of one image
  first = augment(jax.random.PRNGKey(0), images)
  np.testing.assert_array_equal(first, augment(jax.random.PRNGKey(0), images))
  assert not np.array_equal(first, augment(jax.random.PRNGKey(1), images))
  assert len({np.asarray(a).tobytes() for a in first}) > 8  # each copy transformed differently
  np.testing.assert_array_equal(augment(jax.random.PRNGKey(0), images, policy=()), images)
  with pytest.raises(ValueError, match="unknown augmentation"):
    augment(jax.random.PRNGKey(0), images, policy=("rotation",))


def test_gradient_flows_through_the_augmentation_to_the_kept_pixels():
  images, key = _digits(3), jax.random.PRNGKey(6)
  weights = jnp.asarray(np.random.default_rng(7).normal(size=images.shape), jnp.float32)
  loss = lambda x: jnp.sum(weights * augment(key, x) ** 2)
  grad = jax.grad(loss)(images)
  # The transforms are linear: the output is A x, so d/dx sum(w (A x)^2) = A^T (2 w A x).
  out, pull_back = jax.vjp(lambda x: augment(key, x), images)
  np.testing.assert_allclose(grad, pull_back(2 * weights * out)[0], rtol=1e-6)
  assert np.count_nonzero(np.asarray(grad)) > 0
  # Pixels moved out of the frame or cut out get no gradient; each kept pixel its own.
  kept = np.asarray(pull_back(jnp.ones_like(out))[0])
  assert set(np.unique(kept)) <= {0.0, 1.0} and 0 < kept.mean() < 1
  # A finite difference on one kept pixel agrees.
  index = tuple(np.argwhere(kept == 1.0)[0])
  bump = jnp.zeros_like(images).at[index].set(1e-2)
  finite = (loss(images + bump) - loss(images - bump)) / 2e-2
  assert float(finite) == pytest.approx(float(grad[index]), rel=1e-2)


def test_gan_step_with_augmentation_uses_its_own_keys_and_updates_both_players():
  state = TinyGAN.init()
  before = jax.device_get(state)
  after, metrics = TinyGAN.step_augmented(state, _real_batch())
  for old, new in ((before.generator.params, after.generator.params),
                   (before.discriminator.params, after.discriminator.params)):
    for a, b in zip(jax.tree_util.tree_leaves(old), jax.tree_util.tree_leaves(new)):
      assert not np.array_equal(a, b)
  assert all(np.isfinite(float(v)) for v in metrics.values())
  # Augmentation changes what D sees, so the same state and batch give a different update.
  plain, _ = TinyGAN.step(TinyGAN.init(), _real_batch())
  assert not np.array_equal(plain.discriminator.params["Dense_0"]["kernel"],
                            after.discriminator.params["Dense_0"]["kernel"])
  # Same seed and step: bit-identical, augmentation included.
  again, _ = TinyGAN.step_augmented(TinyGAN.init(), _real_batch())
  chex.assert_trees_all_equal(jax.device_get(again.params), jax.device_get(after.params))


def test_bad_augmentation_config_is_refused(tmp_path):
  with pytest.raises(ValueError, match="unknown augmentation"):
    gan.run(dataclasses.replace(gan.smoke_config(), augment=("flip",)), str(tmp_path))
  with pytest.raises(ValueError, match="cutout_fraction"):
    gan.run(dataclasses.replace(gan.smoke_config(), cutout_fraction=0.0), str(tmp_path))
  assert not os.listdir(tmp_path)


# ---- R1 gradient penalty -----------------------------------------------------------------------

def test_r1_penalty_of_a_linear_discriminator_is_its_squared_weight_norm():
  w = jax.random.normal(jax.random.PRNGKey(0), SHAPE)
  linear = lambda x: jnp.sum(x * w, axis=(1, 2, 3)) + 3.0
  real = jnp.asarray(_real_batch(5)["x"])
  assert float(r1_penalty(linear, real)) == pytest.approx(float(jnp.sum(w ** 2)), rel=1e-5)
  # A logit that depends on x squared: grad 2x, so the penalty is the mean of 4|x|^2.
  square = lambda x: jnp.sum(x ** 2, axis=(1, 2, 3))
  expected = np.mean(4 * np.sum(np.asarray(real) ** 2, axis=(1, 2, 3)))
  assert float(r1_penalty(square, real)) == pytest.approx(expected, rel=1e-5)


def _discriminator_update(step, state):
  """The discriminator's parameter change in one step, as a flat vector."""
  after, _ = step(jax.tree_util.tree_map(jnp.copy, state), _real_batch())
  before = jax.flatten_util.ravel_pytree(state.discriminator.params)[0]
  return jax.flatten_util.ravel_pytree(after.discriminator.params)[0] - before


def test_r1_penalty_adds_its_weighted_gradient_only_on_its_lazy_steps():
  generator, discriminator = TinyGAN.generator, TinyGAN.discriminator
  # Plain SGD with lr 1: the discriminator's update is minus its gradient, linear in the penalty.
  init = jax.jit(lambda root: init_gan_state(generator, discriminator, optax.sgd(1.0),
                                             optax.sgd(1.0), LATENT, SHAPE, root))
  steps = {"plain": make_gan_step(generator, discriminator, LATENT),
           "weight 1": make_gan_step(generator, discriminator, LATENT, r1_weight=1.0),
           "weight 2": make_gan_step(generator, discriminator, LATENT, r1_weight=2.0),
           "weight 1, every 2nd": make_gan_step(generator, discriminator, LATENT, r1_weight=1.0,
                                                r1_every=2)}
  with pytest.raises(ValueError, match="r1_every >= 1"):
    make_gan_step(generator, discriminator, LATENT, r1_weight=1.0, r1_every=0)
  for step_number, lazy_applies in ((4, True), (5, False)):
    state = init(jax.random.PRNGKey(0)).replace(step=jnp.asarray(step_number, jnp.int32))
    u = {name: _discriminator_update(fn, state) for name, fn in steps.items()}
    penalty_part = u["weight 1"] - u["plain"]
    assert np.linalg.norm(penalty_part) > 1e-3 * np.linalg.norm(u["plain"])
    np.testing.assert_allclose(u["weight 2"] - u["plain"], 2 * penalty_part, rtol=1e-3,
                               atol=1e-6)
    if lazy_applies:  # computed on this step and weighted by r1_every
      np.testing.assert_allclose(u["weight 1, every 2nd"], u["weight 2"], rtol=1e-4, atol=1e-6)
    else:
      np.testing.assert_array_equal(u["weight 1, every 2nd"], u["plain"])


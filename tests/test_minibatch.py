import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl_jax.data import DataError, Split, load_dataset, make_dataset
from dl_jax.data.augment import Augmentation, augment_images, image_keys, write_augmented
from dl_jax.diagnostics.gradient_noise import expected_variance_ratio, gradient_noise
from dl_jax.losses import cross_entropy
from experiments import minibatch
from tests.conftest import blobs


def _linear_loss(params, batch):
  logits = batch["x"] @ params["w"] + params["b"]
  return jnp.mean(cross_entropy(logits, batch["y"]))


def _linear_problem(n=48):
  x, y = blobs(n)
  params = {"w": jnp.asarray(np.random.default_rng(0).normal(0, 0.1, (6, 3)), jnp.float32),
            "b": jnp.zeros(3)}
  return Split(x, y), params, jax.jit(jax.grad(_linear_loss))


def test_gradient_noise_is_zero_for_the_full_batch_and_sigma_squared_for_single_examples():
  split, params, grad_fn = _linear_problem()
  n = len(split)
  assert gradient_noise(grad_fn, params, split, n, 1)["variance"] < 1e-10
  # one epoch of single examples visits every example once: the mean is exactly sigma^2
  per_example = jax.vmap(lambda x, y: grad_fn(params, {"x": x[None], "y": y[None]}))(
      jnp.asarray(split.x), jnp.asarray(split.y))
  mean = jax.tree_util.tree_map(lambda g: g.mean(0), per_example)
  sigma2 = float(sum(jnp.sum((g - m) ** 2) / n for g, m in zip(
      jax.tree_util.tree_leaves(per_example), jax.tree_util.tree_leaves(mean))))
  noise = gradient_noise(grad_fn, params, split, 1, n)
  assert noise["variance"] == pytest.approx(sigma2, rel=1e-4)
  # and a batch of 8, averaged over many seeded epochs, follows the (N - b) / (b (N - 1)) law
  estimates = [gradient_noise(grad_fn, params, split, 8, n // 8, seed=s)["variance"]
               for s in range(40)]
  assert np.mean(estimates) == pytest.approx(expected_variance_ratio(8, n) * sigma2, rel=0.15)
  assert expected_variance_ratio(n, n) == 0 and expected_variance_ratio(1, n) == 1


def _digits(n=30):
  rng = np.random.default_rng(0)
  x = (rng.random((n, 28, 28, 1)) > 0.7).astype(np.float32)
  y = (np.arange(n) % 10).astype(np.int32)
  return make_dataset("toy_digits", "test", Split(x, y), Split(x[:10], y[:10]), 10)


def test_augmentation_stays_in_range_and_depends_only_on_seed_and_index(tmp_path):
  images = jnp.asarray(_digits().train.x[:4])
  keys = image_keys(3, np.arange(4))
  out = augment_images(images, keys, Augmentation())
  assert out.shape == images.shape and float(out.min()) >= 0 and float(out.max()) <= 1
  assert not np.allclose(out, images)  # it moved the pixels
  np.testing.assert_array_equal(augment_images(images[2:3], keys[2:3], Augmentation()), out[2:3])
  # no shift, rotation or distortion: the image comes back
  identity = Augmentation(max_shift=0, max_rotation=0, elastic_alpha=0)
  np.testing.assert_allclose(augment_images(images, keys, identity), images, atol=1e-5)
  with pytest.raises(ValueError, match="NHWC"):
    augment_images(images[..., 0], keys, Augmentation())


def test_augmented_set_is_streamed_the_same_in_any_chunks_and_reused(tmp_path):
  dataset = _digits()
  a = write_augmented(dataset, str(tmp_path / "a"), 70, seed=1, chunk=16)
  b = write_augmented(dataset, str(tmp_path / "b"), 70, seed=1, chunk=25)
  xa, xb = (np.load(os.path.join(d, "x_train.npy")) for d in (a, b))
  np.testing.assert_array_equal(xa, xb)
  assert xa.shape == (70, 28, 28, 1) and xa.dtype == np.float32
  labels = np.load(os.path.join(a, "y_train.npy"))
  assert np.all(np.bincount(labels[:30], minlength=10) == 3)  # each example once per 30 images
  loaded = load_dataset(a)
  assert isinstance(loaded.train.x, np.memmap) and len(loaded.train) == 70
  stamp = os.path.getmtime(os.path.join(a, "x_train.npy"))
  write_augmented(dataset, a, 70, seed=1)  # same manifest: reused, not rewritten
  assert os.path.getmtime(os.path.join(a, "x_train.npy")) == stamp
  with pytest.raises(DataError, match="already holds another augmented set"):
    write_augmented(dataset, a, 70, seed=2)


def test_loading_fails_under_the_cap_while_a_memory_map_reads_it(tmp_path):
  path = str(tmp_path / "big.npy")
  np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(64 * 2**20,))[:10] = 7
  cap = 160 * 2**20  # above numpy's own needs, below the 256 MiB array
  whole = minibatch.run_capped(["-c", "import numpy, sys; numpy.load(sys.argv[1])", path], cap,
                               str(tmp_path / "whole.json"))
  assert whole["returncode"] != 0 and "Unable to allocate" in whole["error"]
  mapped = minibatch.run_capped(
      ["-c", "import numpy, sys; assert numpy.load(sys.argv[1], mmap_mode='r')[:10].sum() == 70",
       path], cap, str(tmp_path / "mapped.json"))
  assert mapped["returncode"] == 0 and 0 < mapped["peak_rss_bytes"] < cap


def test_smoke_config_runs_both_parts_end_to_end(smoke_stage):
  config, results, tmp_path = smoke_stage("minibatch")
  assert config == minibatch.smoke_config()
  sweep = results["sweep"]["mnist1d"]
  assert sorted(sweep["runs"], key=int) == ["32", str(sweep["num_train"])]
  for r in sweep["runs"].values():
    assert len(r["test_accuracy"]) == 2 and len(r["test_accuracy"][0]) == 2  # epochs x seeds
    assert r["train_seconds"][0] < r["train_seconds"][1] and r["step_memory_bytes"] > 0
  assert sweep["runs"][str(sweep["num_train"])]["gradient_noise"]["variance"] < 1e-8
  assert sweep["runs"]["32"]["gradient_noise"]["variance"] > 0
  ooc = results["out_of_core"]
  assert ooc["augmented"]["returncode"] == 0 and ooc["plain"]["returncode"] == 0
  assert 0 < ooc["augmented"]["results"]["test"]["accuracy"] <= 1
  assert os.path.exists(tmp_path / "plots" / "sweep_mnist1d.png")
  assert "Out of core" in (tmp_path / "results.md").read_text()
  assert json.load(open(tmp_path / "config.json"))["epochs"] == 2


def test_out_of_core_runs_again_in_the_same_workdir(tmp_path):
  config = dataclasses.replace(minibatch.smoke_config(), parts=("out_of_core",))
  first, again = (minibatch.EXPERIMENT.execute(config, str(tmp_path))["out_of_core"] for _ in range(2))
  for name in ("augmented", "plain"):
    assert again[name]["results"]["steps_per_sec"] > 0
    assert again[name]["results"]["test"] == first[name]["results"]["test"]

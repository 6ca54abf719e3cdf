import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl_jax.data import load_dataset
from dl_jax.diagnostics import first_last_ratio, kernel_norms, layer_gradient_norms
from dl_jax.initializers import INITIALIZERS, get_initializer
from dl_jax.losses import cross_entropy
from dl_jax.models import MLP, make_model
from dl_jax.train import create_train_state
from experiments import activations
from experiments.reports.activations import _find


def _linear_net_params(scale: float = 1.0):
  """x -> x W1 -> (x W1) W2 with W1 = diag(1, 2), W2 = [1, 1]^T, zero biases."""
  return {"Dense_0": {"kernel": scale * jnp.array([[1.0, 0.0], [0.0, 2.0]]), "bias": jnp.zeros(2)},
          "Dense_1": {"kernel": scale * jnp.array([[1.0], [1.0]]), "bias": jnp.zeros(1)}}


def _half_squared_output(params, x):
  model = MLP(widths=(2,), num_outputs=1, activation="identity")
  return 0.5 * jnp.sum(model.apply({"params": params}, x) ** 2)


def test_gradient_norms_of_a_linear_net_match_the_hand_computation():
  # x = [1, 2]: h = x W1 = [1, 4], y = h W2 = 5, loss = y^2 / 2, dloss/dy = 5.
  # dW2 = h^T y = [5, 20]^T -> norm sqrt(425); dW1 = x^T (y W2^T) = [[5, 5], [10, 10]] -> sqrt(250).
  x = jnp.array([[1.0, 2.0]])
  norms = layer_gradient_norms(_half_squared_output, _linear_net_params(), x)
  np.testing.assert_allclose(norms, [np.sqrt(250.0), np.sqrt(425.0)], rtol=1e-6)
  np.testing.assert_allclose(first_last_ratio(norms), np.sqrt(250 / 425), rtol=1e-6)


def test_gradient_norms_jit_and_vmap_over_stacked_params():
  # Doubling both kernels makes y 4x larger and each layer's input or back-signal 2x: gradients 8x.
  stacked = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), _linear_net_params(),
                                   _linear_net_params(2.0))
  norms = jax.jit(jax.vmap(lambda p: layer_gradient_norms(_half_squared_output, p,
                                                          jnp.array([[1.0, 2.0]]))))(stacked)
  np.testing.assert_allclose(norms, [[250 ** 0.5, 425 ** 0.5], [8 * 250 ** 0.5, 8 * 425 ** 0.5]],
                             rtol=1e-6)
  np.testing.assert_allclose(first_last_ratio(norms), [(250 / 425) ** 0.5] * 2, rtol=1e-6)


def test_layers_come_in_numeric_order():
  # jax orders dict keys as strings (Dense_10 before Dense_2); layers must not be.
  tree = {f"Dense_{i}": {"kernel": jnp.full((1, 1), float(i)), "bias": jnp.ones(1)}
          for i in range(12)}
  np.testing.assert_array_equal(kernel_norms(tree), np.arange(12.0))


@pytest.mark.parametrize("name, std", [("he", np.sqrt(2 / 400)), ("glorot", np.sqrt(2 / 700)),
                                       ("lecun", np.sqrt(1 / 400)), ("naive", 0.01)])
def test_initializer_scales(name, std):
  kernel = get_initializer(name)(jax.random.PRNGKey(0), (400, 300), jnp.float32)
  assert float(jnp.std(kernel)) == pytest.approx(std, rel=0.02)
  assert abs(float(jnp.mean(kernel))) < 0.05 * std


def test_mlp_kernel_init_reaches_every_layer_and_lecun_is_the_old_default():
  x = jnp.zeros((1, 300))
  he = MLP(widths=(200, 200), num_outputs=10, kernel_init="he").init(jax.random.PRNGKey(0), x)
  for layer, fan_in in (("Dense_0", 300), ("Dense_1", 200), ("Dense_2", 200)):
    std = float(jnp.std(he["params"][layer]["kernel"]))
    assert std == pytest.approx(np.sqrt(2 / fan_in), rel=0.05), layer
  default = MLP(widths=(8,), num_outputs=3).init(jax.random.PRNGKey(0), x)
  lecun = make_model("mlp", 3, widths=(8,), activation="relu", dropout_rate=0.0, residual=False,
                     kernel_init="lecun").init(jax.random.PRNGKey(0), x)
  jax.tree_util.tree_map(np.testing.assert_array_equal, default, lecun)


def test_unknown_initializer_lists_valid_names():
  with pytest.raises(ValueError, match="unknown initializer 'xavier'.*'glorot'.*'he'"):
    get_initializer("xavier")
  with pytest.raises(ValueError, match="unknown initializer"):
    MLP(widths=(4,), num_outputs=2, kernel_init="xavier").init(jax.random.PRNGKey(0),
                                                                jnp.zeros((1, 3)))
  assert {"naive", "glorot", "he", "lecun"} <= set(INITIALIZERS)


def _strict_json(path):
  def refuse(constant):
    raise ValueError(f"non-standard JSON constant {constant}")
  with open(path) as f:
    return json.load(f, parse_constant=refuse)


def test_smoke_run_writes_finite_results_tables_and_plots(smoke_stage):
  config, results, tmp_path = smoke_stage("activations")
  assert config == activations.smoke_config()
  saved = _strict_json(tmp_path / "results.json")
  runs = saved["runs"]
  assert len(runs) == len(config.depths) * len(config.activations) * len(config.inits)
  assert saved["probe_steps"] == [0, 10, 20] and saved["seeds"] == [0, 1]
  for r in runs:
    for split in ("train", "val", "test"):
      assert len(r["accuracy"][split]) == 2 and all(0 <= a <= 1 for a in r["accuracy"][split])
    norms = np.array(r["grad_norms"]["20"], dtype=float)
    assert norms.shape == (2, r["depth"]) and np.all(np.isfinite(norms))
    assert r["gap"]["train_test"] == pytest.approx(
        np.subtract(r["accuracy"]["train"], r["accuracy"]["test"]).tolist())
  report = (tmp_path / "results.md").read_text()
  assert "| mnist1d | sigmoid | he |" in report and "## mnist1d: test accuracy" in report
  names = ["accuracy_mnist1d.png", "gradient_norms_mnist1d.png"]
  assert sorted(os.path.basename(p) for p in results["plots"]) == names
  for name in names:
    assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

  # Stacking init x seed keeps each model in its place: the recorded step-0 gradients of
  # (depth 4, relu, he, seed 1) are those of that model built and measured on its own.
  dataset = load_dataset("mnist1d", config.val_fraction, val_seed=0)
  model = MLP(widths=(16,) * 3, num_outputs=10, activation="relu", kernel_init="he")
  state = create_train_state(model, optax.sgd(0.0), dataset.train.gather([0])["x"], seed=1)
  batch = activations._probe_batch(dataset, config.probe_examples)
  alone = layer_gradient_norms(
      lambda p: jnp.mean(cross_entropy(model.apply({"params": p}, batch["x"]), batch["y"])),
      state.params)
  recorded = _find(runs, "mnist1d", 4, "relu", "he")["grad_norms"]["0"][1]
  np.testing.assert_allclose(recorded, alone, rtol=1e-4)

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl_jax.models import CNN, RNNClassifier, TorchGRUCell, make_model
from dl_jax.models.rnn import CELLS
from dl_jax.train import (classification_loss, count_params, create_train_state,
                          make_train_step)

KEY = jax.random.PRNGKey(0)


def _num_params(model, input_shape):
  """Counted from shapes alone (jax.eval_shape), so the test needs no compilation."""
  variables = jax.eval_shape(model.init, KEY, jnp.zeros((1, *input_shape)))
  return count_params(variables["params"])


def _intermediates(model, variables, x):
  """Each submodule's output, by module name, from one evaluation-mode forward pass."""
  apply = functools.partial(model.apply, capture_intermediates=True, mutable=["intermediates"])
  _, state = apply(variables, x)
  return {name: out["__call__"][0] for name, out in state["intermediates"].items()
          if name != "__call__"}


def test_reference_parameter_counts():
  conv = lambda c_in, c_out, k: c_in * k * c_out + c_out
  assert _num_params(make_model("cnn_mnist1d", 10), (40,)) == 5210 == (
      conv(1, 25, 5) + 2 * conv(25, 25, 3) + 125 * 10 + 10)
  assert _num_params(make_model("cnn_flax_mnist", 10), (28, 28, 1)) == (
      3 * 3 * 1 * 32 + 32 + 3 * 3 * 32 * 64 + 64 + 7 * 7 * 64 * 256 + 256 + 256 * 10 + 10)
  torch_gru_direction = 3 * (6 * 1 + 6 * 6 + 6 + 6)  # W_ih, W_hh, b_ih, b_hh per gate
  assert _num_params(make_model("gru_mnist1d", 10), (40,)) == 5134 == (
      2 * torch_gru_direction + 40 * 12 * 10 + 10)


def test_mnist1d_cnn_lengths_match_pytorch_padding():
  model = make_model("cnn_mnist1d", 10)
  x = jnp.ones((3, 40))
  features = jax.eval_shape(lambda: _intermediates(model, model.init(KEY, x), x))  # shapes only
  # floor((L + 2 * 1 - k) / 2) + 1, as PyTorch's Conv1d(stride=2, padding=1): 40 -> 19 -> 10 -> 5
  assert [features[f"Conv_{i}"].shape for i in range(3)] == [(3, 19, 25), (3, 10, 25), (3, 5, 25)]


@pytest.mark.parametrize("ndim, shape, options", [
    (1, (40,), {"strides": (2, 1), "padding": "VALID", "pool": "max"}),
    (1, (40, 3), {"padding": [(2, 0)], "batch_norm": True, "widths": (16,)}),
    (2, (28, 28, 1), {"pool": "avg", "widths": (16,)}),
    (2, (12, 10, 3), {"strides": 2, "batch_norm": True, "activation": "tanh"}),
])
def test_cnn_shapes_logits_in_evaluation_and_training(ndim, shape, options):
  model = CNN(num_outputs=7, ndim=ndim, channels=(4, 6), kernel_sizes=(3, 3), dropout_rate=0.5,
              **options)
  x = jnp.zeros((5, *shape))
  variables = jax.eval_shape(model.init, KEY, x)
  assert jax.eval_shape(model.apply, variables, x).shape == (5, 7)
  train = functools.partial(model.apply, train=True, mutable=["batch_stats"])
  logits, _ = jax.eval_shape(train, variables, x, rngs={"dropout": KEY})
  assert logits.shape == (5, 7)


def test_batch_norm_updates_statistics_in_training_only():
  model = CNN(num_outputs=3, ndim=1, channels=(4,), kernel_sizes=(3,), batch_norm=True)
  x = 3.0 + jax.random.normal(KEY, (8, 20))
  variables = model.init(KEY, x)
  stats = variables["batch_stats"]
  _, trained = model.apply(variables, x, train=True, mutable=["batch_stats"])
  _, evaluated = model.apply(variables, x, train=False, mutable=["batch_stats"])
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), stats, trained["batch_stats"])
  assert all(jax.tree.leaves(changed))
  jax.tree.map(np.testing.assert_array_equal, stats, evaluated["batch_stats"])


def test_training_core_carries_batch_statistics():
  model = CNN(num_outputs=3, ndim=1, channels=(4,), kernel_sizes=(3,), batch_norm=True)
  x = jax.random.normal(KEY, (6, 20))
  state = create_train_state(model, optax.adam(1e-2), x, seed=0)
  before = jax.tree.map(np.array, state.model_state)
  state, metrics = make_train_step(classification_loss(model))(
      state, {"x": x, "y": jnp.arange(6) % 3})
  assert set(state.model_state) == {"batch_stats"} and np.isfinite(metrics["loss"])
  assert not np.allclose(before["batch_stats"]["BatchNorm_0"]["mean"],
                         state.model_state["batch_stats"]["BatchNorm_0"]["mean"])


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("readout", ["all", "last"])
def test_rnn_logit_shapes(cell, bidirectional, readout):
  model = RNNClassifier(num_outputs=4, cell=cell, hidden_size=5, bidirectional=bidirectional,
                        readout=readout, widths=(8,))
  for x in (jnp.zeros((3, 7, 2)), jnp.zeros((3, 7))):  # [batch, time] gets a feature axis
    variables = jax.eval_shape(model.init, KEY, x)
    assert jax.eval_shape(model.apply, variables, x).shape == (3, 4)
  features = (7 if readout == "all" else 1) * 5 * (2 if bidirectional else 1)
  assert variables["params"]["MLP_0"]["Dense_0"]["kernel"].shape == (features, 8)


def _run_cell(cell, params, x):
  """The cell stepped over time by hand: outputs [batch, time, features]."""
  carry = cell.initialize_carry(KEY, x[:, 0].shape)
  outputs = []
  for t in range(x.shape[1]):
    carry, y = cell.apply({"params": params}, carry, x[:, t])
    outputs.append(y)
  return jnp.stack(outputs, axis=1)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_bidirectional_outputs_are_aligned_in_time(cell):
  model = RNNClassifier(num_outputs=2, cell=cell, hidden_size=3, bidirectional=True, readout="all")
  x = jax.random.normal(KEY, (2, 6, 4))
  variables = model.init(KEY, x)
  outputs = _intermediates(model, variables, x)["Bidirectional_0"]
  layer = variables["params"]["Bidirectional_0"]
  step = CELLS[cell](3)
  forward = _run_cell(step, layer["forward_rnn"]["cell"], x)
  backward = _run_cell(step, layer["backward_rnn"]["cell"], x[:, ::-1])[:, ::-1]
  np.testing.assert_allclose(outputs[..., :3], forward, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(outputs[..., 3:], backward, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_last_readout_reads_the_final_state_of_each_direction(bidirectional):
  model = RNNClassifier(num_outputs=2, cell="lstm", hidden_size=3, bidirectional=bidirectional,
                        readout="last")
  x = jax.random.normal(KEY, (2, 6, 4))
  captured = _intermediates(model, model.init(KEY, x), x)
  outputs = captured["Bidirectional_0" if bidirectional else "RNN_0"]
  expected = outputs[:, -1]
  if bidirectional:  # the backward pass ends at step 0
    expected = jnp.concatenate([outputs[:, -1, :3], outputs[:, 0, 3:]], axis=-1)
  np.testing.assert_array_equal(captured["Dropout_0"], expected)


@pytest.mark.parametrize("bidirectional, readout", [(True, "all"), (True, "last"), (False, "last")])
def test_sequence_lengths_ignore_padding(bidirectional, readout):
  model = RNNClassifier(num_outputs=2, cell="gru", hidden_size=3, bidirectional=bidirectional,
                        readout=readout)
  x = jax.random.normal(KEY, (2, 9, 2))
  lengths = jnp.array([5, 9])
  noise = jax.random.normal(jax.random.PRNGKey(1), x.shape)
  repadded = jnp.where(jnp.arange(9)[None, :, None] < lengths[:, None, None], x, noise)
  variables = model.init(KEY, x)
  apply = jax.jit(model.apply)
  logits = apply(variables, x, seq_lengths=lengths)
  np.testing.assert_allclose(apply(variables, repadded, seq_lengths=lengths), logits, atol=1e-6)
  if readout == "last":  # as if the short sequence were alone and unpadded
    np.testing.assert_allclose(apply(variables, x[:1, :5])[0], logits[0], atol=1e-6)


def test_torch_gru_cell_is_flax_gru_cell_plus_redundant_biases():
  x, h = jax.random.normal(KEY, (4, 3)), jax.random.normal(jax.random.PRNGKey(1), (4, 5))
  flax_params = nn.GRUCell(5).init(KEY, h, x)["params"]
  gates = lambda side, leaf: jnp.concatenate(
      [flax_params[side + gate].get(leaf, jnp.zeros(5)) for gate in "rzn"], axis=-1)
  torch_params = {side: {"kernel": gates(prefix, "kernel"), "bias": gates(prefix, "bias")}
                  for side, prefix in (("input", "i"), ("hidden", "h"))}
  assert count_params(torch_params) == count_params(flax_params) + 2 * 5
  np.testing.assert_allclose(TorchGRUCell(5).apply({"params": torch_params}, h, x)[1],
                             nn.GRUCell(5).apply({"params": flax_params}, h, x)[1], rtol=1e-6)
  # initialized as PyTorch's GRU: every weight and bias uniform in +-1/sqrt(hidden)
  for leaf in jax.tree_util.tree_leaves(TorchGRUCell(5).init(KEY, h, x)["params"]):
    assert float(jnp.abs(leaf).max()) <= 1 / np.sqrt(5) and float(jnp.abs(leaf).max()) > 0.35


def test_generic_entries_take_the_options_they_declare():
  cnn = make_model("cnn", 5, ndim=1, channels=[3], kernel_sizes=[3], widths=[8], residual=True)
  rnn = make_model("rnn", 5, cell="simple", hidden_size=4, widths=[8], residual=True)
  assert (cnn.ndim, cnn.channels, cnn.widths) == (1, (3,), (8,))
  assert (rnn.cell, rnn.hidden_size, rnn.widths) == ("simple", 4, (8,))


def test_bad_inputs_and_options_get_a_sentence():
  images = CNN(num_outputs=2, ndim=2)
  with pytest.raises(ValueError, match=r"a CNN with ndim=2 expects images \[batch, height, width, "
                                       r"channels\]; got an array of shape \(2, 28, 28\)"):
    images.init(KEY, jnp.zeros((2, 28, 28)))
  with pytest.raises(ValueError, match=r"ndim=1 expects signals \[batch, length\] or"):
    CNN(num_outputs=2, ndim=1).init(KEY, jnp.zeros((2, 8, 8, 1)))
  with pytest.raises(ValueError, match=r"expects sequences \[batch, time\] or \[batch, time, "
                                       r"features\]; got an array of shape \(2,\)"):
    RNNClassifier(num_outputs=2).init(KEY, jnp.zeros((2,)))
  with pytest.raises(ValueError, match="one kernel size and stride per conv layer"):
    CNN(num_outputs=2, channels=(4, 4), kernel_sizes=(3,))
  with pytest.raises(ValueError, match="unknown pool 'min'"):
    CNN(num_outputs=2, pool="min")
  with pytest.raises(ValueError, match="ndim must be 1 .* or 2"):
    CNN(num_outputs=2, ndim=3)
  with pytest.raises(ValueError, match=r"unknown cell 'transformer'; choose one of \['gru'"):
    RNNClassifier(num_outputs=2, cell="transformer")
  with pytest.raises(ValueError, match="unknown readout 'mean'"):
    RNNClassifier(num_outputs=2, readout="mean")

"""A multilayer perceptron: flatten, hidden Dense layers with an activation and dropout, a head."""

from typing import Sequence

import flax.linen as nn
import jax

from dl_jax.activations import get_activation
from dl_jax.initializers import get_initializer
from dl_jax.models.dropconnect import DropConnectDense
from dl_jax.models.dropout import make_dropout, require_rng


class MLP(nn.Module):
  """Dense(widths[0]) -> act -> dropout -> ... -> Dense(num_outputs).

  `residual=True` adds a hidden layer's input to its output wherever the widths match (the MNIST-1D
  paper's MLP: 40 -> 100 -> 100 (+skip) -> 10, 15,210 parameters). Dropout in training mode needs
  `rngs={'dropout': key}`; without it the model raises an error, never uses a silent fixed mask.
  `dropout_kind` is 'bernoulli' (nn.Dropout) or 'gaussian' (dl_jax.models.dropout).
  `dropconnect_rate` > 0 makes every layer that reads hidden units (all but the first: the
  weights that dropout's masks would cut) a DropConnectDense, which needs `rngs={'dropconnect':
  key}` in training; parameter names and shapes stay those of the plain MLP (Dense_0 ... Dense_n).
  `kernel_init` names every Dense kernel's initializer (dl_jax.initializers); biases start at 0.
  Each hidden layer's activations are sown into the 'intermediates' collection (for activation
  penalties and statistics); `apply(..., mutable=['intermediates'])` returns them.
  """

  widths: Sequence[int]
  num_outputs: int
  activation: str = "relu"
  dropout_rate: float = 0.0
  residual: bool = False
  kernel_init: str = "lecun"
  dropout_kind: str = "bernoulli"
  dropconnect_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    act = get_activation(self.activation)
    if train and self.dropout_rate > 0:
      require_rng(self, "dropout")
    h = x.reshape(x.shape[0], -1)
    for index, width in enumerate(self.widths):
      out = act(self._dense(index, width, train)(h))
      self.sow("intermediates", "activations", out)  # kept only when 'intermediates' is mutable
      h = h + out if self.residual and h.shape[-1] == width else out
      h = make_dropout(self.dropout_kind, self.dropout_rate, deterministic=not train)(h)
    return self._dense(len(self.widths), self.num_outputs, train)(h)

  def _dense(self, index: int, features: int, train: bool):
    """Layer `index` as a callable on its input; named Dense_<index> whichever kind it is."""
    init, name = get_initializer(self.kernel_init), f"Dense_{index}"
    if index == 0 or self.dropconnect_rate == 0:
      return nn.Dense(features, kernel_init=init, name=name)
    layer = DropConnectDense(features, self.dropconnect_rate, kernel_init=init, name=name)
    return lambda h: layer(h, deterministic=not train)

"""A multilayer perceptron: flatten, hidden Dense layers with an activation and dropout, a head."""

from typing import Sequence

import flax.linen as nn
import jax

from dl_jax.activations import get_activation
from dl_jax.initializers import get_initializer


class MLP(nn.Module):
  """Dense(widths[0]) -> act -> dropout -> ... -> Dense(num_outputs).

  `residual=True` adds a hidden layer's input to its output wherever the widths match (the MNIST-1D
  paper's MLP: 40 -> 100 -> 100 (+skip) -> 10, 15,210 parameters). Dropout in training mode needs
  `rngs={'dropout': key}`; Flax raises an error without it, never a silent fixed mask.
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

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    act = get_activation(self.activation)
    init = get_initializer(self.kernel_init)
    h = x.reshape(x.shape[0], -1)
    for width in self.widths:
      out = act(nn.Dense(width, kernel_init=init)(h))
      self.sow("intermediates", "activations", out)  # kept only when 'intermediates' is mutable
      h = h + out if self.residual and h.shape[-1] == width else out
      h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return nn.Dense(self.num_outputs, kernel_init=init)(h)

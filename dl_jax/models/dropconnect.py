"""DropConnect (Wan et al. 2013): a Dense layer whose weights, not units, are dropped in training.

Each training call draws a fresh Bernoulli mask over the kernel from the 'dropconnect' RNG stream
and scales the kept weights by 1 / (1 - rate) ("inverted" DropConnect). The expected training
output of the layer is then exactly x W + b, which is what inference computes. The mask is drawn
once per call and shared by the examples of the batch: a per-example mask (as in Wan et al.) costs
a [batch, in, out] tensor per layer and step. The bias is never dropped.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.models.dropout import check_rate, require_rng


class DropConnectDense(nn.Module):
  """Dense(features) with DropConnect at `rate`; parameters 'kernel' [in, features] and 'bias',
  the same names and shapes as nn.Dense, so penalties, max-norm and pruning treat it alike."""

  features: int
  rate: float = 0.5
  deterministic: bool | None = None
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
  rng_collection: str = "dropconnect"

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool | None = None) -> jax.Array:
    check_rate(self.rate, "DropConnect")
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
    if not deterministic and self.rate > 0.0:
      require_rng(self, self.rng_collection)
      keep = jax.random.bernoulli(self.make_rng(self.rng_collection), 1.0 - self.rate,
                                  kernel.shape)
      kernel = jnp.where(keep, kernel / (1.0 - self.rate), 0.0)
    return x @ kernel + bias

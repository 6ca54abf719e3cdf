"""Dropout variants: Bernoulli (flax's nn.Dropout) and Gaussian, chosen by name.

Gaussian dropout (Srivastava et al. 2014, section 10) multiplies each activation by noise drawn
from N(1, rate / (1 - rate)): the same mean and variance as inverted Bernoulli dropout at `rate`,
but no activation is ever zeroed, so no unit is silenced for a whole step.
"""

import flax.errors
import flax.linen as nn
import jax
import jax.numpy as jnp

DROPOUT_KINDS = ("bernoulli", "gaussian")


def require_rng(module: nn.Module, collection: str) -> None:
  """Raises unless `module` was applied with rngs={collection: key}.

  Flax's make_rng silently falls back to the 'params' stream; a stochastic layer must instead
  fail, never draw its masks from a key that stays the same every step.
  """
  if not module.has_rng(collection):
    raise flax.errors.InvalidRngError(
        f"{type(module).__name__} in training mode needs a {collection!r} key: apply the model "
        f"with rngs={{'{collection}': key}} (a fresh key every step), or with train=False.")


def check_rate(rate: float, what: str) -> None:
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"{what} rate must be in [0, 1) (the fraction dropped), got {rate}.")


class GaussianDropout(nn.Module):
  """x * N(1, rate / (1 - rate)) in training mode, x unchanged otherwise; key from 'dropout'."""

  rate: float
  deterministic: bool | None = None
  rng_collection: str = "dropout"

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool | None = None) -> jax.Array:
    check_rate(self.rate, "Gaussian dropout")
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    if deterministic or self.rate == 0.0:
      return x
    require_rng(self, self.rng_collection)
    std = jnp.sqrt(self.rate / (1.0 - self.rate)).astype(x.dtype)
    noise = jax.random.normal(self.make_rng(self.rng_collection), x.shape, x.dtype)
    return x * (1.0 + std * noise)


def make_dropout(kind: str, rate: float, deterministic: bool) -> nn.Module:
  """The dropout layer `kind` ('bernoulli' or 'gaussian'); both draw from the 'dropout' stream."""
  check_rate(rate, f"{kind} dropout")
  if kind == "bernoulli":
    return nn.Dropout(rate, deterministic=deterministic)
  if kind == "gaussian":
    return GaussianDropout(rate, deterministic=deterministic)
  raise ValueError(f"unknown dropout kind {kind!r}; choose one of {list(DROPOUT_KINDS)}.")

"""Sparsity statistics: the fraction of weights (per layer, overall) and of activations that are
exactly zero."""

import jax
import jax.numpy as jnp
import numpy as np

from dl_jax.regularizers import KERNELS, named_weights, sown_activations


def weight_sparsity(params, pattern: str = KERNELS) -> dict:
  """{'layers': {path: zero fraction}, 'overall': zero fraction over every selected weight,
  'zeros', 'size'} for one (unstacked) params tree; biases are not counted by default."""
  weights = {name: np.asarray(leaf) for name, leaf in named_weights(params, pattern).items()}
  zeros = {name: int(np.sum(leaf == 0)) for name, leaf in weights.items()}
  size = sum(leaf.size for leaf in weights.values())
  return {"layers": {name: zeros[name] / leaf.size for name, leaf in weights.items()},
          "overall": sum(zeros.values()) / size, "zeros": sum(zeros.values()), "size": size}


def _zero_fraction_one(example_activations: list[jax.Array]) -> jax.Array:
  zeros = sum(jnp.sum(a == 0) for a in example_activations)
  return zeros / sum(a.size for a in example_activations)


def zero_activation_fraction(intermediates) -> jax.Array:
  """Per example [batch]: the fraction of all sown hidden activations that are exactly zero."""
  return jax.vmap(_zero_fraction_one)(sown_activations(intermediates))

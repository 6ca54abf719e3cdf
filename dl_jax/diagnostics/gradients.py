"""Per-layer gradient norms: where the learning signal vanishes (or explodes) on its way down.

Layers are the modules that own a 'kernel' (Dense, Conv), ordered input first by their path with
numbers compared as numbers, so Dense_2 comes before Dense_10 (jax sorts dict keys as strings).
Everything is traceable: jit it, and vmap it over stacked parameters (one model per seed).
"""

import re
from typing import Callable

import jax
import jax.numpy as jnp


def _layer_order(path) -> tuple:
  """Sort key of a parameter path: 'Dense_10' -> ('Dense_', 10, '') so numbers sort as numbers."""
  text = jax.tree_util.keystr(path)
  return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def kernel_norms(tree) -> jax.Array:
  """Frobenius norm of every 'kernel' leaf of `tree` (params or grads), input layer first: [L]."""
  kernels = [(path, leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
             if getattr(path[-1], "key", None) == "kernel"]
  if not kernels:
    raise ValueError("no 'kernel' parameters found; expected Dense or Conv layers")
  kernels.sort(key=lambda item: _layer_order(item[0]))
  return jnp.stack([jnp.sqrt(jnp.sum(jnp.square(leaf))) for _, leaf in kernels])


def layer_gradient_norms(loss_fn: Callable[..., jax.Array], params, *args) -> jax.Array:
  """Norm of d loss_fn(params, *args) / d kernel for each layer, input layer first: [L]."""
  return kernel_norms(jax.grad(loss_fn)(params, *args))


def first_last_ratio(norms: jax.Array) -> jax.Array:
  """First-layer over last-layer gradient norm (last axis): << 1 means vanishing gradients."""
  return norms[..., 0] / norms[..., -1]

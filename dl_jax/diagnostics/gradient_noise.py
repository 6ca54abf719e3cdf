"""Gradient noise: how far mini-batch gradients scatter around the full-batch gradient.

For batches of b examples drawn without replacement from N, with per-example gradients g_i and
their mean g, the expected squared distance is

    E ||g_b - g||^2 = (N - b) / (b (N - 1)) * sigma^2,   sigma^2 = mean_i ||g_i - g||^2,

so it falls as 1/b and reaches 0 at the full batch: the noise that small batches trade for cheap
steps (and, some argue, for better generalization).
"""

from typing import Callable

import jax
import numpy as np
import optax

from dl_jax.data import BatchIterator, Split

GradFn = Callable[..., object]
"""grad_fn(params, batch) -> gradient pytree of the batch's mean loss."""


def full_gradient(grad_fn: GradFn, params, split: Split, chunk: int = 1000):
  """The gradient of the mean loss over the whole split, computed chunk by chunk."""
  total, count = None, 0
  for start in range(0, len(split), chunk):
    positions = np.arange(start, min(start + chunk, len(split)))
    grads = grad_fn(params, split.gather(positions))
    weighted = jax.tree_util.tree_map(lambda g: g * len(positions), grads)
    total = weighted if total is None else jax.tree_util.tree_map(np.add, total, weighted)
    count += len(positions)
  return jax.tree_util.tree_map(lambda g: g / count, total)


def gradient_noise(grad_fn: GradFn, params, split: Split, batch_size: int, num_batches: int,
                   seed: int = 0) -> dict[str, float]:
  """Mean squared distance of `num_batches` mini-batch gradients (one seeded epoch order, so
  batches within an epoch share no example) from the full-batch gradient, and that distance
  relative to the full gradient's squared norm (above 1: the noise outweighs the signal)."""
  full = full_gradient(grad_fn, params, split)
  batches = BatchIterator(split, batch_size, seed)
  distances = [float(optax.tree.norm(jax.tree_util.tree_map(
      lambda a, b: a - b, grad_fn(params, next(batches)), full), squared=True))
      for _ in range(num_batches)]
  signal = float(optax.tree.norm(full, squared=True))
  variance = float(np.mean(distances))
  return {"variance": variance, "relative_variance": variance / signal,
          "full_gradient_norm": signal ** 0.5, "batch_size": batch_size,
          "num_batches": num_batches}


def expected_variance_ratio(batch_size: int, num_examples: int) -> float:
  """(N - b) / (b (N - 1)): the variance of a b-example batch gradient over sigma^2."""
  return (num_examples - batch_size) / (batch_size * (num_examples - 1))

"""Pure losses and metrics. Each is written for one example and vmapped over the batch."""

import jax
import jax.numpy as jnp


def _cross_entropy_one(logits: jax.Array, label: jax.Array) -> jax.Array:
  return jax.nn.logsumexp(logits) - logits[label]


def _squared_error_one(prediction: jax.Array, target: jax.Array) -> jax.Array:
  return jnp.sum((prediction - target) ** 2)


def _correct_one(logits: jax.Array, label: jax.Array) -> jax.Array:
  return (jnp.argmax(logits) == label).astype(jnp.float32)


cross_entropy = jax.vmap(_cross_entropy_one)
"""Per-example softmax cross-entropy: logits [B, C], integer labels [B] -> [B]."""

squared_error = jax.vmap(_squared_error_one)
"""Per-example squared error summed over outputs: [B, ...] x [B, ...] -> [B] (mean of it is MSE)."""

correct = jax.vmap(_correct_one)
"""Per-example 0/1 correctness of the argmax: logits [B, C], labels [B] -> [B]."""


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean squared error over the batch (per example, summed over outputs)."""
  return jnp.mean(squared_error(predictions, targets))


def l2_penalty(params) -> jax.Array:
  """0.5 * sum of squared weights over Dense/Conv kernels; biases are not penalised."""
  leaves = jax.tree_util.tree_leaves_with_path(params)
  kernels = [leaf for path, leaf in leaves if getattr(path[-1], "key", None) == "kernel"]
  return 0.5 * sum(jnp.sum(k ** 2) for k in kernels)

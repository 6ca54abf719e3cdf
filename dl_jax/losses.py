"""Pure losses and metrics. Each is written for one example and vmapped over the batch.

Weight and activation penalties (L1, L2, elastic net, activation L1) live in dl_jax.regularizers.
"""

import jax
import jax.numpy as jnp


def _cross_entropy_one(logits: jax.Array, label: jax.Array) -> jax.Array:
  return jax.nn.logsumexp(logits) - logits[label]


def _squared_error_one(prediction: jax.Array, target: jax.Array) -> jax.Array:
  return jnp.sum((prediction - target) ** 2)


def _one_hot_squared_error_one(outputs: jax.Array, label: jax.Array) -> jax.Array:
  return _squared_error_one(outputs, jax.nn.one_hot(label, outputs.shape[-1]))


def _huber_one(prediction: jax.Array, target: jax.Array, delta: float) -> jax.Array:
  """Quadratic (r^2 / 2) for |r| <= delta, linear (delta (|r| - delta / 2)) beyond: an outlier's
  gradient is capped at delta instead of growing with its error."""
  r = jnp.abs(prediction - target)
  return jnp.sum(jnp.where(r <= delta, 0.5 * r ** 2, delta * (r - 0.5 * delta)))


def _multiclass_hinge_one(scores: jax.Array, label: jax.Array, margin: float) -> jax.Array:
  """Crammer-Singer hinge: max(0, margin + max_{j != y} s_j - s_y); zero once the true class
  wins by the margin, so well-classified examples stop pulling on the weights."""
  rival = jnp.max(jnp.where(jnp.arange(scores.shape[-1]) == label, -jnp.inf, scores))
  return jnp.maximum(0.0, margin + rival - scores[label])


def _correct_one(logits: jax.Array, label: jax.Array) -> jax.Array:
  return (jnp.argmax(logits) == label).astype(jnp.float32)


cross_entropy = jax.vmap(_cross_entropy_one)
"""Per-example softmax cross-entropy: logits [B, C], integer labels [B] -> [B]."""

squared_error = jax.vmap(_squared_error_one)
"""Per-example squared error summed over outputs: [B, ...] x [B, ...] -> [B] (mean of it is MSE)."""

one_hot_squared_error = jax.vmap(_one_hot_squared_error_one)
"""Per-example squared error of outputs [B, C] against one-hot integer labels [B] -> [B]."""

correct = jax.vmap(_correct_one)
"""Per-example 0/1 correctness of the argmax: logits [B, C], labels [B] -> [B]."""


def huber(predictions: jax.Array, targets: jax.Array, delta: float = 1.0) -> jax.Array:
  """Per-example Huber loss summed over outputs: [B, ...] x [B, ...] -> [B]."""
  if delta <= 0:
    raise ValueError(f"Huber delta must be positive, got {delta}")
  return jax.vmap(_huber_one, in_axes=(0, 0, None))(predictions, targets, delta)


def multiclass_hinge(scores: jax.Array, labels: jax.Array, margin: float = 1.0) -> jax.Array:
  """Per-example multiclass hinge loss: scores [B, C], integer labels [B] -> [B]."""
  if scores.ndim != 2 or scores.shape[-1] < 2:
    raise ValueError(f"hinge needs scores of shape [batch, classes >= 2], got {scores.shape}")
  return jax.vmap(_multiclass_hinge_one, in_axes=(0, 0, None))(scores, labels, margin)


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean squared error over the batch (per example, summed over outputs)."""
  return jnp.mean(squared_error(predictions, targets))

"""Metric-learning losses on embeddings: contrastive (pairs) and triplet. Per example, vmapped.

They train an encoder so that distances between embeddings mean something: small for two inputs of
one class, at least a margin for two of different classes. A distance, unlike a classifier's
logits, carries over to classes never seen in training (one-shot learning, verification).
"""

import jax
import jax.numpy as jnp

_TINY = 1e-12  # squared distances below this count as this: sqrt's gradient stays finite at 0


def squared_distance(a: jax.Array, b: jax.Array) -> jax.Array:
  """Squared Euclidean distance between two embeddings [D] -> []."""
  return jnp.sum((a - b) ** 2)


def distance(a: jax.Array, b: jax.Array) -> jax.Array:
  """Euclidean distance [D] x [D] -> [], with a finite gradient (zero) when a == b."""
  return jnp.sqrt(jnp.maximum(squared_distance(a, b), _TINY))


def _contrastive_one(a: jax.Array, b: jax.Array, same: jax.Array, margin: float) -> jax.Array:
  """Hadsell, Chopra & LeCun 2006: d^2 / 2 for a same-class pair, max(0, margin - d)^2 / 2 for a
  different-class one (pushed apart only while closer than the margin)."""
  pull = 0.5 * squared_distance(a, b)
  push = 0.5 * jnp.maximum(margin - distance(a, b), 0.0) ** 2
  return jnp.where(same, pull, push)


def _triplet_one(anchor: jax.Array, positive: jax.Array, negative: jax.Array,
                 margin: float) -> jax.Array:
  """Schroff, Kalenichenko & Philbin 2015 (FaceNet): max(0, |a-p|^2 - |a-n|^2 + margin); zero once
  the negative is farther from the anchor than the positive by the margin."""
  return jnp.maximum(squared_distance(anchor, positive) - squared_distance(anchor, negative)
                     + margin, 0.0)


_contrastive = jax.vmap(_contrastive_one, in_axes=(0, 0, 0, None))
_triplet = jax.vmap(_triplet_one, in_axes=(0, 0, 0, None))
pair_distances = jax.vmap(distance)
"""Per-pair Euclidean distances: [B, D] x [B, D] -> [B]."""


def contrastive_loss(a: jax.Array, b: jax.Array, same: jax.Array, margin: float = 1.0):
  """Per-pair contrastive loss: embeddings [B, D] x [B, D], `same` [B] (bool or 0/1) -> [B]."""
  _check_embeddings(a, b)
  if same.shape != a.shape[:1]:
    raise ValueError(f"`same` has shape {same.shape}; expected one flag per pair, shape "
                     f"({a.shape[0]},).")
  _check_margin(margin)
  return _contrastive(a, b, same.astype(bool), margin)


def triplet_loss(anchor: jax.Array, positive: jax.Array, negative: jax.Array,
                 margin: float = 1.0) -> jax.Array:
  """Per-triplet loss: three embedding batches [B, D] -> [B]."""
  _check_embeddings(anchor, positive, negative)
  _check_margin(margin)
  return _triplet(anchor, positive, negative, margin)


def _check_embeddings(*embeddings: jax.Array) -> None:
  shapes = [e.shape for e in embeddings]
  if embeddings[0].ndim != 2 or len(set(shapes)) != 1:
    raise ValueError(f"embeddings have shapes {shapes}; expected equal shapes [batch, dim].")


def _check_margin(margin) -> None:
  if isinstance(margin, (int, float)) and margin <= 0:
    raise ValueError(f"margin must be positive, got {margin}.")

"""The metric-learning objective for a pair encoder: contrastive on pairs or triplet on triplets."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.metric_losses import contrastive_loss, pair_distances, triplet_loss

LOSSES = ("contrastive", "triplet")


def pair_loss(model: nn.Module, loss: str = "contrastive", margin: float = 1.0):
  """loss_fn(params, model_state, batch, rngs) for `make_train_step`, for a `PairEncoder`.

  'contrastive' reads batches {'x_a', 'x_b', 'same'} (dl_jax.data.pairs.PairBatches, kind
  'pairs'); 'triplet' reads {'x_a', 'x_p', 'x_n'}: the anchor goes through branch a, positive and
  negative through branch b (one encoder when shared). Metrics: mean distance of same-class and of
  different-class pairs, the separation the loss is after.
  """
  if loss not in LOSSES:
    raise ValueError(f"unknown metric loss {loss!r}; choose one of {LOSSES}.")

  def loss_fn(params, model_state, batch, rngs):
    if model_state:
      raise ValueError(f"pair_loss supports encoders without mutable state; this one has "
                       f"{sorted(model_state)}.")
    embed = lambda x, branch: model.apply({"params": params}, x, branch, True, rngs=rngs,
                                          method="embed")
    if loss == "contrastive":
      z_a, z_b = embed(batch["x_a"], "a"), embed(batch["x_b"], "b")
      per_pair = contrastive_loss(z_a, z_b, batch["same"], margin)
      same, distances = batch["same"].astype(bool), pair_distances(z_a, z_b)
      positive, negative = _masked_mean(distances, same), _masked_mean(distances, ~same)
    else:
      anchor = embed(batch["x_a"], "a")
      positive_z, negative_z = jnp.split(embed(jnp.concatenate([batch["x_p"], batch["x_n"]]), "b"),
                                         2)
      per_pair = triplet_loss(anchor, positive_z, negative_z, margin)
      positive = jnp.mean(pair_distances(anchor, positive_z))
      negative = jnp.mean(pair_distances(anchor, negative_z))
    metrics = {"same_distance": positive, "different_distance": negative}
    return jnp.mean(per_pair), (metrics, model_state)

  return loss_fn


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1)

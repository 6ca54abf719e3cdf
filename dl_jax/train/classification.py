"""The classification objective: cross-entropy on logits plus optional penalties on the weights
and on the activations the model sows."""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.losses import correct, cross_entropy
from dl_jax.regularizers import l2_penalty
from dl_jax.sparsity import zero_activation_fraction

PenaltyFn = Callable[..., jax.Array]
"""penalty_fn(params, intermediates) -> scalar, e.g. dl_jax.regularizers.Penalties(l1=1e-5)."""


def check_batch(batch: dict) -> None:
  """Runs at trace time (free at run time): a sentence instead of a broadcasting traceback."""
  x, y = batch["x"], batch["y"]
  if y.ndim != 1 or x.shape[0] != y.shape[0]:
    raise ValueError(f"a batch of {x.shape[0]} inputs came with labels of shape {y.shape}; "
                     "expected one integer label per example, shape [batch].")
  if not jnp.issubdtype(y.dtype, jnp.integer):
    raise ValueError(f"labels have dtype {y.dtype}; expected integer class indices.")


def apply_model(model: nn.Module, params, model_state, x, train: bool, rngs=None,
                intermediates: bool = False):
  """(logits, updated model state, sown intermediates) from one pure apply.

  Batch statistics change only in training. With `intermediates=True` the 'intermediates'
  collection (each hidden layer's activations, for activation penalties and statistics) comes
  back; otherwise it is {}.
  """
  variables = {"params": params, **model_state}
  mutable = (list(model_state) if train else []) + (["intermediates"] if intermediates else [])
  if not mutable:
    return model.apply(variables, x, train=train, rngs=rngs), model_state, {}
  logits, updated = model.apply(variables, x, train=train, rngs=rngs, mutable=mutable)
  updated = dict(updated)
  sown = updated.pop("intermediates", {})
  return logits, (updated if train else model_state), sown


def classification_loss(model: nn.Module, l2_weight: float = 0.0,
                        penalty_fn: PenaltyFn | None = None):
  """loss_fn(params, model_state, batch, rngs) for `make_train_step`: mean cross-entropy, plus
  l2_weight * l2_penalty(params), plus penalty_fn(params, intermediates) when one is given (the
  activations it sees come from the same training-mode apply as the logits)."""

  def loss_fn(params, model_state, batch, rngs):
    check_batch(batch)
    logits, new_model_state, sown = apply_model(model, params, model_state, batch["x"], True,
                                                rngs, intermediates=penalty_fn is not None)
    data_loss = jnp.mean(cross_entropy(logits, batch["y"]))
    loss = data_loss + l2_weight * l2_penalty(params) if l2_weight else data_loss
    metrics = {"data_loss": data_loss, "accuracy": jnp.mean(correct(logits, batch["y"]))}
    if penalty_fn is not None:
      metrics["penalty"] = penalty_fn(params, sown)
      loss = loss + metrics["penalty"]
    return loss, (metrics, new_model_state)

  return loss_fn


def classification_metrics(model: nn.Module, zero_activations: bool = False):
  """metrics_fn(params, model_state, batch) -> per-example {'loss', 'accuracy'} (no dropout),
  and with `zero_activations` each example's fraction of hidden activations that are exactly 0."""

  def metrics_fn(params, model_state, batch) -> dict[str, jax.Array]:
    check_batch(batch)
    logits, _, sown = apply_model(model, params, model_state, batch["x"], False,
                                  intermediates=zero_activations)
    metrics = {"loss": cross_entropy(logits, batch["y"]), "accuracy": correct(logits, batch["y"])}
    if zero_activations:
      metrics["zero_activations"] = zero_activation_fraction(sown)
    return metrics

  return metrics_fn

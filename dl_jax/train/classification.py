"""The classification objective: cross-entropy on logits plus an optional L2 penalty on weights."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.losses import correct, cross_entropy, l2_penalty


def check_batch(batch: dict) -> None:
  """Runs at trace time (free at run time): a sentence instead of a broadcasting traceback."""
  x, y = batch["x"], batch["y"]
  if y.ndim != 1 or x.shape[0] != y.shape[0]:
    raise ValueError(f"a batch of {x.shape[0]} inputs came with labels of shape {y.shape}; "
                     "expected one integer label per example, shape [batch].")
  if not jnp.issubdtype(y.dtype, jnp.integer):
    raise ValueError(f"labels have dtype {y.dtype}; expected integer class indices.")


def _apply(model: nn.Module, params, model_state, x, train: bool, rngs=None):
  """Logits and the updated model state (batch statistics change only in training)."""
  variables = {"params": params, **model_state}
  if train and model_state:
    return model.apply(variables, x, train=True, rngs=rngs, mutable=list(model_state))
  return model.apply(variables, x, train=train, rngs=rngs), model_state


def classification_loss(model: nn.Module, l2_weight: float = 0.0):
  """loss_fn(params, model_state, batch, rngs) for `make_train_step`."""

  def loss_fn(params, model_state, batch, rngs):
    check_batch(batch)
    logits, new_model_state = _apply(model, params, model_state, batch["x"], True, rngs)
    data_loss = jnp.mean(cross_entropy(logits, batch["y"]))
    loss = data_loss + l2_weight * l2_penalty(params) if l2_weight else data_loss
    metrics = {"data_loss": data_loss, "accuracy": jnp.mean(correct(logits, batch["y"]))}
    return loss, (metrics, new_model_state)

  return loss_fn


def classification_metrics(model: nn.Module):
  """metrics_fn(params, model_state, batch) -> per-example {'loss', 'accuracy'} (no dropout)."""

  def metrics_fn(params, model_state, batch) -> dict[str, jax.Array]:
    check_batch(batch)
    logits, _ = _apply(model, params, model_state, batch["x"], False)
    return {"loss": cross_entropy(logits, batch["y"]), "accuracy": correct(logits, batch["y"])}

  return metrics_fn

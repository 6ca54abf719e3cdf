"""The sequence-to-sequence objective: token cross-entropy over real (non-padding) target tokens.

A batch is {'x': source tokens [B, Ts], 'y': target tokens [B, Tt]} with y = <bos> ... <eos> <pad>..
The model reads y[:, :-1] (teacher forcing) and predicts y[:, 1:]; padding is never scored.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.losses import cross_entropy


def check_sequence_batch(batch: dict) -> None:
  """Runs at trace time: a sentence instead of a broadcasting traceback."""
  x, y = batch["x"], batch["y"]
  if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
    raise ValueError(f"a batch of sources {x.shape} came with targets {y.shape}; expected "
                     "token ids of shapes [batch, source_len] and [batch, target_len].")
  if not (jnp.issubdtype(x.dtype, jnp.integer) and jnp.issubdtype(y.dtype, jnp.integer)):
    raise ValueError(f"sources and targets have dtypes {x.dtype}, {y.dtype}; expected token ids.")


def _masked_token_loss_one(logits: jax.Array, targets: jax.Array, pad_id: int) -> jax.Array:
  """Mean cross-entropy over one example's real tokens: logits [T, V], targets [T] -> []."""
  real = targets != pad_id
  return jnp.sum(cross_entropy(logits, targets) * real) / jnp.maximum(jnp.sum(real), 1)


def _token_accuracy_one(logits: jax.Array, targets: jax.Array, pad_id: int) -> jax.Array:
  """Fraction of one example's real tokens whose argmax (given the true prefix) is right."""
  real = targets != pad_id
  hits = (jnp.argmax(logits, -1) == targets) & real
  return jnp.sum(hits) / jnp.maximum(jnp.sum(real), 1)


masked_token_loss = jax.vmap(_masked_token_loss_one, in_axes=(0, 0, None))
"""Per-example token cross-entropy ignoring padding: [B, T, V] x [B, T] -> [B]."""

token_accuracy = jax.vmap(_token_accuracy_one, in_axes=(0, 0, None))
"""Per-example teacher-forced token accuracy ignoring padding: [B, T, V] x [B, T] -> [B]."""


def sequence_loss(model: nn.Module, pad_id: int = 0):
  """loss_fn(params, model_state, batch, rngs) for `make_train_step` (teacher forcing)."""

  def loss_fn(params, model_state, batch, rngs):
    check_sequence_batch(batch)
    y = batch["y"]
    logits = model.apply({"params": params, **model_state}, batch["x"], y[:, :-1], train=True,
                         rngs=rngs)
    loss = jnp.mean(masked_token_loss(logits, y[:, 1:], pad_id))
    metrics = {"token_accuracy": jnp.mean(token_accuracy(logits, y[:, 1:], pad_id))}
    return loss, (metrics, model_state)

  return loss_fn


def sequence_metrics(model: nn.Module, pad_id: int = 0):
  """metrics_fn(params, model_state, batch) -> per-example loss, token accuracy and exact match.

  'exact_match' (also 'accuracy', the figure `fit` selects and reports on) is 1 when greedy
  decoding, with no access to the target, reproduces every target token up to and including <eos>.
  """

  def metrics_fn(params, model_state, batch) -> dict[str, jax.Array]:
    check_sequence_batch(batch)
    y = batch["y"]
    variables = {"params": params, **model_state}
    logits = model.apply(variables, batch["x"], y[:, :-1], train=False)
    decoded = model.apply(variables, batch["x"], y.shape[1] - 1, method="greedy_decode")
    exact = jnp.all(decoded == y[:, 1:], axis=-1).astype(jnp.float32)
    return {"loss": masked_token_loss(logits, y[:, 1:], pad_id),
            "token_accuracy": token_accuracy(logits, y[:, 1:], pad_id),
            "exact_match": exact, "accuracy": exact}

  return metrics_fn

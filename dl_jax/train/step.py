"""The training step: gradients of a pure loss, an optax update, and the step's metrics."""

from typing import Any, Callable

import jax
import optax

from dl_jax.train.rng import step_rngs
from dl_jax.train.state import TrainState

LossFn = Callable[..., tuple[jax.Array, tuple[dict[str, jax.Array], Any]]]
"""loss_fn(params, model_state, batch, rngs) -> (loss, (metrics, new_model_state))."""

DEFAULT_STREAMS = ("dropout",)


def train_step_fn(loss_fn: LossFn, streams: tuple[str, ...] = DEFAULT_STREAMS):
  """The un-jitted `train_step(state, batch) -> (new_state, metrics)`, to jit or vmap.

  Keys for the named `streams` come from fold_in(root, step). Metrics: the loss_fn's own, plus
  `loss`, the global gradient norm and the parameter norm after the update.
  """

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    rngs = step_rngs(state.key, state.step, streams)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (metrics, model_state)), grads = grad_fn(state.params, state.model_state, batch, rngs)
    new_state = state.apply_gradients(grads=grads, model_state=model_state)
    return new_state, {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads),
                       "param_norm": optax.tree.norm(new_state.params)}

  return train_step


def make_train_step(loss_fn: LossFn, streams: tuple[str, ...] = DEFAULT_STREAMS):
  """`train_step_fn`, jitted with the state donated (its buffers are reused for the new state)."""
  return jax.jit(train_step_fn(loss_fn, streams), donate_argnums=0)

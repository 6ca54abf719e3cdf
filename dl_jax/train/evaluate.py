"""Deterministic evaluation: per-example metrics summed over fixed-size batches of a split."""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dl_jax.data import Split
from dl_jax.train.state import TrainState


def eval_step_fn(metrics_fn: Callable):
  """The un-jitted `eval_step(params, model_state, batch, weights) -> {name: weighted sum}`.

  Weights are 1 for real examples and 0 for padding, so every batch has the same shape and the
  step compiles once.
  """

  def eval_step(params, model_state, batch, weights):
    per_example = metrics_fn(params, model_state, batch)
    return {name: jnp.sum(values * weights) for name, values in per_example.items()}

  return eval_step


def make_eval_step(metrics_fn: Callable):
  return jax.jit(eval_step_fn(metrics_fn))


def evaluate(eval_step, state: TrainState, split: Split, batch_size: int,
             place: Callable = lambda arrays: arrays) -> dict:
  """Mean of each per-example metric over the whole split: a float, or a list of floats (one per
  model) when `eval_step` is vmapped over stacked models. `place` puts each batch on the devices
  (e.g. `DataParallel.put_replicated` when many processes evaluate together)."""
  totals, batch_size = None, min(batch_size, len(split))
  for start in range(0, len(split), batch_size):
    positions = np.arange(start, min(start + batch_size, len(split)))
    batch, weights = place(_pad(split.gather(positions), batch_size))
    sums = eval_step(state.params, state.model_state, batch, weights)
    totals = sums if totals is None else jax.tree_util.tree_map(jnp.add, totals, sums)
  return {name: (np.asarray(total) / len(split)).tolist() for name, total in totals.items()}


def _pad(batch: dict[str, np.ndarray], size: int):
  real = len(batch["y"])
  weights = np.zeros(size, np.float32)
  weights[:real] = 1.0
  if real == size:
    return batch, weights
  padded = {k: np.concatenate([v, np.zeros((size - real,) + v.shape[1:], v.dtype)])
            for k, v in batch.items()}
  return padded, weights

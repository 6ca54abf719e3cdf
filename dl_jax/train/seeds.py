"""Many seeds in one compiled program: states stacked on a leading seed axis, steps vmapped.

Error bars need several seeds; on a small model one vmapped step over N seeds costs far less than
N steps, because the work per step is too small to keep the machine busy. `fit(..., seeds=...)`
trains such stacked states with the loop every single model uses (checkpoints, resume, the NaN
stop); the helpers here build them and step them by hand where a loop needs more than fit gives.
"""

import functools
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dl_jax.data import BatchGroups, BatchIterator, Split
from dl_jax.train.evaluate import eval_step_fn
from dl_jax.train.state import INIT_COMPILER_OPTIONS, TrainState, init_train_state
from dl_jax.train.step import DEFAULT_STREAMS, LossFn, train_step_fn


def stack_states(states: Sequence[TrainState]) -> TrainState:
  """One TrainState whose every array has a leading axis of len(states)."""
  return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *states)


def unstack_state(stacked: TrainState, index: int) -> TrainState:
  return jax.tree_util.tree_map(lambda leaf: leaf[index], stacked)


def make_seeds_init(model, tx, example_input, compiler_options=INIT_COMPILER_OPTIONS):
  """`init(seeds) -> stacked states`, the states `create_train_state` gives for each seed: one
  compiled, vmapped initialization (for 5 seeds 2-3x quicker than 5 eager ones on this CPU),
  reused for every group of seeds of the same size."""
  example = jax.tree_util.tree_map(jnp.asarray, example_input)
  init = jax.jit(jax.vmap(lambda root: init_train_state(model, tx, example, root)),
                 compiler_options=compiler_options)
  return lambda seeds: init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))


def create_seed_states(model, tx, example_input, seeds: Sequence[int]) -> TrainState:
  return make_seeds_init(model, tx, example_input)(seeds)


def with_hyperparameter(states: TrainState, name: str, values) -> TrainState:
  """Stacked states whose models each train with their own `values[i]` of hyperparameter `name`
  (e.g. a learning-rate sweep in one compiled program). The optimizer must be built with
  `optax.inject_hyperparams`, which keeps its hyperparameters in the optimizer state."""
  opt_state = states.opt_state
  hyperparams = getattr(opt_state, "hyperparams", None)
  if hyperparams is None or name not in hyperparams:
    raise ValueError(f"the optimizer has no injected hyperparameter {name!r}; build it as "
                     f"optax.inject_hyperparams(optax.adam)({name}=...)")
  values = jnp.asarray(values, dtype=hyperparams[name].dtype)
  if values.shape != hyperparams[name].shape:
    raise ValueError(f"{name} needs one value per stacked model, shape "
                     f"{hyperparams[name].shape}; got {values.shape}")
  return states.replace(opt_state=opt_state._replace(hyperparams={**hyperparams, name: values}))


def split_seeds(seeds: Sequence[int], num_groups: int) -> list[list[int]]:
  """`seeds` in `num_groups` contiguous groups of near-equal size (equal sizes share one compiled
  program: 10 seeds in 2 groups of 5 compile once, 5 seeds in 3 + 2 compile twice)."""
  if not 1 <= num_groups <= len(seeds):
    raise ValueError(f"cannot split {len(seeds)} seeds into {num_groups} groups; use 1 to "
                     f"{len(seeds)} groups")
  return [group.tolist() for group in np.array_split(np.asarray(seeds), num_groups)]


def map_seed_groups(fn, groups: Sequence, workers: int) -> list:
  """[fn(group) for group in groups], with up to `workers` groups running at once, one thread each.

  A compiled XLA program releases the GIL while it runs, and one small model's vmapped step leaves
  much of a 2-core CPU idle (MNIST-1D CNN, 10 seeds: 1.5 cores busy); two groups of seeds at once
  keep both cores busy. The groups share only the compiled programs, so each group's models are
  the ones it gives alone (tested).
  """
  with ThreadPoolExecutor(max_workers=workers) as pool:
    return list(pool.map(fn, groups))


def make_seeds_train_step(loss_fn: LossFn, streams: tuple[str, ...] = DEFAULT_STREAMS):
  """`train_step(stacked_state, batch)`: every seed's step at once, jitted and donated."""
  return jax.jit(jax.vmap(train_step_fn(loss_fn, streams)), donate_argnums=0)


def make_seeds_eval_step(metrics_fn):
  """`eval_step` for stacked models; every model sees the same evaluation batch."""
  return stacked_eval_step(eval_step_fn(metrics_fn))


@functools.lru_cache(maxsize=64)
def stacked_train_step(train_step):
  """The single-model `train_step(state, batch)` vmapped over stacked states and batches (fit
  compiles it; cached, so one step gives one program)."""
  return jax.vmap(train_step)


@functools.lru_cache(maxsize=64)
def stacked_eval_step(eval_step):
  """The single-model `eval_step(params, model_state, batch, weights)` over stacked models, every
  model scoring the same batch; jitted, and cached, so one step gives one program."""
  return jax.jit(jax.vmap(eval_step, in_axes=(0, 0, None, None)))


class SeedBatches:
  """One BatchIterator per seed (each seed sees its own order); each batch stacked [seeds, ...]
  by one indexing operation."""

  def __init__(self, split: Split, batch_size: int, seeds: Sequence[int]):
    self.groups = BatchGroups([BatchIterator(split, batch_size, s) for s in seeds],
                              itertools.repeat(1))

  def __next__(self) -> dict[str, np.ndarray]:
    return {k: v[0] for k, v in next(self.groups).items()}

"""Many seeds in one compiled program: states stacked on a leading seed axis, steps vmapped.

Error bars need several seeds; on a small model one vmapped step over N seeds costs far less than
N steps, because the work per step is too small to keep the machine busy.
"""

import functools
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dl_jax.data import BatchIterator, Dataset, Split
from dl_jax.train.evaluate import eval_step_fn, evaluate
from dl_jax.train.fit import NonFiniteError
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


def make_seeds_train_step(loss_fn: LossFn, streams: tuple[str, ...] = DEFAULT_STREAMS,
                          steps_per_call: int = 1, resident_data: bool = False):
  """`train_step(stacked_state, batches)`: every seed's step at once, jitted and donated.

  With `steps_per_call` > 1 one call runs that many steps in a `lax.scan` over batches stacked
  [steps, seeds, batch, ...]: fewer dispatches, the data of those steps resident on the device.
  (Measure it per model: XLA's CPU convolution gradient is far slower inside a scan.)
  With `resident_data` the call is `train_step(stacked_state, positions, data)`: the whole
  training split `data` stays on the device and each step gathers its batch there from integer
  `positions` [(steps,) seeds, batch], so the host sends a few indices instead of the examples.
  """
  step = jax.vmap(train_step_fn(loss_fn, streams))
  if resident_data:
    step = _gathering(step)
  if steps_per_call > 1:
    step = _scanned(step, resident_data)
  return jax.jit(step, donate_argnums=0)


def _gathering(step):
  """step(states, batch) -> step(states, positions, data), the batch gathered on the device."""
  return lambda states, positions, data: step(
      states, jax.tree_util.tree_map(lambda a: a[positions], data))


def _scanned(step, resident_data: bool):
  """`step` run over a leading axis of batches (or of positions) in one lax.scan."""
  if resident_data:
    return lambda states, positions, data: jax.lax.scan(
        lambda s, p: step(s, p, data), states, positions)
  return functools.partial(jax.lax.scan, step)


def make_seeds_eval_step(metrics_fn):
  """`eval_step` for stacked models; every model sees the same evaluation batch."""
  return jax.jit(jax.vmap(eval_step_fn(metrics_fn), in_axes=(0, 0, None, None)))


class SeedBatches:
  """One BatchIterator per seed (each seed sees its own order); batches stacked [seeds, ...], or
  [steps, seeds, ...] for `steps` > 1, read with one indexing operation. With `positions_only`
  it yields just the positions in the split, for a step that gathers on the device."""

  def __init__(self, split: Split, batch_size: int, seeds: Sequence[int], steps: int = 1,
               positions_only: bool = False):
    self.split, self.steps, self.positions_only = split, steps, positions_only
    self.iterators = [BatchIterator(split, batch_size, s) for s in seeds]

  def __next__(self) -> dict[str, np.ndarray] | np.ndarray:
    positions = np.stack([it.next_positions(self.steps) for it in self.iterators], axis=1)
    if self.steps == 1:
      positions = positions[0]
    if self.positions_only:
      return positions.astype(np.int32)
    batch = self.split.gather(positions.reshape(-1))
    return {k: v.reshape(*positions.shape, *v.shape[1:]) for k, v in batch.items()}


def fit_seeds(states: TrainState, train_step, eval_step, dataset: Dataset, seeds: Sequence[int],
              num_steps: int, batch_size: int, eval_every: int, eval_batch_size: int = 1000,
              steps_per_call: int = 1, resident_data: bool = False):
  """Trains stacked `states` (one per seed) for `num_steps`; evaluates every split each
  `eval_every` steps. Returns (states, curves, seconds): curves[split][metric] is a list over
  evaluations of per-seed lists, curves['train_seconds'] the time spent training (compilation
  included, evaluation not) up to each evaluation; `seconds` is the wall time of the whole loop.
  `steps_per_call` and `resident_data` must match the train step's; `steps_per_call` must divide
  `eval_every` and `num_steps`. `resident_data` puts the whole training split on the device
  (for splits that fit there); the seeds then see exactly the batches they would have seen.
  """
  if eval_every % steps_per_call or num_steps % steps_per_call:
    raise ValueError(f"steps_per_call={steps_per_call} must divide eval_every={eval_every} and "
                     f"num_steps={num_steps}")
  batches = SeedBatches(dataset.train, batch_size, seeds, steps_per_call, resident_data)
  data = (jax.device_put(dataset.train.materialize()),) if resident_data else ()
  curves = {"step": [], "train_seconds": []}
  start, evaluating = time.perf_counter(), 0.0
  for step in range(steps_per_call, num_steps + 1, steps_per_call):
    states, metrics = train_step(states, next(batches), *data)
    if step % eval_every == 0 or step == num_steps:
      _check_finite(metrics, step, seeds)
      jax.block_until_ready(states)
      paused = time.perf_counter()
      curves["step"].append(step)
      curves["train_seconds"].append(paused - start - evaluating)
      for name, split in dataset.splits().items():
        for metric, values in evaluate(eval_step, states, split, eval_batch_size).items():
          curves.setdefault(name, {}).setdefault(metric, []).append(values)
      evaluating += time.perf_counter() - paused
  jax.block_until_ready(states)
  return states, curves, time.perf_counter() - start


def _check_finite(metrics: dict, step: int, seeds: Sequence[int]) -> None:
  """Stops on a non-finite loss or gradient norm, naming the (last) step and the seeds."""
  bad = ~np.isfinite(np.asarray(metrics["loss"])) | ~np.isfinite(np.asarray(metrics["grad_norm"]))
  if bad.any():
    which = sorted({seeds[i] for i in np.nonzero(bad.reshape(-1, len(seeds)).any(axis=0))[0]})
    raise NonFiniteError(f"training stopped: non-finite loss or gradient by step {step} for "
                         f"seeds {which}. Lower the learning rate or clip gradients.")

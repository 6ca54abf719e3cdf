"""Many steps per compiled call: how many, the sizes of the calls from a step to the end, and
the scanned train step that runs them."""

import dataclasses
import functools
import math
from typing import Callable, Sequence

import jax
import numpy as np

MAX_CALL_BYTES = 64 * 2**20
"""The most batch data one multi-step call reads at once."""


@dataclasses.dataclass(frozen=True)
class Periodic:
  """A hook fit calls only after steps that are multiples of `every`, and after the last step;
  calls end on those steps, so the steps between still run many per call."""

  every: int
  hook: Callable[[int, object], None]

  def __call__(self, step: int, state) -> None:
    self.hook(step, state)


def tree_bytes(tree) -> int:
  return sum(np.asarray(leaf).nbytes for leaf in jax.tree_util.tree_leaves(tree))


def steps_per_call(config, batch_bytes: int, hooks: Sequence = (), models: int = 1) -> int:
  """Steps per compiled call for a FitConfig: the largest divisor of the logging, evaluation and
  checkpoint intervals (and of Periodic hooks') within `config.max_steps_per_call` and
  MAX_CALL_BYTES, for training batches of `batch_bytes` (one model's) and `models` stacked
  models; 1 when a hook watches every step."""
  if any(not isinstance(hook, Periodic) for hook in hooks):
    return 1
  interval = math.gcd(config.log_every, config.eval_every, config.checkpoint_every,
                      *(hook.every for hook in hooks))
  most = max(min(config.max_steps_per_call, MAX_CALL_BYTES // max(models * batch_bytes, 1)), 1)
  return max(d for d in range(1, min(interval, most) + 1) if interval % d == 0)


def call_sizes(start: int, stop: int, every: int) -> list[int]:
  """Steps of each call from step `start` to `stop`: calls end on the multiples of `every` (where
  the loop logs, evaluates and checkpoints) and at `stop`."""
  sizes, step = [], start
  while step < stop:
    size = min(every - step % every, stop - step)
    sizes.append(size)
    step += size
  return sizes


@functools.lru_cache(maxsize=64)
def scanned(train_step):
  """`run(state, batches) -> (state, metrics)`: `train_step` over the leading axis of `batches`,
  one compiled program per group size, the state donated; metrics stacked [steps, ...].

  A group of one step runs without a loop: XLA:CPU's convolutions leave their fast path inside
  one (a DCGAN step with nn.Conv ran 0.8 steps/s scanned, 16.7 called directly, on the Intel
  Xeon of 2026-12-08), so models with XLA convolutions train at max_steps_per_call=1."""

  def run(state, batches):
    if jax.tree_util.tree_leaves(batches)[0].shape[0] == 1:
      state, metrics = train_step(state, jax.tree_util.tree_map(lambda b: b[0], batches))
      return state, jax.tree_util.tree_map(lambda m: m[None], metrics)
    return jax.lax.scan(train_step, state, batches)

  return jax.jit(run, donate_argnums=0)

"""The train state: params, optimizer state, step, the run's root key, and model state."""

import hashlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from dl_jax.train.rng import stream_key


class TrainState(train_state.TrainState):
  """Flax's TrainState plus `key` (the run's root PRNG key, fixed for the whole run) and
  `model_state` (non-trainable collections such as batch statistics; {} when a model has none)."""

  key: jax.Array
  model_state: Any


def init_train_state(model: nn.Module, tx: optax.GradientTransformation, example_input: jax.Array,
                     root: jax.Array) -> TrainState:
  """A fresh state from the run's root key: pure, so it can be jitted and vmapped over keys.
  `example_input` is one batch, or a tuple of the model's inputs (e.g. source and target)."""
  inputs = example_input if isinstance(example_input, tuple) else (example_input,)
  variables = model.init({"params": stream_key(root, "params")}, *inputs, train=False)
  params = variables.pop("params")
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx, key=root,
                           model_state=dict(variables))


INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
"""The initialization runs once, in microseconds: LLVM's optimizations only cost compile time.
Compiled at level 0 it starts sooner than run eagerly, where every operation is compiled on its
own, and the persistent compilation cache keeps it for the next run. Its values agree with the
eager `init_train_state` to float32 rounding, not bit for bit."""

_compiled_init = jax.jit(init_train_state, static_argnums=(0, 1),
                         compiler_options=INIT_COMPILER_OPTIONS)


def create_train_state(model: nn.Module, tx: optax.GradientTransformation,
                       example_input: jax.Array, seed: int) -> TrainState:
  """Initializes `model` on one example batch with keys derived from `seed`, compiled (one
  program per model, optimizer and input shape)."""
  root = jax.random.PRNGKey(seed)  # raw uint32 key: checkpointable as a plain array
  return _compiled_init(model, tx, jax.tree_util.tree_map(jnp.asarray, example_input), root)


def tree_digest(tree) -> str:
  """SHA-256 of every array leaf's path and bytes (integers as int64, so a step counter that
  comes back from a checkpoint as another integer type hashes the same)."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    value = np.asarray(leaf)
    if np.issubdtype(value.dtype, np.integer):
      value = value.astype(np.int64)
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(np.ascontiguousarray(value).tobytes())
  return digest.hexdigest()


def count_params(params) -> int:
  return sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))

"""Named random streams derived from the run's root key, so a resumed run replays them exactly.

step key   = fold_in(root, step)
stream key = fold_in(step key, id(name))  for name in ('dropout', 'dropconnect', 'attack', ...)
"""

import zlib

import jax


def stream_id(name: str) -> int:
  """A stable integer for a stream name (independent of the order streams are listed in)."""
  return zlib.crc32(name.encode()) & 0x7FFFFFFF


def stream_key(key: jax.Array, name: str) -> jax.Array:
  return jax.random.fold_in(key, stream_id(name))


def step_rngs(root: jax.Array, step: jax.Array, streams: tuple[str, ...]) -> dict[str, jax.Array]:
  """One key per named stream for training step `step`; fresh every step, never reused."""
  step_key = jax.random.fold_in(root, step)
  return {name: stream_key(step_key, name) for name in streams}

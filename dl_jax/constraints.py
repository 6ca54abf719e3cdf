"""Max-norm (Srivastava et al. 2014): after every update, each unit's incoming weight vector is
rescaled to norm <= c. An optax transformation chained after the optimizer:

    tx = optax.chain(optax.sgd(0.05, momentum=0.9), max_norm(3.0))

Only kernels are constrained (the leaves named 'kernel': Dense [in, out], Conv [..., in, out]); a
unit is one output feature, its incoming vector every kernel entry that feeds it. Biases are free.
"""

import jax
import jax.numpy as jnp
import optax


def _is_kernel(path, leaf) -> bool:
  return getattr(path[-1], "key", None) == "kernel" and leaf.ndim >= 2


def unit_norms(kernel: jax.Array) -> jax.Array:
  """The L2 norm of each output unit's incoming weights: [..., in, out] -> [out]."""
  return jnp.sqrt(jnp.sum(kernel ** 2, axis=tuple(range(kernel.ndim - 1))))


def project_max_norm(params, max_value: float):
  """`params` with every kernel column of norm > max_value scaled down to norm max_value."""

  def project(path, leaf):
    if not _is_kernel(path, leaf):
      return leaf
    norms = unit_norms(leaf)
    return leaf * jnp.minimum(1.0, max_value / jnp.maximum(norms, 1e-12)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(project, params)


def max_unit_norms(params) -> dict[str, jax.Array]:
  """The largest incoming-weight norm of each kernel, by parameter path (shows whether a max-norm
  bound binds)."""
  leaves = jax.tree_util.tree_leaves_with_path(params)
  return {jax.tree_util.keystr(path): jnp.max(unit_norms(leaf))
          for path, leaf in leaves if _is_kernel(path, leaf)}


def max_norm(max_value: float) -> optax.GradientTransformation:
  """Turns `updates` into those that land params on their max-norm projection: chain it last."""
  if not max_value > 0:
    raise ValueError(f"max-norm bound must be > 0, got {max_value}.")

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("max_norm needs the parameters: call tx.update(updates, state, params).")
    projected = project_max_norm(optax.apply_updates(params, updates), max_value)
    return jax.tree_util.tree_map(jnp.subtract, projected, params), state

  return optax.GradientTransformation(init_fn, update_fn)

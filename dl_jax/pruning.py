"""Magnitude pruning (Han et al. 2015): zero the smallest weights, then fine-tune with the pruned
weights frozen at exactly zero; repeated at rising sparsity, that is iterative prune-retrain.

Masks are computed with jax.numpy, so they jit and vmap over models stacked on a seed axis.
"""

from typing import Any, Callable, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from dl_jax.regularizers import KERNELS, no_match_error, path_selector

SCOPES = ("global", "layer")


def _keep_largest(scores: jax.Array, sparsity: float) -> jax.Array:
  """A boolean mask over 1-D `scores` that drops exactly round(sparsity * n) of the smallest
  (ties broken by position, so the count is exact even among equal values, e.g. zeros)."""
  n = scores.shape[0]
  drop = round(sparsity * n)
  ranks = jnp.zeros(n, jnp.int32).at[jnp.argsort(scores, stable=True)].set(jnp.arange(n))
  return ranks >= drop


def magnitude_masks(params, sparsity: float, scope: str = "global", pattern: str = KERNELS):
  """A tree like `params` of boolean keep-masks: among the weights whose path matches `pattern`
  the fraction `sparsity` with the smallest |w| is dropped, over all of them together ('global')
  or in each layer separately ('layer'); every other leaf is kept whole. Weights already at zero
  rank lowest, so a rising sparsity never revives a pruned weight."""
  if not 0 <= sparsity < 1:
    raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
  if scope not in SCOPES:
    raise ValueError(f"unknown pruning scope {scope!r}; choose one of {list(SCOPES)}")
  selected = path_selector(pattern)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  chosen = [i for i, (path, _) in enumerate(leaves) if selected(path)]
  if not chosen:
    raise no_match_error(pattern)
  masks = [jnp.ones(leaf.shape, bool) for _, leaf in leaves]
  if scope == "layer":
    for i in chosen:
      leaf = leaves[i][1]
      masks[i] = _keep_largest(jnp.abs(leaf).ravel(), sparsity).reshape(leaf.shape)
  else:
    flat = jnp.concatenate([jnp.abs(leaves[i][1]).ravel() for i in chosen])
    keep, start = _keep_largest(flat, sparsity), 0
    for i in chosen:
      leaf = leaves[i][1]
      masks[i] = keep[start:start + leaf.size].reshape(leaf.shape)
      start += leaf.size
  return jax.tree_util.tree_unflatten(treedef, masks)


def apply_masks(params, masks):
  """Params with every masked-out weight set to exactly zero."""
  return jax.tree_util.tree_map(lambda p, keep: jnp.where(keep, p, jnp.zeros_like(p)),
                                params, masks)


def magnitude_prune(params, sparsity: float, scope: str = "global", pattern: str = KERNELS):
  """`params` with the `magnitude_masks` applied: one-shot pruning, no retraining."""
  return apply_masks(params, magnitude_masks(params, sparsity, scope, pattern))


class FrozenZerosState(NamedTuple):
  keep: Any  # 1.0 where a weight may move, 0.0 where it was pruned
  inner: optax.OptState


def freeze_pruned(tx: optax.GradientTransformation,
                  pattern: str = KERNELS) -> optax.GradientTransformation:
  """`tx` for fine-tuning a pruned model: every weight matching `pattern` that is exactly zero
  when the optimizer state is created stays exactly zero.

  The mask is read from the params at `init`, so it lives in the optimizer state (one per seed
  when states are stacked). Gradients are masked before `tx` (Adam's moments of a pruned weight
  stay 0, nothing can revive it) and updates after it (weight decay or momentum cannot either).
  """
  selected = path_selector(pattern)

  def init(params):
    keep = jax.tree_util.tree_map_with_path(
        lambda path, p: (p != 0).astype(p.dtype) if selected(path) else jnp.ones_like(p), params)
    return FrozenZerosState(keep, tx.init(params))

  def update(updates, state, params=None):
    mask = lambda tree: jax.tree_util.tree_map(jnp.multiply, tree, state.keep)
    updates, inner = tx.update(mask(updates), state.inner, params)
    return mask(updates), FrozenZerosState(state.keep, inner)

  return optax.GradientTransformation(init, update)


def restart_from(state, params, tx: optax.GradientTransformation, stacked: bool = False):
  """`state` carrying `params` (any shapes, e.g. of a narrower model) and a fresh state of
  optimizer `tx`, sharing no buffer with `state` (a donating train step then leaves it intact).
  `stacked`: models stacked on a leading seed axis, one optimizer state each."""
  copy = lambda tree: jax.tree_util.tree_map(jnp.copy, tree)
  init = jax.vmap(tx.init) if stacked else tx.init
  return state.replace(params=params, tx=tx, opt_state=init(params), step=copy(state.step),
                       key=copy(state.key), model_state=copy(state.model_state))


def prune_state(state, sparsity: float, masked_tx: optax.GradientTransformation,
                scope: str = "global", pattern: str = KERNELS, stacked: bool = False):
  """`state` with its weights magnitude-pruned to `sparsity` and a fresh optimizer state of
  `masked_tx` (a `freeze_pruned` optimizer, made once and reused so the step compiles once).
  `stacked`: the state holds models stacked on a leading seed axis; each is pruned on its own."""
  prune = lambda params: magnitude_prune(params, sparsity, scope, pattern)
  params = (jax.vmap(prune) if stacked else prune)(state.params)
  return restart_from(state, params, masked_tx, stacked)


def iterative_pruning(state, sparsities: Sequence[float], masked_tx: optax.GradientTransformation,
                      fine_tune: Callable, scope: str = "global", pattern: str = KERNELS,
                      stacked: bool = False) -> Iterator[tuple[float, Any]]:
  """Prune-retrain rounds at rising `sparsities`: yields (sparsity, state after fine-tuning).

  Each round prunes the previous round's fine-tuned model and hands it to `fine_tune(state)`,
  which is where to look at the freshly pruned model (a donating train step consumes it).
  """
  if list(sparsities) != sorted(sparsities):
    raise ValueError(f"iterative pruning needs rising sparsities, got {list(sparsities)}")
  for sparsity in sparsities:
    state = fine_tune(prune_state(state, sparsity, masked_tx, scope, pattern, stacked))
    yield sparsity, state

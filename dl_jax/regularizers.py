"""Weight and activation penalties: pure functions of the parameters or of the sown activations.

Weights are chosen by parameter path: "Dense_0/kernel" is the path of the first layer's kernel.
`KERNELS`, the default, selects every Dense/Conv kernel and leaves biases (and BatchNorm scales)
out: a bias moves the decision boundary without adding capacity, so shrinking it buys nothing.
Compose penalties with a data loss through `Penalties` and `classification_loss(penalty_fn=...)`.
"""

import dataclasses
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp

KERNELS = r"(^|/)kernel$"
"""Path pattern of every kernel (and nothing else)."""


def path_name(path) -> str:
  """'Dense_0/kernel' for a jax key path into a params tree."""
  return "/".join(str(getattr(key, "key", getattr(key, "idx", key))) for key in path)


def path_selector(pattern: str) -> Callable[[Any], bool]:
  """select(key_path) -> whether the parameter at that path matches the regular expression."""
  compiled = re.compile(pattern)
  return lambda path: bool(compiled.search(path_name(path)))


def no_match_error(pattern: str) -> ValueError:
  return ValueError(f"no parameter path matches {pattern!r}; paths look like 'Dense_0/kernel'")


def named_weights(params, pattern: str = KERNELS) -> dict[str, jax.Array]:
  """{path: leaf} for the leaves of `params` whose path matches `pattern` (error if none do)."""
  select = path_selector(pattern)
  chosen = {path_name(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)
            if select(path)}
  if not chosen:
    raise no_match_error(pattern)
  return chosen


def selected_weights(params, pattern: str = KERNELS) -> list[jax.Array]:
  """The leaves of `params` whose path matches the regular expression `pattern`."""
  return list(named_weights(params, pattern).values())


def l1_penalty(params, pattern: str = KERNELS) -> jax.Array:
  """Sum of |w| over the selected weights: pushes many of them to (near) zero."""
  return sum(jnp.sum(jnp.abs(w)) for w in selected_weights(params, pattern))


def l2_penalty(params, pattern: str = KERNELS) -> jax.Array:
  """0.5 * sum of w^2 over the selected weights (gradient w): shrinks all weights evenly."""
  return 0.5 * sum(jnp.sum(w ** 2) for w in selected_weights(params, pattern))


def elastic_net_penalty(params, l1_ratio: float, pattern: str = KERNELS) -> jax.Array:
  """l1_ratio * L1 + (1 - l1_ratio) * L2 (Zou & Hastie 2005): sparsity with L2's stability."""
  if not 0 <= l1_ratio <= 1:
    raise ValueError(f"elastic-net l1_ratio must be in [0, 1], got {l1_ratio}")
  return l1_ratio * l1_penalty(params, pattern) + (1 - l1_ratio) * l2_penalty(params, pattern)


def _activation_l1_one(example_activations: list[jax.Array]) -> jax.Array:
  return sum(jnp.sum(jnp.abs(a)) for a in example_activations)


def sown_activations(intermediates) -> list[jax.Array]:
  """The [batch, ...] arrays of a model's 'intermediates' collection, in the order sown."""
  leaves = jax.tree_util.tree_leaves(intermediates)
  if not leaves:
    raise ValueError("no sown activations: apply the model with mutable=['intermediates'] "
                     "(dl_jax.train.classification.apply_model(..., intermediates=True))")
  return leaves


def activation_l1(intermediates) -> jax.Array:
  """Mean over the batch of sum |a| over every sown activation ([batch, ...] leaves): a penalty
  that silences hidden units, for sparse codes and for units that can be removed altogether."""
  return jnp.mean(jax.vmap(_activation_l1_one)(sown_activations(intermediates)))


@dataclasses.dataclass(frozen=True)
class Penalties:
  """Penalty weights added to a data loss; an elastic net is l1 > 0 and l2 > 0 together."""

  l1: float = 0.0
  l2: float = 0.0
  activation_l1: float = 0.0
  pattern: str = KERNELS

  def __post_init__(self):
    if min(self.l1, self.l2, self.activation_l1) < 0:
      raise ValueError(f"penalty weights must be >= 0, got {self}")

  @property
  def needs_intermediates(self) -> bool:
    return self.activation_l1 > 0

  def __call__(self, params, intermediates=None) -> jax.Array:
    """The weighted sum of the penalties that are switched on (0.0 when none is)."""
    total = jnp.zeros(())
    if self.l1:
      total += self.l1 * l1_penalty(params, self.pattern)
    if self.l2:
      total += self.l2 * l2_penalty(params, self.pattern)
    if self.activation_l1:
      total += self.activation_l1 * activation_l1(intermediates)
    return total

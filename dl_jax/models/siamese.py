"""Parameter sharing: a siamese pair encoder, and one trunk feeding several heads.

`PairEncoder(encoder, shared=True)` applies ONE encoder (one parameter set) to both inputs of a
pair, so both embeddings live in one space and a distance between them is meaningful for any
inputs, including classes never seen in training. `shared=False` gives each branch its own copy
(two parameter sets): the control that shows what the sharing itself buys.
`SharedTrunk(trunk, heads)` computes one representation and reads several outputs from it.
"""

from typing import Mapping

import flax.linen as nn
import jax

BRANCHES = ("a", "b")


class PairEncoder(nn.Module):
  """Embeds the two inputs of a pair: `(x_a, x_b) -> (z_a, z_b)`.

  `encoder` is any Flax module mapping a batch [B, ...] to embeddings [B, D]. Shared: parameters
  {'encoder': ...}; unshared: {'branches_a': ..., 'branches_b': ...}, two independent copies
  initialized from different keys. `embed(x, branch)` embeds one batch through one branch (both
  branches are the same function when shared).
  """

  encoder: nn.Module
  shared: bool = True

  def setup(self):
    if self.shared:
      self.branches = {name: self.encoder for name in BRANCHES}  # one child, used twice
    else:
      self.branches = {name: self.encoder.clone() for name in BRANCHES}

  def __call__(self, x_a: jax.Array, x_b: jax.Array, train: bool = False):
    if x_a.shape != x_b.shape:
      raise ValueError(f"the two inputs of a pair batch have shapes {x_a.shape} and {x_b.shape}; "
                       "both branches need batches of the same shape.")
    return self.embed(x_a, "a", train), self.embed(x_b, "b", train)

  def embed(self, x: jax.Array, branch: str = "a", train: bool = False) -> jax.Array:
    if branch not in BRANCHES:
      raise ValueError(f"unknown branch {branch!r}; choose one of {BRANCHES}.")
    return self.branches[branch](x, train=train)


class SharedTrunk(nn.Module):
  """`x -> {head name: head(trunk(x))}`: one trunk parameter set, one Dense head per task.

  `heads` maps a head name to its output size, e.g. {'digit': 10, 'parity': 2}; the trunk is any
  Flax module mapping [B, ...] -> [B, features].
  """

  trunk: nn.Module
  heads: Mapping[str, int]

  def setup(self):
    if not self.heads:
      raise ValueError("SharedTrunk needs at least one head, e.g. heads={'digit': 10}.")
    bad = {name: size for name, size in self.heads.items() if int(size) < 1}
    if bad:
      raise ValueError(f"head output sizes must be >= 1; got {bad}.")
    self.outputs = {name: nn.Dense(int(size), name=f"head_{name}")
                    for name, size in self.heads.items()}

  def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    features = self.trunk(x, train=train)
    return {name: head(features) for name, head in self.outputs.items()}

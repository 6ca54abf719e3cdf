"""Structured pruning: remove whole hidden units of a plain MLP and emit a narrower dense MLP.

Unlike magnitude pruning, which leaves matrices of the same shape with zeros in them (fast only
with a sparse kernel), removing unit j of hidden layer i deletes column j of layer i's kernel,
entry j of its bias and row j of layer i+1's kernel: the result is an ordinary, smaller dense
model. It computes exactly what the original computes with the removed units' outgoing weights
zeroed, so units that are silent on the data (e.g. silenced by an activation-L1 penalty) can be
removed without changing any output.
"""

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from dl_jax.models.mlp import MLP

SCORES = ("weight", "activation")


def dense_layers(params) -> list[str]:
  """The MLP's Dense layer names in order (Dense_0, Dense_1, ..., Dense_10: numeric, not string,
  order)."""
  names = [name for name in params if name.startswith("Dense_")]
  if len(names) != len(params):
    raise ValueError(f"expected the params of a plain MLP (Dense_0, Dense_1, ...), got "
                     f"{list(params)}")
  return sorted(names, key=lambda name: int(name.split("_")[1]))


def unit_scores(params, by: str = "weight",
                activations: Sequence | None = None) -> list[np.ndarray]:
  """One score per unit of each hidden layer; low scores are removed first.

  'weight': |incoming weights|_2 * |outgoing weights|_2 (a unit that reads nothing or writes
  nothing does nothing). 'activation': mean |a| over the examples in `activations` (one [N, width]
  array per hidden layer, in order, e.g. the MLP's sown 'intermediates'); 0 for a silent unit.
  """
  layers = dense_layers(params)
  if by == "weight":
    return [np.linalg.norm(np.asarray(params[a]["kernel"]), axis=0)
            * np.linalg.norm(np.asarray(params[b]["kernel"]), axis=1)
            for a, b in zip(layers[:-1], layers[1:])]
  if by == "activation":
    given = None if activations is None else len(activations)
    if given != len(layers) - 1:
      raise ValueError(f"activation scores need one activation array per hidden layer "
                       f"({len(layers) - 1}), got {given}")
    return [np.mean(np.abs(np.asarray(a)), axis=0) for a in activations]
  raise ValueError(f"unknown unit score {by!r}; choose one of {list(SCORES)}")


def top_units(scores: Sequence[np.ndarray], widths: Sequence[int]) -> list[np.ndarray]:
  """For each hidden layer, the (sorted) indices of its `widths[i]` highest-scoring units."""
  if len(widths) != len(scores):
    raise ValueError(f"need one kept width per hidden layer ({len(scores)}), got {list(widths)}")
  for width, layer_scores in zip(widths, scores):
    if not 1 <= width <= len(layer_scores):
      raise ValueError(f"cannot keep {width} of a layer's {len(layer_scores)} units")
  return [np.sort(np.argsort(-s, kind="stable")[:w]) for s, w in zip(scores, widths)]


def narrow_mlp(model: MLP, params, keep: Sequence[np.ndarray]) -> tuple[MLP, dict]:
  """(smaller MLP, its params) keeping only the hidden units with indices `keep[i]` in layer i."""
  if model.residual:
    raise ValueError("structured pruning needs a plain MLP: residual skips tie layer widths")
  layers = dense_layers(params)
  if len(keep) != len(layers) - 1:
    raise ValueError(f"need kept indices for each of the {len(layers) - 1} hidden layers")
  new = {name: dict(params[name]) for name in layers}
  for index, (a, b) in zip(keep, zip(layers[:-1], layers[1:])):
    index = jnp.asarray(index)
    new[a]["kernel"] = new[a]["kernel"][:, index]
    new[a]["bias"] = new[a]["bias"][index]
    new[b]["kernel"] = new[b]["kernel"][index, :]
  return model.clone(widths=tuple(len(k) for k in keep)), new


def mlp_flops(input_dim: int, widths: Sequence[int], num_outputs: int) -> int:
  """Floating-point operations of one forward pass: 2 per multiply-add of each Dense layer
  (biases and activations, linear in the width, are left out)."""
  sizes = [input_dim, *widths, num_outputs]
  return sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))

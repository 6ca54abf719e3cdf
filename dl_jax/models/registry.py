"""Models by name, built from a flat config so that research scripts can pick one with a flag."""

from typing import Sequence

import flax.linen as nn

from dl_jax.models.mlp import MLP


def _linear(num_outputs: int, **_) -> nn.Module:
  return MLP(widths=(), num_outputs=num_outputs)


def _mlp(num_outputs: int, widths: Sequence[int], activation: str, dropout_rate: float,
         residual: bool, **_) -> nn.Module:
  return MLP(widths=tuple(widths), num_outputs=num_outputs, activation=activation,
             dropout_rate=dropout_rate, residual=residual)


MODELS = {"linear": _linear, "mlp": _mlp}


def make_model(name: str, num_outputs: int, **options) -> nn.Module:
  """The model `name` with `num_outputs` logits; options a model does not use are ignored."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
  return MODELS[name](num_outputs=num_outputs, **options)

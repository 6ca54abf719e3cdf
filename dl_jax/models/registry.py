"""Models by name, built from a flat config so that research scripts can pick one with a flag."""

import dataclasses
from typing import Callable, Sequence

import flax.linen as nn

from dl_jax.models.cnn import CNN, flax_mnist_cnn, mnist1d_bn_cnn, mnist1d_cnn
from dl_jax.models.mlp import MLP
from dl_jax.models.rnn import RNNClassifier, mnist1d_gru


def _linear(num_outputs: int, **_) -> nn.Module:
  return MLP(widths=(), num_outputs=num_outputs)


def _mlp(num_outputs: int, widths: Sequence[int], activation: str, dropout_rate: float,
         residual: bool, kernel_init: str = "lecun", dropout_kind: str = "bernoulli",
         dropconnect_rate: float = 0.0, **_) -> nn.Module:
  return MLP(widths=tuple(widths), num_outputs=num_outputs, activation=activation,
             dropout_rate=dropout_rate, residual=residual, kernel_init=kernel_init,
             dropout_kind=dropout_kind, dropconnect_rate=dropconnect_rate)


def _configurable(module: type[nn.Module]) -> Callable[..., nn.Module]:
  """An entry that builds `module` from the options it declares (lists become tuples)."""
  declared = {field.name for field in dataclasses.fields(module)} - {"parent", "name"}

  def make(num_outputs: int, **options) -> nn.Module:
    kwargs = {key: tuple(value) if isinstance(value, list) else value
              for key, value in options.items() if key in declared}
    return module(num_outputs=num_outputs, **kwargs)

  return make


def _reference(build: Callable[[int], nn.Module]) -> Callable[..., nn.Module]:
  """An entry for a published architecture: every option but `num_outputs` is ignored."""
  return lambda num_outputs, **_: build(num_outputs)


MODELS = {"linear": _linear, "mlp": _mlp,
          "cnn": _configurable(CNN), "cnn_mnist1d": _reference(mnist1d_cnn),
          "cnn_mnist1d_bn": _reference(mnist1d_bn_cnn),
          "cnn_flax_mnist": _reference(flax_mnist_cnn),
          "rnn": _configurable(RNNClassifier), "gru_mnist1d": _reference(mnist1d_gru)}


def make_model(name: str, num_outputs: int, **options) -> nn.Module:
  """The model `name` with `num_outputs` logits; options a model does not use are ignored."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
  return MODELS[name](num_outputs=num_outputs, **options)

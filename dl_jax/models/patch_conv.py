"""Convolution as shifted views of the input times the kernel: the same layer as `nn.Conv`.

XLA's CPU convolutions are slow for the small kernels and channel counts of these experiments,
slower still under `vmap` (seeds) and ~7x slower inside `lax.scan` (the weight gradient leaves the
fast path). Gathering the K (or KxK) shifted views of the input and multiplying by the flattened
kernel turns forward and backward passes into plain matmuls (`PatchConv`). With one or a few input
channels that matmul is a poor fit (its inner dimension is K*channels); `ShiftedConv` sums the
views times each kernel tap instead, which XLA fuses into one elementwise pass. Parameters have the
names, shapes and initialization of `nn.Conv`, so all three are interchangeable (tests check equal
outputs and gradients).
"""

import itertools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def resolve_padding(padding, length: int, kernel: int, stride: int) -> tuple[int, int]:
  """(low, high) padding of one spatial axis, with the meaning `nn.Conv` gives `padding`."""
  if padding == "VALID":
    return 0, 0
  if padding == "SAME":
    out = -(-length // stride)
    total = max((out - 1) * stride + kernel - length, 0)
    return total // 2, total - total // 2
  if isinstance(padding, int):
    return padding, padding
  return tuple(padding)


def window_views(x: jax.Array, window: Sequence[int], strides: Sequence[int]) -> list[jax.Array]:
  """x[:, i + offset * stride, ...] for every offset in the window (row-major), each
  [batch, *out, channels]: the inputs a VALID windowed op (convolution, pooling) sees per tap."""
  out = [(n - w) // s + 1 for n, w, s in zip(x.shape[1:-1], window, strides)]
  return [x[(slice(None), *(slice(o, o + s * (m - 1) + 1, s)
                            for o, s, m in zip(offset, strides, out)))]
          for offset in itertools.product(*(range(w) for w in window))]


class PatchConv(nn.Module):
  """A convolution over [batch, *spatial, channels] with `nn.Conv`'s parameters."""

  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int]
  padding: str | int | Sequence = "SAME"
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    patches = jnp.concatenate(self._views(x), axis=-1)  # [batch, *out, prod(kernel) * channels]
    return self._add_bias(patches @ self._kernel(x).reshape(-1, self.features))

  def _kernel(self, x: jax.Array) -> jax.Array:
    return self.param("kernel", nn.linear.default_kernel_init,
                      (*self.kernel_size, x.shape[-1], self.features))

  def _views(self, x: jax.Array) -> list[jax.Array]:
    """The input under each kernel tap (row-major over the kernel), each [batch, *out, channels]."""
    spatial = x.shape[1:-1]
    per_axis = ([self.padding] * len(spatial) if isinstance(self.padding, (str, int))
                else list(self.padding))
    pads = [resolve_padding(p, n, k, s)
            for p, n, k, s in zip(per_axis, spatial, self.kernel_size, self.strides)]
    x = jnp.pad(x, [(0, 0), *pads, (0, 0)])
    return window_views(x, self.kernel_size, self.strides)

  def _add_bias(self, y: jax.Array) -> jax.Array:
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return y


class ShiftedConv(PatchConv):
  """The same convolution as a sum over kernel taps of view @ kernel[tap]: for few input channels.

  With one input channel each term is a broadcast multiply, and XLA fuses the whole sum (and the
  bias, activation and pooling after it) into one pass over the output: on the Flax-MNIST CNN's
  first layer (1 -> 32 channels, 3x3) that beats both the patches matmul and XLA's convolution.
  """

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    taps = self._kernel(x).reshape(-1, x.shape[-1], self.features)
    return self._add_bias(sum(view @ tap for view, tap in zip(self._views(x), taps)))

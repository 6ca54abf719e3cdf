"""Convolution as patches + one matmul: the same layer as `nn.Conv`, faster on CPU.

XLA's CPU convolutions are slow for the small kernels and channel counts of these experiments,
slower still under `vmap` (seeds) and ~7x slower inside `lax.scan` (the weight gradient leaves the
fast path). Gathering the K (or KxK) shifted views of the input and multiplying by the flattened
kernel turns forward and backward passes into plain matmuls. Parameters have the names, shapes
and initialization of `nn.Conv`, so the two are interchangeable (a test checks equal outputs).
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


class PatchConv(nn.Module):
  """A convolution over [batch, *spatial, channels] with `nn.Conv`'s parameters."""

  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int]
  padding: str | int | Sequence = "SAME"
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    spatial = x.shape[1:-1]
    kernel = self.param("kernel", nn.linear.default_kernel_init,
                        (*self.kernel_size, x.shape[-1], self.features))
    per_axis = ([self.padding] * len(spatial) if isinstance(self.padding, (str, int))
                else list(self.padding))
    pads = [resolve_padding(p, n, k, s)
            for p, n, k, s in zip(per_axis, spatial, self.kernel_size, self.strides)]
    x = jnp.pad(x, [(0, 0), *pads, (0, 0)])
    out_shape = [(n + lo + hi - k) // s + 1
                 for n, (lo, hi), k, s in zip(spatial, pads, self.kernel_size, self.strides)]
    views = [x[(slice(None), *(slice(o, o + s * (n - 1) + 1, s)
                               for o, s, n in zip(offset, self.strides, out_shape)))]
             for offset in itertools.product(*(range(k) for k in self.kernel_size))]
    patches = jnp.concatenate(views, axis=-1)  # [batch, *out, prod(kernel) * channels]
    y = patches @ kernel.reshape(-1, self.features)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return y

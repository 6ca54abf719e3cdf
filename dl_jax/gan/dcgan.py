"""DCGAN-style generator and discriminator for small images (Radford et al. 2016), sized for a CPU.

Generator: z -> Dense -> [H/4, W/4, C] -> (BatchNorm, ReLU) -> up x2 -> (BatchNorm, ReLU) -> up x2
-> sigmoid, so pixels land in [0, 1] like the data. Discriminator: two stride-2 convolutions with
LeakyReLU(0.2) and dropout, then one logit per image. For 28x28 digits that is 7x7 -> 14x14 ->
28x28 in the generator and 28x28 -> 14x14 -> 7x7 in the discriminator.

"up x2" is a nearest-neighbour resize then a 3x3 convolution (Odena et al. 2016, "Deconvolution
and checkerboard artifacts"). The 4x4 stride-2 transposed convolutions we tried first drew
striped, checkerboarded strokes that the discriminator rejected easily (mean D(x) 0.95, D(G(z))
0.05 at step 750 of a 1-seed run), for the same cost per step.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class Generator(nn.Module):
  """Latent codes [batch, latent_dim] -> images [batch, *image_shape] in [0, 1].

  Two resize-convolutions double the resolution twice. Batch norm keeps
  running statistics in `batch_stats` (apply with `mutable=['batch_stats']` in training); samples
  are drawn with the running averages (`train=False`), so one sample never depends on the others.
  """

  image_shape: Sequence[int] = (28, 28, 1)
  channels: Sequence[int] = (64, 32)  # at H/4 x W/4 and at H/2 x W/2

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    height, width, image_channels = self.image_shape
    if height % 4 or width % 4:
      raise ValueError(f"the generator doubles the resolution twice, so image height and width "
                       f"must be multiples of 4; got image_shape {tuple(self.image_shape)}")
    if z.ndim != 2:
      raise ValueError(f"the generator expects latent codes [batch, latent_dim]; got {z.shape}")
    first, second = self.channels
    h = nn.Dense(height // 4 * width // 4 * first, use_bias=False)(z)
    h = h.reshape(z.shape[0], height // 4, width // 4, first)
    h = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(h))
    h = nn.Conv(second, (3, 3), use_bias=False)(_upsample(h))
    h = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(h))
    return nn.sigmoid(nn.Conv(image_channels, (3, 3))(_upsample(h)))


def _upsample(h: jax.Array) -> jax.Array:
  """Nearest-neighbour x2 on both spatial axes of [batch, H, W, C]."""
  return jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)


class Discriminator(nn.Module):
  """Images [batch, H, W, C] -> one real-vs-fake logit per image, [batch].

  Stride-2 convolutions (XLA's: for these 4x4 stride-2 kernels measured twice as fast as
  dl_jax.models.patch_conv on this CPU), LeakyReLU(0.2), and dropout, which in training needs
  `rngs={'dropout': key}` (Flax raises without it). Dropout is meant to keep the discriminator
  from memorising the few thousand real digits; experiments.gan measured its samples better
  without it (dropout_rate 0) at this size.
  """

  channels: Sequence[int] = (32, 64)
  dropout_rate: float = 0.3

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if x.ndim != 4:
      raise ValueError(f"the discriminator expects images [batch, height, width, channels]; "
                       f"got an array of shape {x.shape}")
    h = x
    for i, features in enumerate(self.channels):
      h = nn.Conv(features, (4, 4), (2, 2), padding="SAME")(h)
      h = nn.leaky_relu(h, negative_slope=0.2)
      h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return nn.Dense(1)(h.reshape(h.shape[0], -1))[:, 0]

"""Differentiable augmentation of everything the discriminator sees (DiffAugment; Zhao et al. 2020,
"Differentiable Augmentation for Data-Efficient GAN Training").

With a few thousand real images the discriminator memorises them, and its verdicts stop carrying
information the generator can learn from. Random transforms of the discriminator's inputs widen
what "real" looks like; applying the same kind of transform to the generated images as well, in
the discriminator's update and in the generator's, keeps the generator from learning to draw the
transforms themselves (it is judged only through them). Each transform is linear in the pixels, so
the generator's gradient flows back through it.

Transforms, each drawn independently per image:
  'translation': shift by a whole number of pixels, up to `translation_fraction` of the height
                 (width) either way, with zeros shifted in.
  'cutout':      zero one square of side `cutout_fraction` of the height (width), placed wholly
                 inside the image.
"""

from typing import Sequence

import jax
import jax.numpy as jnp

from dl_jax.train.rng import stream_key


def translate(key: jax.Array, images: jax.Array, fraction: float = 0.125) -> jax.Array:
  """Each image of [batch, H, W, C] shifted by its own (dy, dx), |dy| <= round(fraction * H),
  |dx| <= round(fraction * W); pixels shifted in are 0."""
  batch, height, width, _ = images.shape
  pad_y, pad_x = _max_shift(height, fraction), _max_shift(width, fraction)
  shifts = translation_offsets(key, batch, (pad_y, pad_x))
  padded = jnp.pad(images, ((0, 0), (pad_y, pad_y), (pad_x, pad_x), (0, 0)))

  def crop(image, shift):  # output pixel (y, x) reads input pixel (y - dy, x - dx)
    start = (pad_y - shift[0], pad_x - shift[1], 0)
    return jax.lax.dynamic_slice(image, start, (height, width, image.shape[-1]))

  return jax.vmap(crop)(padded, shifts)


def translation_offsets(key: jax.Array, batch: int, max_shift: tuple[int, int]) -> jax.Array:
  """The (dy, dx) `translate` draws with this key: integers, uniform on [-max, max], [batch, 2]."""
  bound = jnp.asarray(max_shift)
  return jax.random.randint(key, (batch, 2), -bound, bound + 1)


def cutout(key: jax.Array, images: jax.Array, fraction: float = 0.5) -> jax.Array:
  """Each image of [batch, H, W, C] with one square of side round(fraction * H) x
  round(fraction * W) set to 0, at its own position wholly inside the image."""
  batch, height, width, _ = images.shape
  size = (_side(height, fraction), _side(width, fraction))
  corners = cutout_corners(key, batch, (height, width), size)
  inside_y = _in_window(jnp.arange(height), corners[:, 0], size[0])  # [batch, H]
  inside_x = _in_window(jnp.arange(width), corners[:, 1], size[1])  # [batch, W]
  keep = ~(inside_y[:, :, None] & inside_x[:, None, :])
  return images * keep[..., None].astype(images.dtype)


def cutout_corners(key: jax.Array, batch: int, image_size: tuple[int, int],
                   square: tuple[int, int]) -> jax.Array:
  """The top-left corners `cutout` draws with this key: uniform over the positions that keep
  the square inside the image, [batch, 2]."""
  room = jnp.asarray(image_size) - jnp.asarray(square)
  return jax.random.randint(key, (batch, 2), 0, room + 1)


def _in_window(coordinates: jax.Array, starts: jax.Array, size: int) -> jax.Array:
  """[batch, n]: whether each coordinate lies in [start, start + size) of each row's window."""
  return (coordinates[None, :] >= starts[:, None]) & (coordinates[None, :] < starts[:, None] + size)


def _max_shift(length: int, fraction: float) -> int:
  return int(length * fraction + 0.5)


def _side(length: int, fraction: float) -> int:
  return min(max(int(length * fraction + 0.5), 1), length)


TRANSFORMS = {"translation": translate, "cutout": cutout}


def check_policy(policy: Sequence[str]) -> None:
  """Raises on a transform name that is not in TRANSFORMS."""
  unknown = [name for name in policy if name not in TRANSFORMS]
  if unknown:
    raise ValueError(f"unknown augmentation(s) {unknown}: choose from {sorted(TRANSFORMS)}")


def augment(key: jax.Array, images: jax.Array, policy: Sequence[str] = ("translation", "cutout"),
            translation_fraction: float = 0.125, cutout_fraction: float = 0.5) -> jax.Array:
  """The transforms of `policy`, in order, each with its own key (named after the transform, so
  a transform's draws do not depend on which others run); an empty policy returns `images`."""
  check_policy(policy)
  fractions = {"translation": translation_fraction, "cutout": cutout_fraction}
  for name in policy:
    images = TRANSFORMS[name](stream_key(key, name), images, fractions[name])
  return images

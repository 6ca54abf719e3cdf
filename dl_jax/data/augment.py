"""Seeded image augmentation (shift, rotation, elastic distortion) and a streamed writer of
augmented training sets larger than memory.

Elastic distortion after Simard et al. 2003: a random displacement field, smoothed by a Gaussian,
moves every pixel; the image is resampled bilinearly. Each image gets its own key, so image i of a
written set depends only on (seed, i), not on how the set was cut into chunks.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from dl_jax.data.dataset import Dataset
from dl_jax.data.errors import DataError


@dataclasses.dataclass(frozen=True)
class Augmentation:
  max_shift: float = 2.0  # pixels, uniform in [-max_shift, max_shift] per axis
  max_rotation: float = 15.0  # degrees, uniform in [-max_rotation, max_rotation]
  elastic_alpha: float = 2.0  # the largest displacement, in pixels, after smoothing
  elastic_sigma: float = 4.0  # Gaussian smoothing of the displacement field, in pixels


def _blur_matrix(size: int, sigma: float) -> jax.Array:
  """G [size, size] with G @ v the Gaussian blur of v (zero outside the image): a banded,
  normalised kernel."""
  offsets = jnp.arange(size)[:, None] - jnp.arange(size)[None, :]
  kernel = jnp.exp(-0.5 * (offsets / sigma) ** 2) * (jnp.abs(offsets) <= 3 * sigma)
  return kernel / jnp.sum(jnp.exp(-0.5 * (jnp.arange(-3 * sigma, 3 * sigma + 1) / sigma) ** 2))


def _elastic_field(key: jax.Array, shape: tuple[int, int], aug: Augmentation) -> jax.Array:
  """Displacements [2, H, W]: uniform noise blurred (rows, then columns, as two small matmuls),
  scaled so the largest displacement is `elastic_alpha` pixels."""
  noise = jax.random.uniform(key, (2, *shape), minval=-1.0, maxval=1.0)
  rows, cols = _blur_matrix(shape[0], aug.elastic_sigma), _blur_matrix(shape[1], aug.elastic_sigma)
  smooth = jnp.einsum("ij,fjk,lk->fil", rows, noise, cols)
  return aug.elastic_alpha * smooth / (jnp.max(jnp.abs(smooth)) + 1e-6)


def augment_one(image: jax.Array, key: jax.Array, aug: Augmentation) -> jax.Array:
  """One [H, W, C] image in [0, 1], shifted, rotated about its centre and elastically distorted."""
  height, width = image.shape[:2]
  shift_key, angle_key, field_key = jax.random.split(key, 3)
  shift = jax.random.uniform(shift_key, (2,), minval=-aug.max_shift, maxval=aug.max_shift)
  angle = jnp.deg2rad(jax.random.uniform(angle_key, (), minval=-aug.max_rotation,
                                         maxval=aug.max_rotation))
  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                            jnp.arange(width, dtype=jnp.float32), indexing="ij")
  centre_r, centre_c = (height - 1) / 2, (width - 1) / 2
  r, c = rows - centre_r, cols - centre_c
  # each output pixel reads the input at the inversely rotated, shifted and displaced position
  source_r = jnp.cos(angle) * r - jnp.sin(angle) * c + centre_r - shift[0]
  source_c = jnp.sin(angle) * r + jnp.cos(angle) * c + centre_c - shift[1]
  field = _elastic_field(field_key, (height, width), aug)
  coords = [source_r + field[0], source_c + field[1]]
  resample = lambda channel: jax.scipy.ndimage.map_coordinates(channel, coords, order=1,
                                                               mode="constant", cval=0.0)
  return jnp.stack([resample(image[..., k]) for k in range(image.shape[-1])], axis=-1)


def augment_images(images: jax.Array, keys: jax.Array, aug: Augmentation) -> jax.Array:
  """A batch [N, H, W, C] in [0, 1], each image with its own key [N, 2]."""
  if images.ndim != 4:
    raise ValueError(f"augment_images expects NHWC images, got shape {images.shape}")
  return jax.vmap(lambda image, key: augment_one(image, key, aug))(images, keys)


def image_keys(seed: int, indices: np.ndarray) -> jax.Array:
  """The key of each written image: fold_in(PRNGKey(seed), index), independent of chunking."""
  root = jax.random.PRNGKey(seed)
  return jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.asarray(indices, jnp.uint32))


def write_augmented(dataset: Dataset, directory: str, num_examples: int, seed: int,
                    aug: Augmentation = Augmentation(), chunk: int = 8192,
                    progress=None) -> str:
  """Writes `num_examples` augmented training images (float32 in [0, 1], as the model reads
  them: 3,136 bytes per 28x28 digit) with their labels, and the dataset's own test split, into
  `directory` (load it with `load_dataset(directory)`; inputs are memory-mapped). Every
  len(train) consecutive images augment each training example once, in a seeded order.

  The file is written chunk by chunk through a plain file handle (never whole in memory) to a
  temporary name and renamed when complete, beside a manifest of what it holds; a directory whose
  manifest matches is reused, so an interrupted or repeated call never leaves a half-written set.
  """
  manifest = {"source": dataset.name, "num_examples": int(num_examples), "seed": int(seed),
              "augmentation": dataclasses.asdict(aug), "format": "float32 NHWC in [0, 1]"}
  manifest_path = os.path.join(directory, "manifest.json")
  if _complete(directory, manifest_path, manifest):
    return directory
  os.makedirs(directory, exist_ok=True)
  train = dataset.train.materialize()
  if train["x"].ndim != 4:
    raise DataError(f"{dataset.name}: augmentation needs NHWC images, got {train['x'].shape}")
  augment = jax.jit(lambda x, k: augment_images(x, k, aug))
  source_rows = source_order(len(train["y"]), num_examples, seed)
  shape = (num_examples, *train["x"].shape[1:])
  x_path = os.path.join(directory, "x_train.npy")
  _write_streamed(x_path, shape, chunk, progress, lambda start, stop: np.asarray(
      augment(train["x"][source_rows[start:stop]], image_keys(seed, np.arange(start, stop)))))
  np.save(os.path.join(directory, "y_train.npy"), train["y"][source_rows])
  test = dataset.test.materialize()
  np.save(os.path.join(directory, "x_test.npy"), test["x"])
  np.save(os.path.join(directory, "y_test.npy"), test["y"])
  with open(manifest_path, "w") as f:
    json.dump(manifest, f, indent=2)
  return directory


def source_order(num_train: int, num_examples: int, seed: int) -> np.ndarray:
  """Which training example image i augments: cycle c visits all of them in permutation c."""
  cycles = -(-num_examples // num_train)
  order = np.concatenate([np.random.default_rng([seed, c]).permutation(num_train)
                          for c in range(cycles)])
  return order[:num_examples]


def _complete(directory: str, manifest_path: str, manifest: dict) -> bool:
  if not os.path.exists(manifest_path):
    return False
  with open(manifest_path) as f:
    written = json.load(f)
  if written != manifest:
    raise DataError(f"{directory} already holds another augmented set ({written}); choose another "
                    "directory or delete it.")
  return True


def _write_streamed(path: str, shape: tuple[int, ...], chunk: int, progress, make_rows) -> None:
  """A float32 .npy file of `shape` written by `make_rows(start, stop)` chunks, then renamed."""
  header = np.lib.format.open_memmap(path + ".tmp", mode="w+", dtype=np.float32, shape=shape)
  offset = header.offset
  del header  # the file now has its header and full size; rows are written through a handle
  with open(path + ".tmp", "r+b") as f:
    f.seek(offset)
    for start in range(0, shape[0], chunk):
      stop = min(start + chunk, shape[0])
      f.write(np.ascontiguousarray(make_rows(start, stop), dtype=np.float32).tobytes())
      if progress is not None:
        progress(stop, shape[0])
  os.replace(path + ".tmp", path)

"""`load_dataset(spec)`: an embedded dataset by name, or a user's file or directory by path."""

import os

from dl_jax.data.dataset import MAX_CLASSES, Dataset, with_validation
from dl_jax.data.embedded import EMBEDDED
from dl_jax.data.errors import DataError
from dl_jax.data.files import ARRAY_KEYS, load_idx_dir, load_npy_dir, load_npz


def load_dataset(spec: str, val_fraction: float = 0.0, val_seed: int = 0,
                 max_classes: int = MAX_CLASSES) -> Dataset:
  """`spec`: one of EMBEDDED, a path to an .npz file, or a directory of .npy or IDX files.

  `val_fraction` > 0 carves a stratified validation split from train with `val_seed`; a user's
  file whose labels imply more than `max_classes` classes is refused.
  """
  return with_validation(_load(spec, max_classes), val_fraction, val_seed)


def _load(spec: str, max_classes: int) -> Dataset:
  if spec in EMBEDDED:
    return EMBEDDED[spec]()
  if spec.endswith(".npz"):
    return load_npz(spec, max_classes)
  if os.path.isdir(spec):
    if any(os.path.exists(os.path.join(spec, k + ".npy")) for k in ARRAY_KEYS):
      return load_npy_dir(spec, max_classes)
    return load_idx_dir(spec, max_classes)
  raise DataError(f"unknown dataset {spec!r}: use one of {sorted(EMBEDDED)}, a path to an .npz "
                  "file, or a directory holding x_train.npy ... or MNIST's IDX files.")

"""A user's own data: .npz archives, directories of .npy files (memory-mapped) and MNIST IDX files.

Every header is checked against the file's real size before anything is read (`bounded`), and
every array against what a classifier needs (`make_dataset`): one clear DataError, never a trace.
"""

import os
import zipfile
import zlib

import numpy as np

from dl_jax.data.bounded import read_idx, read_npy, read_npz_member
from dl_jax.data.dataset import MAX_CLASSES, Dataset, make_dataset
from dl_jax.data.errors import DataError
from dl_jax.data.split import Split

ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_FILES = {  # MNIST's own names; a trailing .gz is accepted too
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}


def load_npz(path: str, max_classes: int = MAX_CLASSES) -> Dataset:
  """An .npz archive holding x_train, y_train, x_test, y_test (never unpickled)."""
  _require_file(path)
  try:
    with zipfile.ZipFile(path) as archive:
      members = {info.filename: info for info in archive.infolist()}
      missing = [k for k in ARRAY_KEYS if k + ".npy" not in members]
      if missing:
        raise DataError(f"{path}: missing arrays {missing}; found {sorted(members)}. Save the "
                        f"file with np.savez(path, {', '.join(k + '=...' for k in ARRAY_KEYS)}).")
      arrays = {k: read_npz_member(path, archive, members[k + ".npy"]) for k in ARRAY_KEYS}
  except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, zlib.error,
          RuntimeError) as e:  # RuntimeError: zipfile's "encrypted" on a garbled flag bit
    raise DataError(f"{path}: not a readable .npz archive ({e}); re-create it with np.savez.") from e
  except OSError as e:
    raise DataError(f"{path}: cannot read ({e.strerror or e}).") from e
  return _from_arrays(path, arrays, max_classes)


def load_npy_dir(directory: str, max_classes: int = MAX_CLASSES) -> Dataset:
  """A directory with x_train.npy, y_train.npy, x_test.npy, y_test.npy; inputs are memory-mapped."""
  if not os.path.isdir(directory):
    raise DataError(f"{directory}: no such directory of .npy files.")
  arrays = {}
  for key in ARRAY_KEYS:
    path = os.path.join(directory, key + ".npy")
    _require_file(path)
    try:  # inputs stay on disk; labels are small and are read into memory
      arrays[key] = read_npy(path, mmap=key.startswith("x"))
    except OSError as e:
      raise DataError(f"{path}: cannot read ({e.strerror or e}).") from e
  return _from_arrays(directory, arrays, max_classes)


def load_idx_dir(directory: str, max_classes: int = MAX_CLASSES) -> Dataset:
  """A directory with MNIST's four IDX files (optionally gzipped); uint8 pixels scaled to [0, 1]."""
  if not os.path.isdir(directory):
    raise DataError(f"{directory}: no such directory of IDX files.")
  arrays = {}
  for key, stem in IDX_FILES.items():
    path = _find_idx(directory, stem)
    _require_file(path)
    arrays[key] = read_idx(path)
  for key in ("x_train", "x_test"):
    if arrays[key].ndim == 3:  # [n, rows, cols] images -> NHWC
      arrays[key] = arrays[key][..., None]
  return _from_arrays(directory, arrays, max_classes)


def _find_idx(directory: str, stem: str) -> str:
  for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      return path
  raise DataError(f"{directory}: no IDX file {stem} (or {stem}.gz); expected MNIST's four files "
                  f"{sorted(IDX_FILES.values())}.")


def _require_file(path: str):
  if not os.path.isfile(path):
    raise DataError(f"{path}: file not found.")
  if not os.access(path, os.R_OK):
    raise DataError(f"{path}: permission denied; make the file readable (chmod +r).")


def _from_arrays(source: str, arrays: dict, max_classes: int) -> Dataset:
  """uint8 inputs are taken as pixels and arrive scaled to [0, 1]."""
  for key in ("y_train", "y_test"):
    if arrays[key].ndim != 1:
      raise DataError(f"{source}: {key} has shape {arrays[key].shape}; save one class label per "
                      "example, a 1-D array (e.g. y.reshape(-1)).")
  name = os.path.splitext(os.path.basename(os.path.normpath(source)))[0]
  x_scale = 1 / 255 if arrays["x_train"].dtype == np.uint8 else None
  return make_dataset(name, source,
                      Split(arrays["x_train"], np.asarray(arrays["y_train"]), x_scale=x_scale),
                      Split(arrays["x_test"], np.asarray(arrays["y_test"]), x_scale=x_scale),
                      max_classes=max_classes)

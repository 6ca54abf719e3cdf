"""A user's own data: .npz archives, directories of .npy files (memory-mapped) and MNIST IDX files."""

import gzip
import os
import zipfile

import numpy as np

from dl_jax.data.dataset import Dataset, make_dataset
from dl_jax.data.errors import DataError
from dl_jax.data.split import Split

ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_FILES = {  # MNIST's own names; a trailing .gz is accepted too
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load_npz(path: str) -> Dataset:
  """An .npz archive holding x_train, y_train, x_test, y_test (loaded with allow_pickle=False)."""
  _require_file(path)
  if not zipfile.is_zipfile(path):
    raise DataError(f"{path}: not a readable .npz archive (no zip structure); re-create it with "
                    "np.savez.")
  try:
    with np.load(path, allow_pickle=False) as archive:
      missing = [k for k in ARRAY_KEYS if k not in archive.files]
      if missing:
        raise DataError(f"{path}: missing arrays {missing}; found {sorted(archive.files)}. "
                        f"Save the file with np.savez(path, {', '.join(k + '=...' for k in ARRAY_KEYS)}).")
      arrays = {k: archive[k] for k in ARRAY_KEYS}
  except DataError:
    raise
  except (zipfile.BadZipFile, OSError, EOFError) as e:
    raise DataError(f"{path}: not a readable .npz archive ({e}); re-create it with np.savez.") from e
  except ValueError as e:  # object arrays need pickle, which we refuse
    raise DataError(f"{path}: cannot load without pickle ({e}); save plain numeric arrays.") from e
  return _from_arrays(path, arrays)


def load_npy_dir(directory: str) -> Dataset:
  """A directory with x_train.npy, y_train.npy, x_test.npy, y_test.npy; inputs are memory-mapped."""
  if not os.path.isdir(directory):
    raise DataError(f"{directory}: no such directory of .npy files.")
  arrays = {}
  for key in ARRAY_KEYS:
    path = os.path.join(directory, key + ".npy")
    _require_file(path)
    try:  # inputs stay on disk; labels are small and are read into memory
      arrays[key] = np.load(path, mmap_mode="r" if key.startswith("x") else None,
                            allow_pickle=False)
    except ValueError as e:
      raise DataError(f"{path}: not a valid .npy array file ({e}); write it with np.save.") from e
  return _from_arrays(directory, arrays)


def load_idx_dir(directory: str) -> Dataset:
  """A directory with MNIST's four IDX files (optionally gzipped); uint8 pixels scaled to [0, 1]."""
  if not os.path.isdir(directory):
    raise DataError(f"{directory}: no such directory of IDX files.")
  arrays = {key: read_idx(_find_idx(directory, stem)) for key, stem in IDX_FILES.items()}
  for key in ("x_train", "x_test"):
    if arrays[key].ndim == 3:  # [n, rows, cols] images -> NHWC
      arrays[key] = arrays[key][..., None]
  return _from_arrays(directory, arrays)


def read_idx(path: str) -> np.ndarray:
  """One IDX file (LeCun's MNIST format); an uncompressed file is memory-mapped, not read."""
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      header = f.read(4)
      if len(header) != 4 or header[:2] != b"\x00\x00" or header[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {header.hex() or 'empty'}).")
      dtype, ndim = np.dtype(_IDX_DTYPES[header[2]]), header[3]
      dims_raw = f.read(4 * ndim)
      if len(dims_raw) != 4 * ndim:
        raise DataError(f"{path}: IDX header is truncated.")
      shape = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
      offset = 4 + 4 * ndim
      expected = int(np.prod(shape)) * dtype.itemsize
      if opener is open:
        actual = os.path.getsize(path) - offset
      else:
        payload = f.read()
        actual = len(payload)
  except (OSError, EOFError) as e:
    raise DataError(f"{path}: cannot read IDX file ({e}).") from e
  if actual != expected:
    raise DataError(f"{path}: header promises shape {shape} ({expected} bytes) but the file holds "
                    f"{actual}; the file is truncated or corrupt, download it again.")
  if opener is open:
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
  return np.frombuffer(payload, dtype=dtype).reshape(shape)


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


def _from_arrays(source: str, arrays: dict) -> Dataset:
  """uint8 inputs are taken as pixels and arrive scaled to [0, 1]."""
  name = os.path.splitext(os.path.basename(os.path.normpath(source)))[0]
  x_scale = 1 / 255 if arrays["x_train"].dtype == np.uint8 else None
  return make_dataset(name, source,
                      Split(arrays["x_train"], np.asarray(arrays["y_train"]), x_scale=x_scale),
                      Split(arrays["x_test"], np.asarray(arrays["y_test"]), x_scale=x_scale))

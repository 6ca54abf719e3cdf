"""Reading array files without trusting their headers: nothing is allocated or decompressed beyond
what the file's real size justifies.

A header's claim (an IDX file's dimensions, an .npy file's shape and dtype, a zip member's size)
is checked against the bytes that are really there before any buffer is made, so a 2 KB file
that claims 64 GiB is refused in microseconds instead of exhausting memory.
"""

import gzip
import math
import os
import tokenize
import zipfile
import zlib

import numpy as np

from dl_jax.data.errors import DataError

DEFLATE_MAX_RATIO = 1032  # the most bytes deflate can expand one compressed byte into
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}


def read_idx(path: str) -> np.ndarray:
  """One IDX file (LeCun's MNIST format); an uncompressed file is memory-mapped, not read, and a
  gzipped one is decompressed only up to the size its header promises."""
  compressed = path.endswith(".gz")
  try:
    with (gzip.open if compressed else open)(path, "rb") as f:
      dtype, shape = _idx_header(path, f)
      offset, expected = 4 + 4 * len(shape), math.prod(shape) * dtype.itemsize
      if not compressed:
        _check_size(path, shape, dtype, os.path.getsize(path) - offset)
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
      _check_size(path, shape, dtype, expected)  # a shape numpy can hold
      if expected > os.path.getsize(path) * DEFLATE_MAX_RATIO:
        raise DataError(f"{path}: header promises shape {shape} ({expected} bytes), more than a "
                        f"gzip file of {os.path.getsize(path)} bytes can hold; the file is corrupt.")
      payload = f.read(expected + 1)  # one byte more tells a file longer than its header says
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f"{path}: cannot read IDX file ({e}).") from e
  if len(payload) > expected:
    raise DataError(f"{path}: holds more than the {expected} bytes its header promises for shape "
                    f"{shape}; the file is corrupt, write or download it again.")
  _check_size(path, shape, dtype, len(payload))
  return np.frombuffer(payload, dtype=dtype).reshape(shape)


def _idx_header(path: str, f) -> tuple[np.dtype, tuple[int, ...]]:
  header = f.read(4)
  if len(header) != 4 or header[:2] != b"\x00\x00" or header[2] not in _IDX_DTYPES:
    raise DataError(f"{path}: not an IDX file (bad magic number {header.hex() or 'empty'}).")
  ndim = header[3]
  if ndim == 0:
    raise DataError(f"{path}: the IDX header declares 0 dimensions; expected [examples, ...].")
  dims_raw = f.read(4 * ndim)
  if len(dims_raw) != 4 * ndim:
    raise DataError(f"{path}: IDX header is truncated.")
  return np.dtype(_IDX_DTYPES[header[2]]), tuple(int(d) for d in np.frombuffer(dims_raw, ">u4"))


def npy_header(path: str, f, available: int) -> tuple[tuple[int, ...], bool, np.dtype]:
  """(shape, fortran_order, dtype) of the .npy stream `f`, checked against the `available` bytes
  that follow its start (the file's or the zip member's real size)."""
  try:
    version = np.lib.format.read_magic(f)
    if version not in _NPY_HEADER_READERS:
      raise ValueError(f"format version {version} (re-save it with np.save)")
    shape, fortran, dtype = _NPY_HEADER_READERS[version](f)
  except (ValueError, SyntaxError, TypeError, tokenize.TokenError) as e:  # numpy's header parser
    raise DataError(f"{path}: not a valid .npy array ({e}); write it with np.save.") from None
  if dtype.hasobject:
    raise DataError(f"{path}: holds Python objects, which load only through pickle (refused); "
                    "save plain numeric arrays.")
  _check_size(path, shape, dtype, available - f.tell())
  return shape, fortran, dtype


def read_npz_member(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
  """One array of an .npz archive, read only after its header matches the member's real size."""
  compressed_bound = (info.compress_size * DEFLATE_MAX_RATIO
                      if info.compress_type != zipfile.ZIP_STORED else info.compress_size)
  where = f"{path}[{info.filename}]"
  if info.file_size > compressed_bound:
    raise DataError(f"{where}: the zip directory claims {info.file_size} bytes that "
                    f"{info.compress_size} stored bytes cannot hold; the archive is corrupt.")
  with archive.open(info) as f:
    shape, fortran, dtype = npy_header(where, f, info.file_size)
    data = f.read(math.prod(shape) * dtype.itemsize)
  if fortran:
    return np.frombuffer(data, dtype).reshape(shape[::-1]).T
  return np.frombuffer(data, dtype).reshape(shape)


def read_npy(path: str, mmap: bool) -> np.ndarray:
  """An .npy file, memory-mapped (`mmap`) or read, once its header matches the file's size."""
  with open(path, "rb") as f:
    npy_header(path, f, os.path.getsize(path))
  return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def _check_size(path: str, shape: tuple, dtype: np.dtype, actual: int) -> None:
  """The `actual` bytes after the header must be what `shape` of `dtype` takes."""
  expected = math.prod(shape) * dtype.itemsize
  if math.prod(d for d in shape if d) * dtype.itemsize >= 2**62:  # numpy refuses it, 0 or not
    raise DataError(f"{path}: header declares shape {shape}, beyond any array's size; the file is "
                    "corrupt, write or download it again.")
  if actual != expected:
    raise DataError(f"{path}: header promises shape {shape} ({expected} bytes) but the file holds "
                    f"{actual}; the file is truncated or corrupt, write or download it again.")

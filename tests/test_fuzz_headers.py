"""Fuzzed file headers: a reader returns an array no larger than the file, or a DataError."""

import gzip
import os
import struct
import tempfile
import zipfile

import numpy as np
from hypothesis import given, settings, strategies as st

from dl_jax.data import DataError, load_npz
from dl_jax.data.bounded import read_idx, read_npy, read_npz_member

FUZZ = settings(max_examples=200, deadline=None, derandomize=True)  # the same examples in every run
DIMENSION = st.one_of(st.integers(0, 20), st.integers(0, 2**32 - 1))
DESCR = st.sampled_from(["<f4", "|u1", ">i8", "<c8", "O", "<U3", "garbage", "<f8"])


def _read_or_refuse(read, path: str):
  """The array `read(path)` gives, checked against the file's size; None when refused."""
  try:
    array = read(path)
  except DataError:
    return None
  size = os.path.getsize(path)
  limit = size * 1032 if path.endswith((".gz", ".npz")) else size
  assert np.asarray(array).nbytes <= limit
  return array


@FUZZ
@given(code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x07]),
       dims=st.lists(DIMENSION, max_size=4), payload=st.binary(max_size=300), gz=st.booleans(),
       cut=st.integers(0, 40))
def test_idx_headers(code, dims, payload, gz, cut):
  data = bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload
  data = data[:len(data) - cut] if cut < 8 else data
  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "f" + (".gz" if gz else ""))
    with (gzip.open if gz else open)(path, "wb") as f:
      f.write(data)
    array = _read_or_refuse(read_idx, path)
    if array is not None:
      assert array.shape == tuple(dims) and array.nbytes == len(data) - 4 - 4 * len(dims)


def _npy_bytes(descr: str, shape: tuple, fortran: bool, payload: bytes) -> bytes:
  header = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}".encode()
  header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
  return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


@FUZZ
@given(descr=DESCR, shape=st.lists(DIMENSION, max_size=3).map(tuple), fortran=st.booleans(),
       payload=st.binary(max_size=300), garble=st.integers(0, 80))
def test_npy_headers(descr, shape, fortran, payload, garble):
  data = bytearray(_npy_bytes(descr, shape, fortran, payload))
  if garble < len(data) and garble % 3 == 0:
    data[garble] ^= 0xFF
  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "x.npy")
    with open(path, "wb") as f:
      f.write(data)
    for mmap in (True, False):
      _read_or_refuse(lambda p: read_npy(p, mmap), path)


@FUZZ
@given(descr=DESCR, shape=st.lists(DIMENSION, max_size=3).map(tuple),
       payload=st.binary(max_size=300), compressed=st.booleans())
def test_npz_members(descr, shape, payload, compressed):
  method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "a.npz")
    with zipfile.ZipFile(path, "w", compression=method) as archive:
      archive.writestr("x.npy", _npy_bytes(descr, shape, False, payload))

    def read(p):
      with zipfile.ZipFile(p) as archive:
        return read_npz_member(p, archive, archive.getinfo("x.npy"))
    _read_or_refuse(read, path)


@FUZZ
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_as_an_npz_archive(data):
  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "a.npz")
    with open(path, "wb") as f:
      f.write(b"PK\x03\x04" + data if len(data) % 2 else data)
    try:
      load_npz(path)
    except DataError:
      pass


def _archive_bytes(compressed: bool) -> bytes:
  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "a.npz")
    arrays = {"x_train": np.ones((20, 3), np.float32), "y_train": np.arange(20) % 2,
              "x_test": np.ones((6, 3), np.float32), "y_test": np.arange(6) % 2}
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    with open(path, "rb") as f:
      return f.read()


ARCHIVES = {compressed: _archive_bytes(compressed) for compressed in (False, True)}


@FUZZ
@given(compressed=st.booleans(), at=st.integers(0, 10_000), xor=st.integers(1, 255),
       cut=st.integers(0, 3000))
def test_damaged_npz_archives(compressed, at, xor, cut):
  data = bytearray(ARCHIVES[compressed])
  data[at % len(data)] ^= xor
  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "a.npz")
    with open(path, "wb") as f:
      f.write(data[:len(data) - cut])
    try:
      dataset = load_npz(path)
    except DataError:
      return
    assert dataset.train.x.nbytes <= len(data) * 1032

import gzip

import numpy as np
import pytest

from dl_jax.data import DataError, load_dataset, read_idx
from tests.conftest import blobs


def test_npz_round_trip(write_npz):
  path = write_npz()
  data = load_dataset(path)
  x, y = blobs(40)
  np.testing.assert_array_equal(data.train.materialize()["x"], x)
  np.testing.assert_array_equal(data.train.materialize()["y"], y)
  assert data.num_classes == 3 and data.input_shape == (6,)


@pytest.mark.parametrize("overrides, message", [
    ({"y_test": None}, "missing arrays \\['y_test'\\]"),
    ({"y_train": np.zeros(39, np.int32)}, "39 labels for 40 examples"),
    ({"y_test": np.full(20, 7, np.int32)}, "labels in \\[7, 7\\], outside 0 .. 2"),
    ({"y_train": -np.ones(40, np.int32)}, "labels in \\[-1, -1\\]"),
    ({"y_train": np.zeros(40, np.float32)}, "dtype float32; class labels must be integers"),
    ({"x_test": np.full((20, 6), np.nan, np.float32)}, "NaN or Inf \\(first at example 0;"),
    ({"x_test": np.zeros((20, 5), np.float32)}, "train examples have shape \\(6,\\) but test"),
])
def test_npz_inconsistencies_name_the_file_and_problem(write_npz, overrides, message):
  path = write_npz(**overrides)
  with pytest.raises(DataError, match=message) as info:
    load_dataset(path)
  assert str(info.value).startswith(path + ":") and "pickle" not in str(info.value)


def test_nan_is_located(write_npz):
  x, _ = blobs(40)
  x[17, 3] = np.inf
  with pytest.raises(DataError, match="first at example 17"):
    load_dataset(write_npz(x_train=x))


def test_missing_and_corrupt_npz(tmp_path, write_npz):
  with pytest.raises(DataError, match="file not found"):
    load_dataset(str(tmp_path / "nope.npz"))
  corrupt = tmp_path / "corrupt.npz"
  corrupt.write_bytes(b"this is not a zip archive at all")
  with pytest.raises(DataError, match="not a readable .npz"):
    load_dataset(str(corrupt))
  truncated = tmp_path / "truncated.npz"
  truncated.write_bytes(open(write_npz(), "rb").read()[:300])
  with pytest.raises(DataError, match=str(truncated)):
    load_dataset(str(truncated))


def test_npz_with_pickled_objects_is_refused(write_npz):
  objects = np.array([{"a": 1}] * 20, dtype=object)
  with pytest.raises(DataError, match="only through pickle \\(refused\\)"):
    load_dataset(write_npz(x_test=objects))


def test_npy_directory_is_memory_mapped(tmp_path):
  x, y = blobs(50)
  xt, yt = blobs(10, seed=2)
  for key, value in {"x_train": x, "y_train": y, "x_test": xt, "y_test": yt}.items():
    np.save(tmp_path / f"{key}.npy", value)
  data = load_dataset(str(tmp_path), val_fraction=0.2)
  assert isinstance(data.train.x, np.memmap)
  assert len(data.train) == 40 and len(data.val) == 10
  batch = data.val.gather(np.arange(10))
  np.testing.assert_array_equal(batch["x"], x[data.val.rows])


def test_npy_directory_missing_file(tmp_path):
  np.save(tmp_path / "x_train.npy", np.zeros((3, 2), np.float32))
  with pytest.raises(DataError, match="y_train.npy: file not found"):
    load_dataset(str(tmp_path))


def _write_idx(path, array: np.ndarray, gz=False):
  codes = {np.dtype(np.uint8): 0x08, np.dtype(">f4"): 0x0D}
  header = bytes([0, 0, codes[array.dtype], array.ndim])
  header += np.asarray(array.shape, dtype=">u4").tobytes()
  payload = header + array.tobytes()
  with (gzip.open if gz else open)(path, "wb") as f:  # closing flushes: a gzip stream is buffered
    f.write(payload)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory_round_trip(tmp_path, gz):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
  labels = (np.arange(30) % 10).astype(np.uint8)
  suffix = ".gz" if gz else ""
  _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, gz)
  _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, gz)
  _write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images[:10], gz)
  _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels[:10], gz)
  data = load_dataset(str(tmp_path))
  assert data.input_shape == (28, 28, 1) and data.num_classes == 10
  batch = data.train.gather(np.arange(30))
  np.testing.assert_allclose(batch["x"][..., 0], images / 255, rtol=1e-6)
  np.testing.assert_array_equal(batch["y"], labels)
  if not gz:
    assert isinstance(data.train.x, np.memmap)


def test_idx_float_round_trip(tmp_path):
  values = np.arange(12, dtype=">f4").reshape(3, 4)
  _write_idx(tmp_path / "f.idx", values)
  np.testing.assert_array_equal(read_idx(str(tmp_path / "f.idx")), values)


def test_idx_truncated_and_bad_magic(tmp_path):
  images = np.zeros((5, 4, 4), np.uint8)
  _write_idx(tmp_path / "ok", images)
  (tmp_path / "short").write_bytes((tmp_path / "ok").read_bytes()[:-7])
  with pytest.raises(DataError, match="truncated or corrupt"):
    read_idx(str(tmp_path / "short"))
  (tmp_path / "magic").write_bytes(b"\x01\x02\x03\x04" + b"\x00" * 20)
  with pytest.raises(DataError, match="not an IDX file"):
    read_idx(str(tmp_path / "magic"))


def test_idx_directory_missing_file(tmp_path):
  with pytest.raises(DataError, match="no IDX file train-images-idx3-ubyte"):
    load_dataset(str(tmp_path))


def test_uint8_pixels_in_npz_arrive_in_unit_range(write_npz):
  pixels = np.array([[0, 255, 51, 102, 0, 255]] * 40, dtype=np.uint8)
  data = load_dataset(write_npz(x_train=pixels, x_test=pixels[:20]))
  np.testing.assert_allclose(data.train.gather([0])["x"][0], [0, 1, 0.2, 0.4, 0, 1], rtol=1e-6)

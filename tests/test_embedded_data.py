import numpy as np
import pytest

from dl_jax.data import EMBEDDED, DataError, load_dataset


def test_mnist1d_is_the_official_split():
  from mnist1d.data import get_dataset_args, make_dataset

  reference = make_dataset(get_dataset_args())
  data = load_dataset("mnist1d")
  train, test = data.train.materialize(), data.test.materialize()
  assert train["x"].shape == (4000, 40) and test["x"].shape == (1000, 40)
  assert train["x"].dtype == np.float32 and train["y"].dtype == np.int32
  np.testing.assert_array_equal(train["y"], reference["y"])
  np.testing.assert_array_equal(test["y"], reference["y_test"])
  np.testing.assert_allclose(train["x"], reference["x"], rtol=1e-6)
  assert data.metadata["input_shape"] == [40] and data.num_classes == 10


def test_mnist1d_leaves_numpy_global_rng_alone():
  np.random.seed(123)
  expected = np.random.random()
  np.random.seed(123)
  load_dataset("mnist1d_shuffled")
  assert np.random.random() == expected


def test_mnist_is_stratified_4000_1000_in_unit_range():
  data = load_dataset("mnist")
  train, test = data.train.materialize(), data.test.materialize()
  assert train["x"].shape == (4000, 28, 28, 1) and test["x"].shape == (1000, 28, 28, 1)
  assert train["x"].min() == 0.0 and train["x"].max() == 1.0
  assert np.bincount(train["y"]).tolist() == [400] * 10
  assert np.bincount(test["y"]).tolist() == [100] * 10
  assert not set(data.train.rows) & set(data.test.rows)


def test_digits_shapes_and_split():
  data = load_dataset("digits")
  assert data.input_shape == (8, 8, 1)
  assert len(data.train) + len(data.test) == 1797
  assert abs(len(data.test) - 0.2 * 1797) < 1


def test_validation_split_is_stratified_seeded_and_disjoint():
  data = load_dataset("mnist", val_fraction=0.1, val_seed=3)
  assert len(data.val) == 400 and len(data.train) == 3600
  assert np.bincount(data.val.labels).tolist() == [40] * 10
  assert not set(data.train.rows) & set(data.val.rows)
  assert not set(data.val.rows) & set(data.test.rows)
  again = load_dataset("mnist", val_fraction=0.1, val_seed=3)
  other = load_dataset("mnist", val_fraction=0.1, val_seed=4)
  np.testing.assert_array_equal(data.val.rows, again.val.rows)
  assert not np.array_equal(data.val.rows, other.val.rows)


def test_unknown_dataset_lists_the_choices():
  with pytest.raises(DataError, match="mnist1d") as info:
    load_dataset("cifar10")
  assert "cifar10" in str(info.value)
  assert set(EMBEDDED) <= set(str(info.value).replace("'", " ").replace(",", " ").split())
